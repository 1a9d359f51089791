//! CRI port-forward (issue 17, item 5): containerd and CRI-O enter the pod's network namespace
//! and dial 127.0.0.1:PORT there; the server listens inside the VM. This test dials exactly so
//! (a thread that entered the pod's namespace): the bytes reach the server in the VM and come
//! back, for a page of 1 MiB and several connections at once; a port nobody listens on gives a
//! closed connection; nothing listens outside the pod's namespace; delete leaves the
//! namespace as it was (its nat table included).

use e2e_tests::{edit_spec, sh, Env};
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// A pod namespace as CNI leaves it (loopback up, as its loopback plugin does): a veth pair
/// whose eth0 has the pod's address, both ends
/// inside it (the host is not touched).
struct PodNs(String);

impl PodNs {
    fn new(name: &str) -> PodNs {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link add eth0 type veth peer name peer0 && \
             ip -n {name} addr add 10.206.0.2/24 dev eth0 && ip -n {name} link set eth0 up && \
             ip -n {name} link set peer0 up && ip -n {name} link set lo up"
        ));
        PodNs(name.to_string())
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    fn snapshot(&self) -> String {
        let n = &self.0;
        sh(&format!(
            // IPv4 only: IPv6 link-local addresses change state (DAD) on their own.
            "ip -n {n} -d link show; ip -n {n} -4 addr show; ip -n {n} -4 route show table all; \
             tc -n {n} qdisc show; ip netns exec {n} iptables -t nat -S; \
             ip netns exec {n} ss -ltnH"
        ))
    }

    /// Connects to 127.0.0.1:`port` from inside the namespace, as containerd's PortForward
    /// does, sends `request`, half-closes and reads the answer to its end.
    fn dial(&self, port: u16, request: &[u8]) -> Vec<u8> {
        let path = self.path();
        let request = request.to_vec();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            conn.write_all(&request).unwrap();
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
            answer
        })
        .join()
        .unwrap()
    }
}

impl Drop for PodNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn vm_port_forward_reaches_the_pods_server() {
    let env = Env::new();
    let pod = PodNs::new(&format!("kt-pf-{}", std::process::id()));
    let before = pod.snapshot();
    let host_listeners = sh("ss -ltnH");
    let b = env.bundle("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    std::fs::create_dir_all(b.join("rootfs/www")).unwrap();
    std::fs::write(b.join("rootfs/www/index.html"), "hello from the VM\n").unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(b.join("rootfs/www/big.bin"), &big).unwrap();
    let path = pod.path();
    edit_spec(&b, |s| {
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "web"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);

    let started = std::time::Instant::now();
    let page = pod.dial(8080, b"GET /index.html HTTP/1.0\r\n\r\n");
    println!("port-forward: first page in {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&page);
    assert!(
        text.starts_with("HTTP/1.") && text.ends_with("hello from the VM\n"),
        "{text}"
    );
    let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| pod.dial(8080, b"GET /big.bin HTTP/1.0\r\n\r\n")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for a in answers {
        assert!(a.len() > big.len(), "short answer: {} bytes", a.len());
        assert_eq!(
            &a[a.len() - big.len()..],
            &big[..],
            "1 MiB came back altered"
        );
    }
    // Nobody listens on 8081 in the VM: the connection is closed without an answer.
    assert!(pod.dial(8081, b"hello?").is_empty());
    // Nothing new listens on the host's side.
    assert_eq!(
        sh("ss -ltnH"),
        host_listeners,
        "a listener appeared outside the pod"
    );

    let out = env.run(&["delete", "--force", "web"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        pod.snapshot(),
        before,
        "the pod's namespace was not restored"
    );
    env.assert_clean();
}

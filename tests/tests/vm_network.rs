//! The pod's network namespace becomes the VM's NIC. Each test makes what a CNI plugin would:
//! a namespace for the pod holding one end of a veth pair with an address and a default
//! route, the other end in a "peer" namespace with the gateway's address. Traffic stays
//! between these two namespaces, on a subnet only these tests use.

use e2e_tests::{edit_spec, host_kernel_release, Env};
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

/// A pod namespace with `eth0` (10.201.N.2/24, default route via .1) wired to a peer
/// namespace holding 10.201.N.1. Removed on drop.
struct PodNet {
    pod: String,
    peer: String,
    subnet: u8,
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tc(args: &[&str]) -> String {
    let out = Command::new("tc").args(args).output().expect("running tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PodNet {
    fn new(tag: &str, subnet: u8) -> PodNet {
        let me = std::process::id();
        let n = PodNet {
            pod: format!("kt-pod-{tag}-{me}"),
            peer: format!("kt-peer-{tag}-{me}"),
            subnet,
        };
        ip(&["netns", "add", &n.pod]);
        ip(&["netns", "add", &n.peer]);
        ip(&[
            "link", "add", "eth0", "netns", &n.pod, "type", "veth", "peer", "name", "peer0",
            "netns", &n.peer,
        ]);
        ip(&[
            "-n",
            &n.pod,
            "addr",
            "add",
            &format!("{}/24", n.addr()),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &n.pod, "link", "set", "eth0", "up"]);
        ip(&["-n", &n.pod, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &n.peer,
            "addr",
            "add",
            &format!("{}/24", n.gateway()),
            "dev",
            "peer0",
        ]);
        ip(&["-n", &n.peer, "link", "set", "peer0", "up"]);
        ip(&["-n", &n.pod, "route", "add", "default", "via", &n.gateway()]);
        n.settle();
        n
    }

    /// Lets IPv6 duplicate address detection finish, so a snapshot taken now is the
    /// namespace's settled state ("tentative" would disappear by itself later).
    fn settle(&self) {
        let start = Instant::now();
        while ip(&["-n", &self.pod, "addr", "show"]).contains("tentative")
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Only loopback: what `--network none` style callers hand over.
    fn empty(tag: &str) -> PodNet {
        let n = PodNet {
            pod: format!("kt-pod-{tag}-{}", std::process::id()),
            peer: String::new(),
            subnet: 0,
        };
        ip(&["netns", "add", &n.pod]);
        n
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.pod)
    }
    fn addr(&self) -> String {
        format!("10.201.{}.2", self.subnet)
    }
    fn gateway(&self) -> String {
        format!("10.201.{}.1", self.subnet)
    }

    fn mac(&self) -> String {
        let out = ip(&["-n", &self.pod, "-o", "link", "show", "eth0"]);
        let mac = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default();
        mac.to_string()
    }

    /// Everything a runtime could change in the pod's namespace.
    fn snapshot(&self) -> String {
        let ns = self.pod.as_str();
        let mut s = ip(&["-n", ns, "-d", "link", "show"]);
        s += &ip(&["-n", ns, "addr", "show"]);
        s += &ip(&["-n", ns, "route", "show"]);
        s += &ip(&["-n", ns, "-6", "route", "show"]);
        s += &tc(&["-n", ns, "qdisc", "show"]);
        for dev in ["eth0", "eth1"] {
            s += &tc(&["-n", ns, "filter", "show", "dev", dev, "ingress"]);
        }
        s
    }

    /// A second veth pair: `eth1` 10.201.(N+1).2/24 in the pod, .1 in the peer.
    fn add_second_link(&self) {
        let (pod, peer, sub) = (&self.pod, &self.peer, self.subnet + 1);
        ip(&[
            "link", "add", "eth1", "netns", pod, "type", "veth", "peer", "name", "peer1", "netns",
            peer,
        ]);
        ip(&[
            "-n",
            pod,
            "addr",
            "add",
            &format!("10.201.{sub}.2/24"),
            "dev",
            "eth1",
        ]);
        ip(&["-n", pod, "link", "set", "eth1", "up"]);
        ip(&[
            "-n",
            peer,
            "addr",
            "add",
            &format!("10.201.{sub}.1/24"),
            "dev",
            "peer1",
        ]);
        ip(&["-n", peer, "link", "set", "peer1", "up"]);
        self.settle();
    }

    /// Connects from the peer namespace to the pod's address and reads what the server says.
    fn fetch_from_peer(&self, port: u16) -> std::io::Result<String> {
        let path = format!("/var/run/netns/{}", self.peer);
        let addr: SocketAddr = format!("{}:{port}", self.addr()).parse().expect("address");
        std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(&path)?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                while !got.contains(&b'\n') {
                    match conn.read(&mut buf)? {
                        0 => break,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
                Ok(String::from_utf8_lossy(&got).into_owned())
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("peer thread panicked")))
        })
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.peer] {
            if !ns.is_empty() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
}

fn set_model(env: &Env, model: &str) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text += &format!("internetworking_model = \"{model}\"\n");
    std::fs::write(&env.config, text).unwrap();
}

/// A bundle joining `netns` with CAP_NET_RAW (ping), /etc/hosts and /etc/resolv.conf
/// bind-mounted from the bundle as CRI does, running a TCP server on port 8080 that greets
/// every client with the kernel release.
fn server_bundle(env: &Env, net: &PodNet) -> PathBuf {
    let b = env.bundle(
        "srv",
        &[
            "sh",
            "-c",
            "while true; do echo hello-from-$(uname -r) | nc -l -p 8080; done",
        ],
    );
    std::fs::write(b.join("hosts"), format!("{} peer-host\n", net.gateway())).unwrap();
    std::fs::write(
        b.join("resolv.conf"),
        format!("nameserver {}\n", net.gateway()),
    )
    .unwrap();
    let path = net.path();
    edit_spec(&b, |s| {
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
        for file in ["hosts", "resolv.conf"] {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": format!("/etc/{file}"), "type": "bind",
                "source": b.join(file), "options": ["rbind", "ro"]
            }));
        }
    });
    b
}

fn exec(env: &Env, args: &[&str]) -> (i32, String) {
    let mut full = vec!["exec", "srv"];
    full.extend_from_slice(args);
    let out = env.run(&full, b"", T);
    (out.code(), format!("{}{}", out.stdout_str(), out.stderr))
}

/// With `from_cache`, the sandbox takes a VM booted beforehand by the factory (in the host's
/// namespace): the pod's interface is hot-plugged into it, with a tap opened in the pod's
/// namespace and handed to QEMU.
fn container_on_the_pod_network(model: &str, subnet: u8, from_cache: bool) {
    let env = Env::new();
    set_model(&env, model);
    if from_cache {
        let mut text = std::fs::read_to_string(&env.config).unwrap();
        text += "[factory]\nvm_cache_number = 1\n";
        std::fs::write(&env.config, text).unwrap();
        let out = env.run(&["factory", "init"], b"", T);
        assert_eq!(out.code(), 0, "factory init: {}", out.stderr);
    }
    // Namespace names must differ from a parallel test's of the same model.
    let net = PodNet::new(if from_cache { "cached" } else { model }, subnet);
    // A static neighbour entry, as some CNI plugins add: the guest gets it too.
    let neighbour = format!("10.201.{subnet}.99");
    ip(&[
        "-n",
        &net.pod,
        "neigh",
        "add",
        &neighbour,
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let before = net.snapshot();
    let mac = net.mac();
    let b = server_bundle(&env, &net);

    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "srv"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{model}: run -d: {}", out.stderr);

    // The guest NIC has the pod interface's name, MAC and address, and its routes.
    let (code, addr) = exec(&env, &["ip", "addr", "show", "eth0"]);
    assert_eq!(code, 0, "{model}: {addr}");
    assert!(
        addr.contains(&format!("inet {}/24", net.addr())),
        "{model}: {addr}"
    );
    assert!(
        addr.contains(&format!("link/ether {mac}")),
        "{model}: {mac} in {addr}"
    );
    let (_, neigh) = exec(&env, &["ip", "neigh", "show", &neighbour]);
    assert!(
        neigh.contains("lladdr 02:00:00:00:00:99"),
        "{model}: {neigh}"
    );
    assert!(neigh.contains("PERMANENT"), "{model}: {neigh}");
    let (_, routes) = exec(&env, &["ip", "route"]);
    assert!(
        routes.contains(&format!("default via {}", net.gateway())),
        "{model}: {routes}"
    );
    // The caller's files reach the container, and the name in /etc/hosts resolves.
    let (_, resolv) = exec(&env, &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, format!("nameserver {}\n", net.gateway()), "{model}");
    let (code, ping) = exec(&env, &["ping", "-c", "1", "-W", "5", "peer-host"]);
    assert_eq!(code, 0, "{model}: ping of the peer failed: {ping}");
    assert!(ping.contains("1 packets received"), "{model}: {ping}");

    // A server in the container is reachable from the peer namespace, and it runs on the
    // guest's kernel.
    let start = Instant::now();
    let greeting = loop {
        match net.fetch_from_peer(8080) {
            Ok(g) if g.starts_with("hello-from-") => break g,
            other => assert!(
                start.elapsed() < Duration::from_secs(30),
                "{model}: no answer from the container's server: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let release = greeting.trim().trim_start_matches("hello-from-");
    assert_ne!(
        release,
        host_kernel_release(),
        "{model}: served from the host?"
    );

    if from_cache {
        let logs = env.run(&["logs", "srv"], b"", T).stdout_str();
        assert!(
            logs.contains("took cached VM"),
            "{model}: no cached VM used: {logs}"
        );
    }
    let out = env.run(&["delete", "--force", "srv"], b"", T);
    assert_eq!(out.code(), 0, "{model}: delete: {}", out.stderr);
    if from_cache {
        let out = env.run(&["factory", "destroy"], b"", T);
        assert_eq!(out.code(), 0, "factory destroy: {}", out.stderr);
    }
    env.assert_clean();
    assert_eq!(
        net.snapshot(),
        before,
        "{model}: the pod's namespace changed"
    );
}

#[test]
fn vm_network_tcfilter() {
    container_on_the_pod_network("tcfilter", 11, false);
}

#[test]
fn vm_network_macvtap() {
    container_on_the_pod_network("macvtap", 12, false);
}

#[test]
fn vm_network_bridged() {
    container_on_the_pod_network("bridged", 13, false);
}

#[test]
fn vm_network_tcfilter_on_a_cached_vm() {
    container_on_the_pod_network("tcfilter", 19, true);
}

/// One line on stderr, exit 1, nothing left: no state, no VM, the namespace untouched.
fn refused(env: &Env, bundle: &std::path::Path, id: &str, want: &str) {
    let out = env.run(
        &["create", "--bundle", bundle.to_str().unwrap(), id],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{id}: {}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{id}: {}", out.stderr);
    assert!(
        out.stderr.contains(want),
        "{id}: want {want:?} in {}",
        out.stderr
    );
    env.assert_clean();
}

fn with_netns(env: &Env, name: &str, path: Option<&str>, keep_entry: bool) -> PathBuf {
    let b = env.bundle(name, &["true"]);
    edit_spec(&b, |s| {
        let list = s["linux"]["namespaces"].as_array_mut().unwrap();
        list.retain(|ns| keep_entry || ns["type"] != "network");
        for ns in list.iter_mut() {
            if ns["type"] == "network" {
                if let Some(p) = path {
                    ns["path"] = json!(p);
                }
            }
        }
    });
    b
}

#[test]
fn vm_network_bad_input() {
    let env = Env::new();
    let b = with_netns(&env, "gone", Some("/var/run/netns/kt-no-such-netns"), true);
    refused(&env, &b, "gone", "kt-no-such-netns does not exist");

    let b = with_netns(&env, "host", None, false);
    refused(&env, &b, "host", "host networking");

    let empty = PodNet::empty("empty");
    let before = empty.snapshot_links();
    let b = with_netns(&env, "empty", Some(&empty.path()), true);
    refused(&env, &b, "empty", "no usable interface");
    assert_eq!(empty.snapshot_links(), before);

    let net = PodNet::new("badmodel", 14);
    let before = net.snapshot();
    set_model(&env, "warp-drive");
    let b = with_netns(&env, "model", Some(&net.path()), true);
    refused(&env, &b, "model", "internetworking_model");
    assert_eq!(net.snapshot(), before);
}

impl PodNet {
    fn snapshot_links(&self) -> String {
        ip(&["-n", &self.pod, "-d", "link", "show"]) + &tc(&["-n", &self.pod, "qdisc", "show"])
    }
}

/// A network entry without a path: the VM gets a namespace of its own with no NIC, and it
/// goes with the container.
#[test]
fn vm_network_fresh_namespace_has_only_loopback() {
    let env = Env::new();
    let b = env.bundle("fresh", &["ip", "-o", "link"]);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "fresh"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let links = out.stdout_str();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");
    env.assert_clean();
}

/// `kata-network`: an interface added to the pod's namespace after start is hot-plugged into
/// the running VM (and works), routes are replaced, and del-iface unplugs it and restores it.
#[test]
fn vm_network_hotplug_with_kata_network() {
    let env = Env::new();
    let net = PodNet::new("hotplug", 15);
    let b = env.bundle("hp", &["sleep", "1000"]);
    let path = net.path();
    edit_spec(&b, |s| {
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "hp"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);
    net.add_second_link();
    let before = net.snapshot();

    let out = env.run(
        &["kata-network", "add-iface", "hp", "-"],
        br#"{"name": "eth1"}"#,
        T,
    );
    assert_eq!(out.code(), 0, "add-iface: {}", out.stderr);
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["name"], "eth1");
    assert!(
        out.stdout_str().contains("10.201.16.2"),
        "{}",
        out.stdout_str()
    );

    let out = env.run(&["kata-network", "list-ifaces", "hp"], b"", T);
    assert_eq!(out.code(), 0, "list-ifaces: {}", out.stderr);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["eth0", "eth1"], "{list:?}");

    let out = env.run(
        &["exec", "hp", "ping", "-c", "1", "-W", "5", "10.201.16.1"],
        b"",
        T,
    );
    assert_eq!(
        out.code(),
        0,
        "ping over the hot-plugged NIC: {}{}",
        out.stdout_str(),
        out.stderr
    );

    let routes = br#"[{"dest": "", "gateway": "10.201.15.1", "device": "eth0"},
                      {"dest": "192.168.77.0/24", "gateway": "10.201.16.1", "device": "eth1"}]"#;
    let out = env.run(&["kata-network", "update-routes", "hp", "-"], routes, T);
    assert_eq!(out.code(), 0, "update-routes: {}", out.stderr);
    let out = env.run(&["exec", "hp", "ip", "route"], b"", T);
    assert!(
        out.stdout_str()
            .contains("192.168.77.0/24 via 10.201.16.1 dev eth1"),
        "{}",
        out.stdout_str()
    );
    let out = env.run(&["kata-network", "list-routes", "hp"], b"", T);
    assert!(
        out.stdout_str().contains("192.168.77.0/24"),
        "{}",
        out.stdout_str()
    );

    // Bad input: one line, exit 1.
    for (args, input) in [
        (
            ["kata-network", "add-iface", "hp", "-"],
            &br#"{"name": "eth7"}"#[..],
        ),
        (["kata-network", "add-iface", "hp", "-"], &b"{not json"[..]),
        (
            ["kata-network", "update-routes", "hp", "-"],
            &br#"[{"dest": "10.0.0.0/99", "device": "eth0"}]"#[..],
        ),
        (
            ["kata-network", "add-iface", "nope", "-"],
            &br#"{"name": "eth1"}"#[..],
        ),
    ] {
        let out = env.run(&args, input, T);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }

    let out = env.run(
        &["kata-network", "del-iface", "hp", "-"],
        br#"{"name": "eth1"}"#,
        T,
    );
    assert_eq!(out.code(), 0, "del-iface: {}", out.stderr);
    let out = env.run(&["exec", "hp", "ip", "-o", "link"], b"", T);
    assert!(!out.stdout_str().contains("eth1"), "{}", out.stdout_str());
    assert_eq!(
        net.snapshot(),
        before,
        "del-iface left the namespace changed"
    );

    let out = env.run(&["delete", "--force", "hp"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    env.assert_clean();
}

/// `kata-runtime create` killed while the VM boots, after it connected the pod's interface:
/// `delete --force` removes the taps and filters it made (recorded as it went) and the
/// namespace is as before.
#[test]
fn vm_network_create_killed_then_force_deleted() {
    let env = Env::new();
    let net = PodNet::new("killed", 18);
    let before = net.snapshot();
    let links_before = net.snapshot_links();
    let b = with_netns(&env, "killed", Some(&net.path()), true);
    let mut child = env
        .cmd(&["create", "--bundle", b.to_str().unwrap(), "killed"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interfaces are connected before QEMU starts; wait until a tap shows, then kill.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while net.snapshot_links() == links_before {
        assert!(std::time::Instant::now() < deadline, "no tap ever appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(
        net.snapshot(),
        before,
        "the create was killed too late or too early"
    );
    let out = env.run(&["delete", "--force", "killed"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    net.settle();
    assert_eq!(net.snapshot(), before);
    env.assert_clean();
}

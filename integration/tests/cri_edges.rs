//! What a kubelet meets through containerd's CRI plugin (v1 runtime) that runc passes
//! (issue 17): an ExecSync that times out must not leave its process running in the guest; a
//! pod whose container exited on its own stops cleanly (the runtime's kill error carries
//! runc's "container not running"); privileged pods start with the default configuration,
//! with and without containerd's `privileged_without_host_devices`, and never get the host's
//! disks.

use integration_tests::containerd::{Containerd, CRI_HANDLER};
use integration_tests::cri::{self, CriClient};
use integration_tests::{poll, IMAGE};
use k8s_cri::v1 as pb;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// CNI configuration on a bridge and subnet of this test file only.
fn cni_dir(tag: &str, bridge: &str, third: u8) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kt-cni-{tag}-{}", std::process::id()));
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let net = format!("10.203.{third}.0/24");
    let gw = format!("10.203.{third}.1");
    let json = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("kata-{tag}"),
        "plugins": [{
            "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": net, "gateway": gw}]],
                     "dataDir": dir.join("ipam")}
        }]
    });
    std::fs::write(conf.join("10-kata.conflist"), json.to_string()).unwrap();
    dir
}

struct Bridge(&'static str, PathBuf);
impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", self.0])
            .status();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// The pod's network namespace, from the sandbox container's spec as containerd wrote it.
fn pod_netns(c: &Containerd, pod: &str) -> String {
    let out = c.ctr(&["-n", "k8s.io", "containers", "info", pod]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["Spec"]["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .expect("the pod's netns path")
        .to_string()
}

/// What containerd's PortForward does: from inside `netns`, connect to 127.0.0.1:`port`.
fn dial_in(netns: &str, port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let (netns, request) = (netns.to_string(), request.to_vec());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap();
        nix_setns(ns.as_fd());
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = conn.write_all(&request);
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
    .join()
    .unwrap()
}

fn nix_setns(fd: std::os::fd::BorrowedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) of this thread into the namespace `fd` refers to.
    let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

fn guest_commands(client: &mut CriClient, id: &str) -> String {
    let (out, err, code) = client
        .exec_sync(id, &["ps", "-o", "args"])
        .expect("ExecSync ps");
    assert_eq!(code, 0, "ps: {err}");
    out
}

/// Items 2 and 3: ExecSync timeout, then a container that exits on its own, then the pod stops.
#[test]
fn cri_exec_timeout_and_a_container_that_exits_on_its_own() {
    let dir = cni_dir("edges", "ktcni1", 1);
    let _bridge = Bridge("ktcni1", dir.clone());
    let c = Containerd::start_with_cri(&dir.join("conf"));
    let mut client = CriClient::connect(&c.socket());
    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_config = cri::pod_config("edges", &logs, false);
    let pod = client
        .run_pod_sandbox(&pod_config, CRI_HANDLER)
        .expect("RunPodSandbox");
    let main = client
        .create_container(
            &pod,
            &cri::container_config("main", IMAGE, &["sleep", "1000"]),
            &pod_config,
        )
        .expect("CreateContainer");
    client.start_container(&main).expect("StartContainer");

    // A probe-like ExecSync that outlives its timeout: containerd SIGKILLs the exec's process
    // (its kata-shim); the guest's `sleep 4321` must go with it.
    let started = Instant::now();
    let r = client.exec_sync_within(&main, &["sleep", "4321"], 2);
    println!(
        "ExecSync with a 2 s timeout returned after {:?}: {r:?}",
        started.elapsed()
    );
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|(_, _, code)| *code != 0),
        "{r:?}"
    );
    let timed_out = Instant::now();
    let mut seen = String::new();
    let gone = poll(Duration::from_secs(10), || {
        seen = guest_commands(&mut client, &main);
        !seen.contains("sleep 4321")
    });
    println!(
        "timed-out exec's process gone {:?} after ExecSync returned",
        timed_out.elapsed()
    );
    assert!(gone, "the timed-out exec still runs in the guest:\n{seen}");

    // Port-forward (item 5): containerd's PortForward enters the pod's network namespace and
    // dials 127.0.0.1:PORT there; a server in the VM answers.
    let web = client
        .create_container(
            &pod,
            &cri::container_config("web", IMAGE, &["httpd", "-f", "-p", "8080", "-h", "/etc"]),
            &pod_config,
        )
        .expect("CreateContainer web");
    client.start_container(&web).expect("StartContainer web");
    let url = client.port_forward(&pod, 8080).expect("PortForward");
    assert!(url.starts_with("http://127.0.0.1"), "{url}");
    let netns = pod_netns(&c, &pod);
    let mut page = String::new();
    let served = poll(Duration::from_secs(20), || {
        page = dial_in(&netns, 8080, b"GET /passwd HTTP/1.0\r\n\r\n");
        page.contains("root:")
    });
    assert!(served, "no answer through port-forward: {page:?}");

    // A container that exits on its own, then the pod is stopped: every kill containerd sends
    // to exited tasks must be taken as "already finished".
    let quick = client
        .create_container(
            &pod,
            &cri::container_config("quick", IMAGE, &["true"]),
            &pod_config,
        )
        .expect("CreateContainer quick");
    client
        .start_container(&quick)
        .expect("StartContainer quick");
    let exited = poll(Duration::from_secs(30), || {
        client.container_state(&quick).ok() == Some(cri::CONTAINER_EXITED)
    });
    assert!(exited, "quick never exited");
    client
        .stop_container(&quick, 2)
        .expect("StopContainer of an exited container");
    // The pod's own (pause) container dies on its own too, just before the kubelet stops the
    // pod: containerd's kill of it must meet runc's "container not running".
    let root = c.work.kata_root().join("k8s.io");
    let out = c
        .work
        .kata(&root, &["kill", &pod, "KILL"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c
        .work
        .kata(&root, &["kill", &pod, "KILL"])
        .output()
        .unwrap();
    let stopped_kill = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() || stopped_kill.contains("container not running"),
        "{stopped_kill}"
    );
    // containerd learns of the exits from its shims (its exit handling deletes the tasks; a
    // StopPodSandbox racing that meets a closing shim, with runc as well).
    let noticed = poll(Duration::from_secs(30), || {
        client.container_state(&main).ok() == Some(cri::CONTAINER_EXITED)
    });
    assert!(noticed, "main did not exit with its pod");
    std::thread::sleep(Duration::from_secs(1));
    client
        .stop_pod_sandbox(&pod)
        .expect("StopPodSandbox after the pod's containers exited");
    client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    drop(client);
    c.finish();
}

/// Item 1: a privileged pod, with the default containerd configuration (every host device in
/// the spec) and with `privileged_without_host_devices = true`: both start, run, and see no
/// host disk in the VM.
#[test]
fn cri_privileged_pods_start_without_the_hosts_disks() {
    for (n, options) in ["", "privileged_without_host_devices = true"]
        .iter()
        .enumerate()
    {
        let bridge = if n == 0 { "ktcni2" } else { "ktcni3" };
        let dir = cni_dir(&format!("priv{n}"), bridge, 2 + n as u8);
        let _bridge = Bridge(bridge, dir.clone());
        let c = Containerd::start_with_cri_options(&dir.join("conf"), options);
        let mut client = CriClient::connect(&c.socket());
        let logs = c.work.path().join("pod-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let pod_config = cri::privileged_pod_config("priv", &logs);
        let pod = client
            .run_pod_sandbox(&pod_config, CRI_HANDLER)
            .unwrap_or_else(|e| panic!("privileged RunPodSandbox ({options:?}): {e}"));
        let config = cri::privileged_container_config("priv", IMAGE, &["sleep", "1000"]);
        let id = client
            .create_container(&pod, &config, &pod_config)
            .unwrap_or_else(|e| panic!("privileged CreateContainer ({options:?}): {e}"));
        client
            .start_container(&id)
            .unwrap_or_else(|e| panic!("privileged StartContainer ({options:?}): {e}"));
        // Privileged inside the VM: every capability.
        let (out, err, code) = client
            .exec_sync(&id, &["grep", "CapEff", "/proc/self/status"])
            .expect("ExecSync");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("000001ff") || out.contains("ffffffff"),
            "{out}"
        );
        // The guest has no disk of its own (initramfs root, shared folder over 9p): any
        // virtio, SCSI or NVMe disk in it would be one of the host's.
        let (out, err, code) = client.exec_sync(&id, &["ls", "/sys/block"]).unwrap();
        assert_eq!(code, 0, "{err}");
        println!(
            "privileged pod ({options:?}): guest block devices: {}",
            out.trim()
        );
        assert!(
            !out.split_whitespace()
                .any(|d| d.starts_with("vd") || d.starts_with("sd") || d.starts_with("nvme")),
            "a host disk reached the guest ({options:?}): {out}"
        );
        client.stop_container(&id, 2).expect("StopContainer");
        client.stop_pod_sandbox(&pod).expect("StopPodSandbox");
        client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
        drop(client);
        c.finish();
    }
}

/// Items 4 and 7 through the CRI: a privileged pod (containerd's
/// `privileged_without_host_devices = true`) with volumes of each propagation (None →
/// rprivate, HostToContainer → rslave, Bidirectional → rshared, which failed in pivot_root),
/// and a read-only volume whose host folder has a tmpfs mounted below it: as with runc the
/// tmpfs stays writable (non-recursive `ro`).
#[test]
fn cri_privileged_volumes_propagation_and_read_only() {
    let dir = cni_dir("vols", "ktcni4", 4);
    let _bridge = Bridge("ktcni4", dir.clone());
    let c = Containerd::start_with_cri_options(
        &dir.join("conf"),
        "privileged_without_host_devices = true",
    );
    // Volumes under a folder that is a shared mount of its own (Bidirectional needs that).
    let vols = c.work.path().join("volumes");
    let sub = vols.join("ro/sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(vols.join("rw")).unwrap();
    e2e_tests::sh(&format!(
        "mount --bind {0} {0} && mount --make-shared {0}",
        vols.display()
    ));
    e2e_tests::sh(&format!(
        "mount -t tmpfs -o size=1m kt-ro-sub {}",
        sub.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-R")
                .arg(&self.0)
                .status();
        }
    }
    let _vols = Unmount(vols.clone());

    let mut client = CriClient::connect(&c.socket());
    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let pod_config = cri::privileged_pod_config("vols", &logs);
    let pod = client
        .run_pod_sandbox(&pod_config, CRI_HANDLER)
        .expect("privileged RunPodSandbox");
    let mut config = cri::privileged_container_config("vols", IMAGE, &["sleep", "1000"]);
    let mount =
        |path: &str, host: &std::path::Path, readonly: bool, p: pb::MountPropagation| pb::Mount {
            container_path: path.into(),
            host_path: host.display().to_string(),
            readonly,
            propagation: p as i32,
            ..Default::default()
        };
    config.mounts = vec![
        mount(
            "/private",
            &vols.join("rw"),
            false,
            pb::MountPropagation::PropagationPrivate,
        ),
        mount(
            "/slave",
            &vols.join("rw"),
            false,
            pb::MountPropagation::PropagationHostToContainer,
        ),
        mount(
            "/bidir",
            &vols.join("rw"),
            false,
            pb::MountPropagation::PropagationBidirectional,
        ),
        mount(
            "/ro",
            &vols.join("ro"),
            true,
            pb::MountPropagation::PropagationPrivate,
        ),
    ];
    let id = client
        .create_container(&pod, &config, &pod_config)
        .expect("CreateContainer with every propagation");
    client
        .start_container(&id)
        .expect("StartContainer with Bidirectional propagation");
    let (out, err, code) = client
        .exec_sync(
            &id,
            &[
                "sh",
                "-c",
                "for d in /private /slave /bidir /ro /ro/sub; do \
                 touch $d/probe 2>/dev/null && echo $d writable || echo $d read-only; done",
            ],
        )
        .expect("ExecSync");
    assert_eq!(code, 0, "{err}");
    for want in [
        "/private writable",
        "/slave writable",
        "/bidir writable",
        "/ro read-only",
        "/ro/sub writable",
    ] {
        assert!(out.lines().any(|l| l == want), "{want}: {out}");
    }
    assert!(
        sub.join("probe").exists(),
        "the write reached the host's tmpfs"
    );
    client.stop_container(&id, 2).expect("StopContainer");
    client.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    drop(client);
    drop(_vols);
    c.finish();
}

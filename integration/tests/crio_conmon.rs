//! kata-runtime driven the way CRI-O drives a runtime (CRI-O itself cannot be installed here):
//! conmon from Debian with CRI-O's arguments and `--runtime-arg --root=...`, the sync pipe
//! CRI-O reads the result from, a pause bundle with `io.kubernetes.cri-o.*` annotations and
//! every namespace given by the path of a bind-mounted pin, as CRI-O's pinns makes them
//! (../shared/reference/client-calls.md). Issue 17, item 0: a host-network pod (the host's
//! namespace pinned, HostNetwork annotation) is refused with one line, and neither the host
//! nor the runtime's state is touched.

use integration_tests::Workdir;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn host_network_snapshot() -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "ip -d link show; ip addr show; ip route show table all; tc qdisc show; \
              for l in /sys/class/net/*; do echo $l $(readlink $l/device/driver); done",
        )
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pins: a file for each namespace, bind-mounted onto the namespace (pinns' way).
struct Pins {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Pins {
    /// The host's network namespace pinned (a host-network pod) or new ones for every kind.
    fn new(dir: &Path, host_network: bool) -> Pins {
        std::fs::create_dir_all(dir).unwrap();
        let mut files = Vec::new();
        for kind in ["net", "ipc", "uts"] {
            let f = dir.join(format!("{kind}ns"));
            std::fs::write(&f, b"").unwrap();
            files.push(f);
        }
        if host_network {
            sh(&format!(
                "mount --bind /proc/self/ns/net {}",
                files[0].display()
            ));
            sh(&format!(
                "unshare --ipc={} --uts={} true",
                files[1].display(),
                files[2].display()
            ));
        } else {
            sh(&format!(
                "unshare --net={} --ipc={} --uts={} true",
                files[0].display(),
                files[1].display(),
                files[2].display()
            ));
            // What CNI would have made, kept inside the pod's namespace: a veth pair whose
            // eth0 has the pod's address.
            sh(&format!(
                "nsenter --net={} sh -c 'ip link add eth0 type veth peer name peer0 && \
                 ip addr add 10.204.0.2/24 dev eth0 && ip link set eth0 up && \
                 ip link set peer0 up'",
                files[0].display()
            ));
        }
        Pins {
            dir: dir.to_path_buf(),
            files,
        }
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = Command::new("umount").arg(f).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// After a failing assertion: the runtime's logs, then whatever the test made is
/// force-deleted, killed and unmounted (a passing test cleans up itself and checks it).
struct OnPanic<'a>(&'a Workdir, PathBuf);
impl Drop for OnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.dump_logs(&[]);
            self.0.force_cleanup(std::slice::from_ref(&self.1));
        }
    }
}

/// The exit code conmon wrote for container `id` once its process ended (waits up to 30 s).
fn exit_file_of(w: &Workdir, id: &str) -> String {
    let file = w.path().join("exits").join(id);
    let mut text = String::new();
    let written = integration_tests::poll(Duration::from_secs(30), || {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        !text.is_empty()
    });
    assert!(written, "no exit file for {id}");
    text.trim().to_string()
}

/// The pause container's bundle as CRI-O writes it.
fn pause_bundle(w: &Workdir, id: &str, pins: &Pins, host_network: bool) -> PathBuf {
    let b = w.path().join("bundles").join(id);
    e2e_tests::make_busybox_bundle(&b, &["sleep", "2147483647"]);
    let (net, ipc, uts) = (&pins.files[0], &pins.files[1], &pins.files[2]);
    e2e_tests::edit_spec(&b, |s| {
        s["annotations"] = serde_json::json!({
            "io.kubernetes.cri-o.ContainerType": "sandbox",
            "io.kubernetes.cri-o.SandboxID": id,
            "io.kubernetes.cri-o.HostNetwork": if host_network { "true" } else { "false" },
            "io.kubernetes.cri-o.Name": "k8s_POD_crio-pod_default_uid_0",
        });
        s["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": net},
            {"type": "ipc", "path": ipc},
            {"type": "uts", "path": uts},
        ]);
        s["process"]["oomScoreAdj"] = serde_json::json!(-998);
        s["hostname"] = serde_json::json!(id);
    });
    b
}

/// A member of the pod as CRI-O writes it: `container` type, the sandbox's id, the pod's
/// pinned namespaces by path, a pid namespace of its own.
fn member_bundle(w: &Workdir, id: &str, sandbox: &str, pins: &Pins, command: &[&str]) -> PathBuf {
    let b = w.path().join("bundles").join(id);
    e2e_tests::make_busybox_bundle(&b, command);
    let (net, ipc, uts) = (&pins.files[0], &pins.files[1], &pins.files[2]);
    e2e_tests::edit_spec(&b, |s| {
        s["annotations"] = serde_json::json!({
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.cri-o.SandboxID": sandbox,
            "io.kubernetes.cri-o.Name": format!("k8s_{id}_crio-pod_default_uid_0"),
        });
        s["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": net},
            {"type": "ipc", "path": ipc},
            {"type": "uts", "path": uts},
        ]);
    });
    b
}

/// conmon as CRI-O starts it for `create`; returns conmon's exit status and what it wrote
/// on the sync pipe (`{"pid": N}` or `{"pid": -1, "message": ...}`).
fn conmon_create(w: &Workdir, root: &Path, bundle: &Path, id: &str) -> (i32, String) {
    conmon(w, root, bundle, id, id, &[])
}

/// conmon as CRI-O's ExecSync starts it: `--exec --exec-process-spec F --sync -T 60`, the
/// output in the exec's log (CRI log format); returns the exit code conmon reports on the
/// sync pipe (`{"exit_code": N}`) and the output lines.
fn conmon_exec_sync(
    w: &Workdir,
    root: &Path,
    bundle: &Path,
    id: &str,
    args: &[&str],
) -> (i64, Vec<String>) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let exec_id = format!(
        "exec{}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(args);
    process["terminal"] = serde_json::json!(false);
    let process_file = w.path().join(format!("{exec_id}.json"));
    std::fs::write(&process_file, process.to_string()).unwrap();
    let (code, sync) = conmon(
        w,
        root,
        bundle,
        id,
        &exec_id,
        &[
            "--exec",
            "--exec-process-spec",
            process_file.to_str().unwrap(),
            "--sync",
            "-T",
            "60",
        ],
    );
    let exit = sync
        .split('}')
        .filter_map(|part| serde_json::from_str::<serde_json::Value>(&format!("{part}}}")).ok())
        .find_map(|v| v["exit_code"].as_i64())
        .unwrap_or_else(|| panic!("no exit_code on the sync pipe: {sync}"));
    // conmon --sync exits with the exec's code too.
    assert_eq!(i64::from(code), exit, "conmon --exec: {sync}");
    // CRI log lines: `<time> stdout F <text>`.
    let log = std::fs::read_to_string(w.path().join("logs").join(format!("{exec_id}.ctr.log")))
        .unwrap_or_default();
    let output = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(String::from))
        .collect();
    (exit, output)
}

/// conmon with CRI-O's arguments for container `id` (session `uuid`) plus `extra`; returns
/// conmon's exit status and everything it wrote on the sync pipe.
fn conmon(
    w: &Workdir,
    root: &Path,
    bundle: &Path,
    id: &str,
    uuid: &str,
    extra: &[&str],
) -> (i32, String) {
    let persist = w.path().join("persist").join(uuid);
    // An exec's exit file would take the container's name: execs get a folder of their own.
    let exits = w
        .path()
        .join(if uuid == id { "exits" } else { "exec-exits" });
    let sockets = w.path().join("attach");
    for d in [&persist, &exits, &sockets] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read_end, write_end) = (fds[0], fds[1]);
    let mut cmd = Command::new("conmon");
    cmd.args([
        "-b",
        bundle.to_str().unwrap(),
        "-c",
        id,
        "-u",
        uuid,
        "-n",
        &format!("k8s_{id}"),
    ])
    .arg("--exit-dir")
    .arg(&exits)
    .arg("-l")
    .arg(w.path().join("logs").join(format!("{uuid}.ctr.log")))
    .args(["--log-level", "info"])
    .arg("-P")
    .arg(persist.join("conmon-pidfile"))
    .arg("-p")
    .arg(persist.join("pidfile"))
    .arg("--persist-dir")
    .arg(&persist)
    .arg("-r")
    .arg(w.runtime())
    .arg("--runtime-arg")
    .arg(format!("--root={}", root.display()))
    .arg("--socket-dir-path")
    .arg(&sockets)
    .args(extra)
    .env("_OCI_SYNCPIPE", "3")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: only dup2/close between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto 3 first: the read end may itself be fd 3 (then dup2 replaces it).
            if read_end != 3 {
                libc::close(read_end);
            }
            if write_end != 3 {
                if libc::dup2(write_end, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(write_end);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("conmon (make deps installs it)");
    // SAFETY: our copy of the write end; conmon and its children keep theirs.
    unsafe { libc::close(write_end) };
    // SAFETY: the read end is ours alone from here.
    let mut sync =
        unsafe { <std::fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(read_end) };
    let status = e2e_tests::wait_timeout(&mut child, Duration::from_secs(120));
    let mut message = String::new();
    // conmon's monitor keeps the pipe open while the container lives: read what is there
    // (until the end, for an exec: its pid, then its exit code).
    let mut buf = [0u8; 4096];
    loop {
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&sync);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let wait_ms = if message.is_empty() { 30_000 } else { 1_000 };
        // SAFETY: poll on one valid descriptor.
        if unsafe { libc::poll(&mut p, 1, wait_ms) } <= 0 {
            break;
        }
        match sync.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => message.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    (integration_tests::exit_code(status), message)
}

#[test]
fn crio_host_network_pod_is_refused_and_a_pinned_pod_runs() {
    let w = Workdir::new("kcrio");
    let root = w.path().join("crio-root");
    let _cleanup = OnPanic(&w, root.clone());
    let before = host_network_snapshot();

    // Host network: the host's namespace pinned, with CRI-O's annotation.
    let pins = Pins::new(&w.path().join("pins-host"), true);
    let b = pause_bundle(&w, "hostnet", &pins, true);
    let (code, sync) = conmon_create(&w, &root, &b, "hostnet");
    println!("conmon create of a host-network pod: exit {code}, sync pipe {sync}");
    let v: serde_json::Value = serde_json::from_str(sync.trim()).unwrap_or_default();
    assert!(
        v["pid"].as_i64().unwrap_or(0) < 0,
        "create must fail: {sync}"
    );
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(msg.contains("host"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "one line: {msg:?}");
    // Without the annotation, the pinned host namespace is refused all the same.
    e2e_tests::edit_spec(&b, |s| {
        s["annotations"]["io.kubernetes.cri-o.HostNetwork"] = serde_json::json!("false");
    });
    let (_, sync) = conmon_create(&w, &root, &b, "hostnet");
    let v: serde_json::Value = serde_json::from_str(sync.trim()).unwrap_or_default();
    assert!(
        v["pid"].as_i64().unwrap_or(0) < 0,
        "create must fail: {sync}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("host's own namespace"),
        "{sync}"
    );
    drop(pins);
    let out = w.kata(&root, &["list", "-q"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "state left"
    );
    assert_eq!(
        host_network_snapshot(),
        before,
        "the host's network changed"
    );

    // A pod of its own, every namespace pinned: conmon creates it, it runs, it goes.
    let pins = Pins::new(&w.path().join("pins-pod"), false);
    let b = pause_bundle(&w, "crio-pod", &pins, false);
    let (code, sync) = conmon_create(&w, &root, &b, "crio-pod");
    let v: serde_json::Value = serde_json::from_str(sync.trim()).unwrap_or_default();
    assert!(
        v["pid"].as_i64().unwrap_or(0) > 0,
        "create: exit {code}, {sync}"
    );
    let run = |args: &[&str]| {
        let out = w.kata(&root, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["start", "crio-pod"]);
    let state: serde_json::Value = serde_json::from_str(&run(&["state", "crio-pod"])).unwrap();
    assert_eq!(state["status"], "running");
    run(&["kill", "crio-pod", "KILL"]);
    run(&["delete", "--force", "crio-pod"]);
    drop(pins);
    assert_eq!(
        host_network_snapshot(),
        before,
        "the host's network changed"
    );
    w.assert_no_leaks(&[root, w.path().join("vm"), w.path().join("shared")]);
}

/// A pod the CRI-O way, whole: the pause container (annotations, `oomScoreAdj = -998`, pinned
/// namespaces) and a member created through conmon, both in one VM; `features` as CRI-O reads
/// it; ExecSync through conmon (exit codes, output in the CRI log); a member that exits on its
/// own; stop (kill 15, kill 9) and remove; nothing left.
#[test]
fn crio_pod_with_a_member_exec_and_stop() {
    let w = Workdir::new("kcriop");
    let root = w.path().join("crio-root");
    let _cleanup = OnPanic(&w, root.clone());
    let run = |args: &[&str]| {
        let out = w.kata(&root, args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // CRI-O reads `features` for the recursive mount options it may use.
    let features: serde_json::Value = serde_json::from_str(&run(&["features"])).unwrap();
    for o in ["rro", "rbind", "rprivate"] {
        assert!(
            features["mountOptions"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == o)),
            "{o} missing from features"
        );
    }

    let pins = Pins::new(&w.path().join("pins"), false);
    let pod = "crio-pod";
    let pause = pause_bundle(&w, pod, &pins, false);
    let (code, sync) = conmon_create(&w, &root, &pause, pod);
    assert!(
        sync.contains("\"pid\""),
        "pause create: exit {code}, {sync}"
    );
    run(&["start", pod]);
    let (exit, out) = conmon_exec_sync(&w, &root, &pause, pod, &["cat", "/proc/1/oom_score_adj"]);
    assert_eq!(
        (exit, out),
        (0, vec!["-998".to_string()]),
        "the pause container's oomScoreAdj"
    );

    let member = member_bundle(&w, "member", pod, &pins, &["sleep", "1000"]);
    let (code, sync) = conmon_create(&w, &root, &member, "member");
    let v: serde_json::Value = serde_json::from_str(sync.trim()).unwrap_or_default();
    assert!(
        v["pid"].as_i64().unwrap_or(0) > 0,
        "member create: exit {code}, {sync}"
    );
    run(&["start", "member"]);
    let quick = member_bundle(&w, "quick", pod, &pins, &["sh", "-c", "exit 3"]);
    let (_, sync) = conmon_create(&w, &root, &quick, "quick");
    assert!(sync.contains("\"pid\""), "quick create: {sync}");
    run(&["start", "quick"]);
    let qemus = e2e_tests::processes_mentioning(&w.path().to_string_lossy())
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system"))
        .count();
    assert_eq!(qemus, 1, "one QEMU for the pod");

    let (exit, out) = conmon_exec_sync(
        &w,
        &root,
        &member,
        "member",
        &["sh", "-c", "uname -r; hostname; exit 4"],
    );
    assert_eq!(exit, 4, "ExecSync's exit code: {out:?}");
    integration_tests::assert_guest_kernel(&out[0]);
    assert_eq!(
        out[1], "crio-pod",
        "the member shares the pod's uts namespace"
    );

    // quick exits on its own: conmon writes its exit code to the exit folder.
    assert_eq!(exit_file_of(&w, "quick"), "3");
    let state: serde_json::Value = serde_json::from_str(&run(&["state", "quick"])).unwrap();
    assert_eq!(state["status"], "stopped");
    // CRI-O's StopContainer of an exited container: its kill meets runc's words.
    let out = w.kata(&root, &["kill", "quick", "15"]).output().unwrap();
    assert!(
        out.status.success()
            || String::from_utf8_lossy(&out.stderr).contains("container not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // StopContainer, StopPodSandbox, RemoveContainer/RemovePodSandbox: kill 15, kill 9, delete.
    run(&["kill", "member", "15"]);
    run(&["kill", "member", "9"]);
    exit_file_of(&w, "member");
    for id in ["quick", "member"] {
        run(&["delete", id]);
    }
    run(&["kill", pod, "9"]);
    exit_file_of(&w, pod);
    run(&["delete", pod]);
    drop(pins);
    w.assert_no_leaks(&[root, w.path().join("vm"), w.path().join("shared")]);
}

//! Our containerd shim v2 (`containerd-shim-kata-v2`, runtime `io.containerd.kata.v2`): one
//! process per pod speaking containerd's task API, the agent reached in-process (no
//! kata-proxy, no kata-shim, no containerd-shim), on the same sandbox library as kata-runtime.
//! Through `ctr` and through containerd's CRI plugin, with a containerd of the test's own.

use integration_tests::containerd::{Containerd, CRI_HANDLER};
use integration_tests::cri::{self, CriClient};
use integration_tests::{assert_guest_kernel, lines, poll, pty, run_cmd, IMAGE, T};
use std::path::Path;
use std::time::Duration;

/// Processes of this test whose command line contains `what`.
fn processes(dir: &Path, what: &str) -> usize {
    let me = dir.to_string_lossy().into_owned();
    e2e_tests::processes_mentioning(&me)
        .iter()
        .filter(|(_, cmd)| cmd.contains(what))
        .count()
}

/// The shim processes serving tasks. A member's `start` also runs one, which finds the pod's
/// shim serving and exits: it may still be exiting when containerd has its answer.
fn shims(dir: &Path) -> usize {
    let mut n = 0;
    poll(Duration::from_secs(5), || {
        n = processes(dir, "containerd-shim-kata-v2");
        n == 1
    });
    n
}

/// `ctr events` running while a test acts: what containerd received from the shim.
struct EventLog(std::process::Child);

impl EventLog {
    fn start(c: &Containerd) -> EventLog {
        let child = c
            .command(&["events"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ctr events");
        EventLog(child)
    }

    /// The lines seen so far that mention `id` (ctr events prints one line per event).
    fn lines_of(mut self, id: &str) -> Vec<String> {
        std::thread::sleep(Duration::from_secs(1));
        let _ = self.0.kill();
        let mut seen = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut seen);
        }
        let _ = self.0.wait();
        seen.lines()
            .filter(|l| l.contains(id))
            .map(String::from)
            .collect()
    }
}

/// Where `topic` first appears among event lines.
fn topic_at(lines: &[String], topic: &str) -> Option<usize> {
    lines.iter().position(|l| l.contains(topic))
}

/// `ctr run --rm`: the guest's kernel, stdout and stderr apart, stdin, the exit code.
#[test]
fn kata_v2_run_rm() {
    let c = Containerd::start();
    let out = e2e_tests::run_cmd(
        c.run_kata_v2_command(&[
            "--rm",
            IMAGE,
            "v2-rm",
            "sh",
            "-c",
            "uname -r; read line; echo \"got $line\"; echo oops >&2; exit 5",
        ]),
        b"hello\n",
        T,
    );
    assert_eq!(
        out.code(),
        5,
        "ctr run: {} {}",
        out.stdout_str(),
        out.stderr
    );
    let stdout = out.stdout_str();
    assert_guest_kernel(&stdout);
    assert!(stdout.contains("got hello"), "stdout: {stdout}");
    assert!(out.stderr.contains("oops"), "stderr: {}", out.stderr);
    assert!(!stdout.contains("oops"), "stderr in stdout: {stdout}");
    assert_eq!(processes(c.work.path(), "kata-proxy"), 0);
    c.finish();
}

/// `ctr run -t --rm`: a terminal in the guest of the caller's size; typed input and a resize
/// reach it; the exit code reaches ctr.
#[test]
fn kata_v2_run_tty() {
    let c = Containerd::start();
    let script = pty::probe_script(4);
    let term =
        pty::spawn(c.run_kata_v2_command(&["-t", "--rm", IMAGE, "v2-tty", "sh", "-c", &script]));
    term.wait_for("ready", T);
    term.send(b"typed\r");
    term.wait_for("got:typed", T);
    term.resize(pty::NEW_ROWS, pty::NEW_COLS);
    let (code, shown) = term.wait(T);
    assert_eq!(code, 4, "ctr run -t showed:\n{shown}");
    let shown = lines(&shown);
    let tty = shown.iter().position(|l| l == "/dev/pts/0");
    let tty = tty.unwrap_or_else(|| panic!("no /dev/pts/0 (tty): {shown:?}"));
    assert_guest_kernel(&shown[tty + 1]);
    let size = format!("{} {}", pty::ROWS, pty::COLS);
    assert!(shown.contains(&size), "no {size:?} (stty size): {shown:?}");
    let got = shown.iter().position(|l| l == "got:typed");
    let got = got.unwrap_or_else(|| panic!("no got:typed: {shown:?}"));
    let resized = format!("{} {}", pty::NEW_ROWS, pty::NEW_COLS);
    assert!(
        shown[got..].contains(&resized),
        "the new size {resized:?} did not reach the container: {shown:?}"
    );
    c.finish();
}

/// A detached task: one shim process and one QEMU, nothing else; `ctr task exec` (with and
/// without -t, exit codes, a duplicate exec id refused), `ctr task ps`, `ctr task metrics`
/// (the guest cgroup's numbers), pause/resume, signals, a TERM the process handles (exit 7),
/// `ctr task rm`; the task events containerd received.
#[test]
fn kata_v2_detached_task() {
    let c = Containerd::start();
    let events = EventLog::start(&c);
    let script = "trap 'echo hup >> /tmp/signals' HUP; trap 'echo usr1 >> /tmp/signals' USR1; \
                  trap 'exit 7' TERM; echo ready > /tmp/ready; \
                  while true; do sleep 0.2; done";
    let out = run_cmd(
        c.run_kata_v2_command(&["-d", IMAGE, "d1", "sh", "-c", script]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    assert_eq!(c.task_status("d1").as_deref(), Some("RUNNING"));
    let dir = c.work.path();
    assert_eq!(shims(dir), 1, "one shim");
    assert_eq!(processes(dir, "qemu-system"), 1, "one VM");
    for other in ["kata-proxy", "kata-shim", "containerd-shim "] {
        assert_eq!(processes(dir, other), 0, "{other} runs");
    }

    let mut ready = None;
    assert!(
        poll(Duration::from_secs(30), || {
            let out = run_cmd(
                c.exec_command(&[
                    "--exec-id",
                    "e1",
                    "d1",
                    "sh",
                    "-c",
                    "cat /tmp/ready && uname -r && exit 5",
                ]),
                b"",
                T,
            );
            let ok = out.code() == 5;
            ready = Some(out);
            ok
        }),
        "exec never found the container ready: {:?}",
        ready.map(|o| (o.code(), o.stdout_str(), o.stderr))
    );
    let out = ready.expect("exec ran");
    let stdout = lines(&out.stdout_str());
    assert_eq!(stdout[0], "ready");
    assert_guest_kernel(&stdout[1]);

    // A detached exec keeps its id taken while it runs.
    let out = run_cmd(
        c.exec_command(&["-d", "--exec-id", "bg", "d1", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr task exec -d: {}", out.stderr);
    let out = run_cmd(c.exec_command(&["--exec-id", "bg", "d1", "true"]), b"", T);
    assert_ne!(out.code(), 0, "a second exec with id bg was accepted");

    let term =
        pty::spawn(c.exec_command(&["-t", "--exec-id", "e2", "d1", "sh", "-c", "tty; exit 6"]));
    let (code, shown) = term.wait(T);
    assert_eq!(code, 6, "ctr task exec -t showed:\n{shown}");
    assert!(
        lines(&shown).iter().any(|l| l.starts_with("/dev/pts/")),
        "{shown:?}"
    );

    let out = c.ctr(&["task", "ps", "d1"]);
    assert_eq!(out.code(), 0, "ctr task ps: {}", out.stderr);
    assert!(
        out.stdout_str().lines().count() >= 2,
        "ctr task ps: {}",
        out.stdout_str()
    );

    let out = c.ctr(&["task", "metrics", "d1"]);
    assert_eq!(out.code(), 0, "ctr task metrics: {}", out.stderr);
    let metrics = out.stdout_str();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&name)).then(|| f.get(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} in ctr task metrics: {metrics}"))
    };
    assert!(value("pids.current") >= 3, "{metrics}");
    assert!(value("memory.usage_in_bytes") > 0, "{metrics}");
    assert!(value("cpuacct.usage") > 0, "{metrics}");

    let out = c.ctr(&["task", "pause", "d1"]);
    assert_eq!(out.code(), 0, "ctr task pause: {}", out.stderr);
    c.wait_task_status("d1", "PAUSED", Duration::from_secs(10));
    let out = run_cmd(c.exec_command(&["--exec-id", "p", "d1", "true"]), b"", T);
    assert_ne!(out.code(), 0, "exec in a paused task was accepted");
    let out = c.ctr(&["task", "resume", "d1"]);
    assert_eq!(out.code(), 0, "ctr task resume: {}", out.stderr);
    c.wait_task_status("d1", "RUNNING", Duration::from_secs(10));

    for sig in ["SIGHUP", "10"] {
        let out = c.ctr(&["task", "kill", "-s", sig, "d1"]);
        assert_eq!(out.code(), 0, "ctr task kill -s {sig}: {}", out.stderr);
    }
    let mut seen = String::new();
    let both = poll(Duration::from_secs(20), || {
        let out = run_cmd(
            c.exec_command(&["--exec-id", "e3", "d1", "cat", "/tmp/signals"]),
            b"",
            T,
        );
        seen = out.stdout_str();
        seen.contains("hup") && seen.contains("usr1")
    });
    assert!(both, "the traps did not run: /tmp/signals = {seen:?}");

    let out = c.ctr(&["task", "kill", "d1"]);
    assert_eq!(out.code(), 0, "ctr task kill: {}", out.stderr);
    c.wait_task_status("d1", "STOPPED", Duration::from_secs(30));
    let out = c.ctr(&["task", "kill", "d1"]);
    assert_ne!(out.code(), 0, "kill of a stopped task succeeded");
    let out = c.ctr(&["task", "rm", "d1"]);
    assert_eq!(out.code(), 0, "ctr task rm: {}", out.stderr);
    assert!(
        out.stderr.contains("exit code 7"),
        "ctr task rm: {}",
        out.stderr
    );
    let seen = events.lines_of("d1");
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            topic_at(&seen, topic).is_some(),
            "no {topic} event: {seen:#?}"
        );
    }
    let out = c.ctr(&["containers", "rm", "d1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

/// The guest's OOM killer: the task exits 137 and containerd gets a TaskOOM event.
#[test]
fn kata_v2_oom_event() {
    let c = Containerd::start();
    let events = EventLog::start(&c);
    let checker = e2e_tests::bin_dir().join("kata-spec-checker");
    let mount = format!(
        "type=bind,src={},dst=/kata-spec-checker,options=rbind:ro",
        checker.display()
    );
    let out = run_cmd(
        c.run_kata_v2_command(&[
            "--rm",
            "--memory-limit",
            "16777216",
            "--cap-add",
            "CAP_IPC_LOCK",
            "--mount",
            &mount,
            IMAGE,
            "v2-oom",
            "/kata-spec-checker",
            "--hold-mem-locked",
            "64",
        ]),
        b"",
        T,
    );
    assert_eq!(out.code(), 137, "OOM: {} {}", out.stdout_str(), out.stderr);
    let seen = events.lines_of("v2-oom");
    let at = |topic: &str| topic_at(&seen, topic);
    assert!(at("/tasks/oom").is_some(), "no /tasks/oom event: {seen:#?}");
    assert!(
        at("/tasks/oom") < at("/tasks/exit"),
        "oom after exit: {seen:#?}"
    );
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(at(topic).is_some(), "no {topic} event: {seen:#?}");
    }
    c.finish();
}

/// Faults: QEMU killed under a running task ends the task (exit reported, the pod cleaned up
/// by `task rm`); the shim killed with SIGKILL is cleaned up by containerd (`delete`): no VM,
/// no mount, no record left.
#[test]
fn kata_v2_faults() {
    let c = Containerd::start();
    let dir = c.work.path().to_path_buf();
    let pids_of = |what: &str| -> Vec<i32> {
        e2e_tests::processes_mentioning(&dir.to_string_lossy())
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(what))
            .map(|(pid, _)| pid)
            .collect()
    };
    let out = run_cmd(
        c.run_kata_v2_command(&["-d", IMAGE, "q1", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    for pid in pids_of("qemu-system") {
        // SAFETY: kill(2) with a pid read from /proc.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    c.wait_task_status("q1", "STOPPED", Duration::from_secs(20));
    let out = c.ctr(&["task", "rm", "q1"]);
    assert_eq!(out.code(), 0, "ctr task rm: {}", out.stderr);
    let out = c.ctr(&["containers", "rm", "q1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);

    let out = run_cmd(
        c.run_kata_v2_command(&["-d", IMAGE, "s1", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    for pid in pids_of("containerd-shim-kata-v2") {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // containerd notices the shim's end, runs `containerd-shim-kata-v2 delete`: the VM goes.
    let gone = poll(Duration::from_secs(30), || {
        pids_of("qemu-system").is_empty()
    });
    assert!(gone, "the VM outlived its shim");
    // containerd reports the task's end and forgets the task.
    let forgotten = poll(Duration::from_secs(20), || c.task_status("s1").is_none());
    assert!(
        forgotten,
        "containerd still lists s1: {:?}",
        c.task_status("s1")
    );
    let out = c.ctr(&["containers", "rm", "s1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

/// A pod through containerd's CRI plugin with `runtime_type = "io.containerd.kata.v2"` and a
/// CNI bridge: one shim and one VM for the pod's three containers, ExecSync (output, exit
/// code), a container's own exit code, a container OOM-killed in the guest (CRI's reason
/// OOMKilled), UpdateContainerResources, a container removed without having started,
/// StopContainer, StopPodSandbox, RemovePodSandbox, nothing left.
#[test]
fn kata_v2_cri_pod() {
    let dir = std::env::temp_dir().join(format!("kt-cni-kv2-{}", std::process::id()));
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let json = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kata-v2",
        "plugins": [{
            "type": "bridge", "bridge": "ktcni6", "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.203.6.0/24",
                     "gateway": "10.203.6.1"}]], "dataDir": dir.join("ipam")}
        }]
    });
    std::fs::write(conf.join("10-kata.conflist"), json.to_string()).expect("writing CNI conf");
    struct Bridge(std::path::PathBuf);
    impl Drop for Bridge {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", "ktcni6"])
                .status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _bridge = Bridge(dir.clone());
    let c = Containerd::start_with_cri_kata_v2(&conf);
    let mut client = CriClient::connect(&c.socket());
    let logs = c.work.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let pod_config = cri::pod_config("kv2-pod", &logs, false);
    let pod = client
        .run_pod_sandbox(&pod_config, CRI_HANDLER)
        .expect("RunPodSandbox");
    let checker = e2e_tests::bin_dir().join("kata-spec-checker");
    let mut hog = cri::container_config(
        "hog",
        IMAGE,
        &["/kata-spec-checker", "--hold-mem-locked", "64"],
    );
    hog.mounts = vec![k8s_cri::v1::Mount {
        container_path: "/kata-spec-checker".into(),
        host_path: checker.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    hog.linux = Some(k8s_cri::v1::LinuxContainerConfig {
        resources: Some(k8s_cri::v1::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        security_context: Some(k8s_cri::v1::LinuxContainerSecurityContext {
            capabilities: Some(k8s_cri::v1::Capability {
                add_capabilities: vec!["IPC_LOCK".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    let mut ids = Vec::new();
    for config in [
        cri::container_config("long", IMAGE, &["sleep", "1000"]),
        cri::container_config("quick", IMAGE, &["sh", "-c", "exit 3"]),
        hog,
    ] {
        let id = client
            .create_container(&pod, &config, &pod_config)
            .expect("CreateContainer");
        client.start_container(&id).expect("StartContainer");
        ids.push(id);
    }
    let work = c.work.path();
    assert_eq!(processes(work, "qemu-system"), 1, "one QEMU per pod");
    assert_eq!(shims(work), 1, "one shim per pod");
    assert_eq!(processes(work, "kata-proxy"), 0, "no proxy");
    let (out, err, code) = client
        .exec_sync(&ids[0], &["uname", "-r"])
        .expect("ExecSync");
    assert_eq!(code, 0, "ExecSync: {err}");
    assert_guest_kernel(out.trim());
    let (out, _, _) = client.exec_sync(&ids[0], &["hostname"]).expect("ExecSync");
    assert_eq!(out.trim(), "kv2-pod", "the pod's hostname");
    let (_, _, code) = client
        .exec_sync(&ids[0], &["sh", "-c", "exit 9"])
        .expect("ExecSync");
    assert_eq!(code, 9, "ExecSync's exit code");
    for (n, want) in [(1, (3, "Error")), (2, (137, "OOMKilled"))] {
        let mut last = (0, 0, String::new());
        let exited = poll(Duration::from_secs(60), || {
            last = client.container_exit(&ids[n]).unwrap_or_default();
            last.0 == cri::CONTAINER_EXITED
        });
        assert!(exited, "container {n} did not exit: {last:?}");
        assert_eq!((last.1, last.2.as_str()), want, "container {n}: {last:?}");
    }
    // UpdateContainerResources reaches the container's guest cgroup.
    client
        .update_memory_limit(&ids[0], 256 << 20)
        .expect("UpdateContainerResources");
    let (out, _, _) = client
        .exec_sync(
            &ids[0],
            &["cat", &format!("/sys/fs/cgroup/kata/{}/memory.max", ids[0])],
        )
        .expect("ExecSync");
    assert_eq!(
        out.trim(),
        (256u64 << 20).to_string(),
        "memory.max in the guest"
    );
    // A container created and removed without ever starting.
    let never = client
        .create_container(
            &pod,
            &cri::container_config("never", IMAGE, &["true"]),
            &pod_config,
        )
        .expect("CreateContainer");
    client.remove_container(&never).expect("RemoveContainer");
    client.stop_container(&ids[0], 2).expect("StopContainer");
    let (state, code, _) = client.container_exit(&ids[0]).expect("ContainerStatus");
    assert_eq!((state, code), (cri::CONTAINER_EXITED, 143));
    client.stop_pod_sandbox(&pod).expect("StopPodSandbox");
    client.remove_pod_sandbox(&pod).expect("RemovePodSandbox");
    assert_eq!(processes(work, "qemu-system"), 0, "the pod's VM is gone");
    drop(client);
    c.finish();
}

/// Bad input through the shim v2: a command that does not exist fails `ctr run` with the
/// guest's error and leaves nothing (no VM, no mount, no record); an exec of a missing command
/// fails alone, the task runs on; `kill --all` ends the task and its exec.
#[test]
fn kata_v2_bad_commands() {
    let c = Containerd::start();
    let out = run_cmd(
        c.run_kata_v2_command(&["--rm", IMAGE, "nx1", "/nonexistent"]),
        b"",
        T,
    );
    assert_ne!(out.code(), 0, "ctr run of /nonexistent succeeded");
    assert!(
        out.stderr.contains("/nonexistent"),
        "ctr did not relay the error: {}",
        out.stderr
    );
    assert_eq!(
        processes(c.work.path(), "qemu-system"),
        0,
        "a VM outlived the failed create"
    );
    let _ = c.ctr(&["containers", "rm", "nx1"]);
    let out = run_cmd(
        c.run_kata_v2_command(&["-d", IMAGE, "nx2", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    let out = run_cmd(
        c.exec_command(&["--exec-id", "x", "nx2", "/nonexistent"]),
        b"",
        T,
    );
    assert_ne!(out.code(), 0, "exec of /nonexistent succeeded");
    let out = run_cmd(c.exec_command(&["--exec-id", "y", "nx2", "true"]), b"", T);
    assert_eq!(out.code(), 0, "exec after a failed one: {}", out.stderr);
    // kill --all reaches the init process and a detached exec alike.
    let out = run_cmd(
        c.exec_command(&["-d", "--exec-id", "bg", "nx2", "sleep", "2000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr task exec -d: {}", out.stderr);
    let out = c.ctr(&["task", "kill", "--all", "-s", "SIGKILL", "nx2"]);
    assert_eq!(out.code(), 0, "ctr task kill --all: {}", out.stderr);
    c.wait_task_status("nx2", "STOPPED", Duration::from_secs(30));
    let out = c.ctr(&["task", "rm", "-f", "nx2"]);
    assert_eq!(out.code(), 0, "ctr task rm -f: {}", out.stderr);
    assert!(
        out.stderr.contains("exit code 137"),
        "ctr task rm: {}",
        out.stderr
    );
    let out = c.ctr(&["containers", "rm", "nx2"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

//! create → state → start → kill → delete, as containerd and conmon drive it.

use e2e_tests::{processes_mentioning, wait_timeout, Env};
use std::process::Stdio;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

fn state(env: &Env, id: &str) -> serde_json::Value {
    let out = env.run(&["state", id], b"", T);
    assert_eq!(out.code(), 0, "state failed: {}", out.stderr);
    serde_json::from_slice(&out.stdout).expect("state is JSON")
}

fn wait_status(env: &Env, id: &str, want: &str, within: Duration) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let s = state(env, id);
        if s["status"] == want {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "status stayed {} (wanted {want})",
            s["status"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vm_create_start_kill_delete() {
    let env = Env::new();
    let script = "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let b = env.bundle("life", &["sh", "-c", script]);
    // OCI hooks run on the host with the state on stdin.
    let hook = |name: &str| {
        let out = env.path().join(format!("{name}.json"));
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]})
    };
    let cfg = b.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    spec["hooks"] = serde_json::json!({
        "prestart": [hook("prestart")], "poststart": [hook("poststart")], "poststop": [hook("poststop")]
    });
    std::fs::write(&cfg, serde_json::to_vec(&spec).unwrap()).unwrap();
    let hook_state = |name: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(env.path().join(format!("{name}.json"))).expect("hook ran"),
        )
        .expect("hook got JSON state")
    };
    let pid_file = env.path().join("init.pid");
    let out_file = env.path().join("stdout");
    let stdout = std::fs::File::create(&out_file).unwrap();

    // The shim inherits create's stdio: give it a file, as a caller gives it pipes.
    let mut create = env.cmd(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "life",
    ]);
    create
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    let mut child = create.spawn().unwrap();
    let status = wait_timeout(&mut child, T);
    assert!(status.success(), "create failed");

    let s = state(&env, "life");
    assert_eq!(s["status"], "created");
    assert_eq!(hook_state("prestart")["status"], "created");
    assert_eq!(hook_state("prestart")["id"], "life");
    assert_eq!(s["id"], "life");
    assert_eq!(s["ociVersion"], "1.0.2");
    assert_eq!(s["bundle"], b.canonicalize().unwrap().to_str().unwrap());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(s["pid"], pid);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "kata-shim", "pid file names a live kata-shim");

    let out = env.run(&["start", "life"], b"", T);
    assert_eq!(out.code(), 0, "start: {}", out.stderr);
    assert_eq!(state(&env, "life")["status"], "running");
    assert_eq!(hook_state("poststart")["status"], "running");
    // Wait for the trap to be installed before signalling.
    let start = Instant::now();
    while !std::fs::read_to_string(&out_file)
        .unwrap()
        .contains("ready")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "container never printed ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = env.run(&["kill", "life", "TERM"], b"", T);
    assert_eq!(out.code(), 0, "kill: {}", out.stderr);
    let s = wait_status(&env, "life", "stopped", Duration::from_secs(30));
    assert_eq!(s["pid"], 0);
    assert!(
        std::fs::read_to_string(&out_file)
            .unwrap()
            .contains("got TERM"),
        "trap handler did not run"
    );

    let out = env.run(&["delete", "life"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    assert_eq!(hook_state("poststop")["status"], "stopped");
    env.assert_clean();
    let out = env.run(&["state", "life"], b"", T);
    assert_eq!(out.code(), 1);
}

#[test]
fn vm_delete_force_of_a_running_container() {
    let env = Env::new();
    let b = env.bundle("sleeper", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "sleeper"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);
    assert_eq!(state(&env, "sleeper")["status"], "running");
    let out = env.run(&["delete", "sleeper"], b"", T);
    assert_eq!(
        out.code(),
        1,
        "delete of a running container must be refused"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = env.run(&["delete", "--force", "sleeper"], b"", T);
    assert_eq!(out.code(), 0, "delete --force: {}", out.stderr);
    env.assert_clean();
}

#[test]
fn vm_two_containers_run_in_two_separate_vms() {
    let env = Env::new();
    let ba = env.bundle("a", &["sleep", "1000"]);
    let bb = env.bundle("b", &["sleep", "1000"]);
    let t = {
        let mut c = env.cmd(&["run", "-d", "--bundle", bb.to_str().unwrap(), "b"]);
        c.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::spawn(move || wait_timeout(&mut child, T))
    };
    let out = env.run(
        &["run", "-d", "--bundle", ba.to_str().unwrap(), "a"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run a: {}", out.stderr);
    assert!(t.join().unwrap().success(), "run b failed");

    let qemu_a = processes_mentioning(&env.path().join("vm/a/").to_string_lossy());
    let qemu_b = processes_mentioning(&env.path().join("vm/b/").to_string_lossy());
    let qa: Vec<_> = qemu_a
        .iter()
        .filter(|(_, c)| c.contains("qemu-system"))
        .collect();
    let qb: Vec<_> = qemu_b
        .iter()
        .filter(|(_, c)| c.contains("qemu-system"))
        .collect();
    assert_eq!(qa.len(), 1, "{qemu_a:?}");
    assert_eq!(qb.len(), 1, "{qemu_b:?}");
    assert_ne!(qa[0].0, qb[0].0);
    // Each VM is given only its own container's files.
    let shared_a: Vec<_> = std::fs::read_dir(env.path().join("shared/a"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(shared_a, vec![std::ffi::OsString::from("a")]);

    for id in ["a", "b"] {
        let out = env.run(&["delete", "--force", id], b"", T);
        assert_eq!(out.code(), 0, "delete {id}: {}", out.stderr);
    }
    env.assert_clean();
}

/// Signals by number reach the container's process; `kill --all` reaches every process of the
/// container (its cgroup in the guest), execs included.
#[test]
fn vm_signal_numbers_and_kill_all() {
    let env = Env::new();
    let b = env.bundle(
        "sig",
        &[
            "sh",
            "-c",
            "trap 'echo usr1 >> /tmp/got' USR1; touch /tmp/ready; while true; do sleep 1; done",
        ],
    );
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "sig"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);
    wait_status(&env, "sig", "running", Duration::from_secs(30));
    // A signal without a handler is dropped for a pid namespace's init: wait for the trap.
    let start = Instant::now();
    while !b.join("rootfs/tmp/ready").exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "trap never set");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["kill", "sig", "10"], b"", T);
    assert_eq!(out.code(), 0, "kill 10: {}", out.stderr);
    // The rootfs is the bundle's, shared into the VM: the trap's file shows up on the host.
    let got = b.join("rootfs/tmp/got");
    let start = Instant::now();
    while std::fs::read_to_string(&got).unwrap_or_default() != "usr1\n" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "SIGUSR1 never handled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["exec", "-d", "sig", "sleep", "1000"], b"", T);
    assert_eq!(out.code(), 0, "exec -d: {}", out.stderr);
    let out = env.run(&["ps", "sig"], b"", T);
    assert!(
        out.stdout_str().contains("sleep 1000"),
        "the guest's view lists the exec'd sleep: {}",
        out.stdout_str()
    );
    // ps json: host pids, those of the kata-shims standing for the container's process and
    // its exec (as `state` and the pid files give), never a guest pid.
    let out = env.run(&["ps", "--format", "json", "sig"], b"", T);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).expect("ps json");
    assert_eq!(
        pids.len(),
        2,
        "the container's shim and the exec's: {pids:?}"
    );
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("kata-shim"),
            "pid {pid} is not a kata-shim on the host"
        );
    }
    let out = env.run(&["kill", "--all", "sig", "SIGKILL"], b"", T);
    assert_eq!(out.code(), 0, "kill --all: {}", out.stderr);
    wait_status(&env, "sig", "stopped", Duration::from_secs(30));
    let out = env.run(&["delete", "sig"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    env.assert_clean();
}

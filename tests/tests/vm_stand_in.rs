//! Nothing inside the guest outlives what stands for it on the host (issue 17, item 2): a
//! kata-shim killed with SIGKILL (what containerd does to an ExecSync that timed out, or to a
//! container's shim) takes its guest process, and that process's children, with it.

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
/// The bound is 2 s; the check itself is an exec into a TCG guest (0.2-1 s on a busy
/// machine), so the time to the *start* of the check that finds the process gone is measured.
const BOUND: Duration = Duration::from_secs(3);

fn kill9(pid: i32) {
    // SAFETY: kill(2) with a pid the runtime wrote in a pid file.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

fn pid_file(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

/// Every command line in the guest that `in_container` sees (busybox ps).
fn guest_commands(env: &Env, in_container: &str) -> String {
    let out = env.run(&["exec", in_container, "ps", "-o", "args"], b"", T);
    assert_eq!(out.code(), 0, "ps: {}", out.stderr);
    out.stdout_str()
}

/// Time from `since` to the start of the first check that no longer sees `needle`.
fn gone_after(env: &Env, in_container: &str, needle: &str, since: Instant) -> Duration {
    loop {
        let checked_at = since.elapsed();
        let seen = guest_commands(env, in_container);
        if !seen.contains(needle) {
            return checked_at;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{needle} still runs in the guest 30 s after its shim was killed:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vm_exec_dies_with_its_shim() {
    let env = Env::new();
    let b = env.bundle("box", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "box"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);

    let direct = env.path().join("direct.pid");
    let tree = env.path().join("tree.pid");
    for (file, cmd) in [
        (&direct, vec!["sleep", "4321"]),
        // A shell with a child: the child goes too.
        (&tree, vec!["sh", "-c", "sleep 4322; echo never"]),
    ] {
        let mut args = vec!["exec", "-d", "--pid-file", file.to_str().unwrap(), "box"];
        args.extend(cmd);
        let out = env.run(&args, b"", T);
        assert_eq!(out.code(), 0, "exec -d: {}", out.stderr);
    }
    let seen = guest_commands(&env, "box");
    assert!(
        seen.contains("sleep 4321") && seen.contains("sleep 4322"),
        "{seen}"
    );

    let killed = Instant::now();
    kill9(pid_file(&direct));
    kill9(pid_file(&tree));
    let t1 = gone_after(&env, "box", "sleep 4321", killed);
    let t2 = gone_after(&env, "box", "sleep 4322", killed);
    println!("exec shims SIGKILLed: guest processes gone after {t1:?} / {t2:?}");
    assert!(t1 <= BOUND && t2 <= BOUND, "{t1:?} {t2:?}");
    // The container itself is untouched, and later execs work.
    assert_eq!(env.status("box"), "running");
    let out = env.run(&["exec", "box", "true"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);

    let out = env.run(&["delete", "--force", "box"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    env.assert_clean();
}

/// A container's own shim killed: its process goes. Seen from the sandbox container of the
/// same pod, whose pid namespace the member shares (CRI's shareProcessNamespace: the member
/// names the sandbox's pid namespace by a path).
#[test]
fn vm_container_process_dies_with_its_shim() {
    let env = Env::new();
    let sb = env.bundle("pod", &["sleep", "999999"]);
    edit_spec(&sb, |s| {
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "pod"
        });
    });
    let out = env.run(
        &["run", "-d", "--bundle", sb.to_str().unwrap(), "pod"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d pod: {}", out.stderr);
    let mb = env.bundle("member", &["sleep", "4444"]);
    edit_spec(&mb, |s| {
        s["annotations"] = json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod"
        });
        for ns in s["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = json!("/proc/4242/ns/pid");
            }
        }
    });
    let member_pid = env.path().join("member.pid");
    let out = env.run(
        &[
            "run",
            "-d",
            "--pid-file",
            member_pid.to_str().unwrap(),
            "--bundle",
            mb.to_str().unwrap(),
            "member",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d member: {}", out.stderr);
    let seen = guest_commands(&env, "pod");
    assert!(seen.contains("sleep 4444"), "{seen}");

    let killed = Instant::now();
    kill9(pid_file(&member_pid));
    let t = gone_after(&env, "pod", "sleep 4444", killed);
    println!("container shim SIGKILLed: its process gone after {t:?}");
    assert!(t <= BOUND, "{t:?}");
    assert_eq!(env.status("member"), "stopped");
    assert_eq!(env.status("pod"), "running");
    let out = env.run(&["delete", "member"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let out = env.run(&["delete", "--force", "pod"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    env.assert_clean();
}

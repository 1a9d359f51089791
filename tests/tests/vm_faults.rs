//! Fault injection: a component of a running sandbox is killed (QEMU, proxy, shim), the guest
//! powers itself off, or `kata-runtime` itself is killed part-way through create, exec or
//! delete. Every waiting party must notice within a bounded time, `state` must say `stopped`,
//! and `delete --force` must leave nothing behind. Measured times are printed (`--nocapture`)
//! for the README's table.

use e2e_tests::{edit_spec, Env};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
/// The bound on noticing a dead component (the target is 5 s; TCG on a busy machine is slow).
const DETECT: Duration = Duration::from_secs(10);

fn record(env: &Env, id: &str, file: &str) -> Value {
    let text = std::fs::read_to_string(env.root.join(id).join(file)).expect("state record");
    serde_json::from_str(&text).expect("state JSON")
}

struct Pids {
    qemu: i32,
    proxy: i32,
    shim: i32,
}

fn pids(env: &Env, id: &str) -> Pids {
    let sb = record(env, id, "sandbox.json");
    let c = record(env, id, "container.json");
    let pid = |v: &Value| v.as_i64().expect("pid") as i32;
    Pids {
        qemu: pid(&sb["hypervisor"]["pid"]),
        proxy: pid(&sb["proxy"]["pid"]),
        shim: pid(&c["shim"]["pid"]),
    }
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => false,
    }
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) with a pid this test read from the runtime's state.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

/// Time until `done` holds, or None after `limit`.
fn time_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn start(env: &Env, id: &str) {
    let b = env.bundle(id, &["sleep", "1000"]);
    let out = env.run(&["run", "-d", "--bundle", b.to_str().unwrap(), id], b"", T);
    assert_eq!(out.code(), 0, "run -d {id}: {}", out.stderr);
    assert_eq!(env.status(id), "running");
}

fn shim_log(env: &Env, id: &str) -> String {
    std::fs::read_to_string(
        env.path()
            .join("vm")
            .join(id)
            .join(format!("shim-{id}.log")),
    )
    .unwrap_or_default()
}

fn force_delete_leaves_nothing(env: &Env, id: &str) {
    let out = env.run(&["delete", "--force", id], b"", T);
    assert_eq!(out.code(), 0, "delete --force {id}: {}", out.stderr);
    env.assert_clean();
}

/// One component killed: the shim notices and exits with an error line, `state` says stopped.
fn component_killed(which: &str) {
    let env = Env::new();
    let id = format!("kill-{which}");
    start(&env, &id);
    let p = pids(&env, &id);
    let victim = match which {
        "qemu" => p.qemu,
        "proxy" => p.proxy,
        _ => p.shim,
    };
    kill9(victim);
    let shim_gone = time_until(DETECT, || !alive(p.shim));
    let stopped = time_until(DETECT, || env.status(&id) == "stopped");
    println!(
        "fault {which} killed: shim gone after {shim_gone:?}, state stopped after {stopped:?}"
    );
    assert!(
        shim_gone.is_some(),
        "{which} killed: the shim is still running"
    );
    assert!(
        stopped.is_some(),
        "{which} killed: state is still {}",
        env.status(&id)
    );
    if which != "shim" {
        let log = shim_log(&env, &id);
        assert!(
            log.lines().any(|l| l.contains("level=error")),
            "{which} killed: no error line in the shim's log:\n{log}"
        );
    }
    force_delete_leaves_nothing(&env, &id);
}

#[test]
fn qemu_killed() {
    component_killed("qemu");
}

#[test]
fn proxy_killed() {
    component_killed("proxy");
}

#[test]
fn shim_killed() {
    component_killed("shim");
}

/// The guest goes away from inside, through sysrq from a container allowed to write it: `o`
/// powers it off, `c` crashes its kernel (a panic, as when the agent, its PID 1, dies:
/// `panic=-1` reboots at once and QEMU's `-no-reboot` exits).
fn guest_goes_away(sysrq: char) {
    let env = Env::new();
    let id = format!("sysrq-{sysrq}");
    let b = env.bundle(&id, &["sleep", "1000"]);
    edit_spec(&b, |s| {
        let ro = s["linux"]["readonlyPaths"].as_array_mut().unwrap();
        ro.retain(|p| p != "/proc/sysrq-trigger");
    });
    let out = env.run(&["run", "-d", "--bundle", b.to_str().unwrap(), &id], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let p = pids(&env, &id);
    let cmd = format!("echo {sysrq} > /proc/sysrq-trigger");
    let out = env.run(&["exec", "-d", &id, "sh", "-c", &cmd], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let qemu_gone = time_until(DETECT, || !alive(p.qemu));
    let shim_gone = time_until(DETECT, || !alive(p.shim));
    let stopped = time_until(DETECT, || env.status(&id) == "stopped");
    println!(
        "fault guest sysrq {sysrq}: QEMU gone after {qemu_gone:?}, shim after {shim_gone:?}, state stopped after {stopped:?}"
    );
    assert!(
        qemu_gone.is_some(),
        "sysrq {sysrq}: the VM is still running"
    );
    assert!(
        shim_gone.is_some(),
        "sysrq {sysrq}: the shim is still running"
    );
    assert!(stopped.is_some(), "state is {}", env.status(&id));
    force_delete_leaves_nothing(&env, &id);
}

#[test]
fn guest_powers_off() {
    guest_goes_away('o');
}

#[test]
fn guest_kernel_panics() {
    guest_goes_away('c');
}

/// `kata-runtime` with this env's flags, not waited for.
fn spawn_runtime(env: &Env, args: &[&str]) -> Child {
    env.cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning kata-runtime")
}

fn kill_runtime_after(mut child: Child, after: Duration) {
    std::thread::sleep(after);
    let _ = child.kill();
    let _ = child.wait();
}

/// `kata-runtime create` killed at several points (before, during and after the VM boots):
/// `delete --force` then removes the VM, proxy, shim, mounts and state.
#[test]
fn runtime_killed_during_create() {
    let env = Env::new();
    for (i, ms) in [150u64, 800, 2500, 6000].into_iter().enumerate() {
        let id = format!("create-{i}");
        let b = env.bundle(&id, &["sleep", "1000"]);
        let child = spawn_runtime(&env, &["create", "--bundle", b.to_str().unwrap(), &id]);
        kill_runtime_after(child, Duration::from_millis(ms));
        if !env.root.join(&id).exists() {
            // Killed before it claimed the id: nothing to delete, nothing may be left.
            env.assert_clean();
            continue;
        }
        force_delete_leaves_nothing(&env, &id);
    }
}

/// `kata-runtime start`, `exec` and `delete` killed part-way: `delete --force` finishes the job.
#[test]
fn runtime_killed_during_start_exec_and_delete() {
    let env = Env::new();
    let b = env.bundle("starting", &["sleep", "1000"]);
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "starting"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let child = spawn_runtime(&env, &["start", "starting"]);
    kill_runtime_after(child, Duration::from_millis(40));
    force_delete_leaves_nothing(&env, "starting");

    start(&env, "victim");
    let child = spawn_runtime(&env, &["exec", "victim", "sleep", "30"]);
    kill_runtime_after(child, Duration::from_millis(1500));
    let child = spawn_runtime(&env, &["delete", "--force", "victim"]);
    kill_runtime_after(child, Duration::from_millis(300));
    if env.root.join("victim").exists() {
        force_delete_leaves_nothing(&env, "victim");
    } else {
        env.assert_clean();
    }
}

#[test]
fn corrupt_state_can_be_force_deleted() {
    let env = Env::new();
    start(&env, "corrupt");
    let file = env.root.join("corrupt").join("container.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    let out = env.run(&["state", "corrupt"], b"", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("container.json"), "{}", out.stderr);
    force_delete_leaves_nothing(&env, "corrupt");
}

/// The shared folder is the guest's only view of the host: it holds the container's rootfs and
/// volumes, never the bundle (config.json) or anything beside it, and `..` from inside the
/// container leads nowhere. (The guest sees exactly the host folder the 9p/virtio-fs share
/// exports, so that folder is inspected from the host while the container runs.)
#[test]
fn the_share_exposes_only_rootfs_and_volumes() {
    let env = Env::new();
    let vol = env.path().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("vol-file"), "volume data\n").unwrap();
    let b = env.bundle("share", &["sleep", "1000"]);
    std::fs::write(b.join("host-secret"), "SECRET-42 next to the rootfs\n").unwrap();
    std::fs::write(
        env.path().join("host-secret"),
        "SECRET-42 in the test folder\n",
    )
    .unwrap();
    edit_spec(&b, |s| {
        s["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "ro"]
        }));
    });
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "share"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);

    let script = "for p in /../host-secret /../../host-secret /bin/../../host-secret \
                  /vol/../host-secret /vol/../../host-secret; do cat $p 2>/dev/null; done; \
                  ls -a /.. /vol/..; echo end";
    let out = env.run(&["exec", "share", "sh", "-c", script], b"", T);
    let stdout = out.stdout_str();
    assert!(stdout.contains("end"), "{stdout} {}", out.stderr);
    assert!(
        !stdout.contains("SECRET-42"),
        "escaped the rootfs: {stdout}"
    );

    // What the share exports, walked without following links (as the guest would see it).
    let shared = env.path().join("shared").join("share");
    let mut files = Vec::new();
    let mut stack = vec![shared.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&shared).unwrap().display().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("rootfs/bin/busybox")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("vol-file")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with("config.json")),
        "bundle shared: {names:?}"
    );
    for f in &files {
        let text = std::fs::read(f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("SECRET-42"),
            "{} is shared and holds a host secret",
            f.display()
        );
    }
    force_delete_leaves_nothing(&env, "share");
}

/// The guest runs out of memory (an exec allocates four times the VM's RAM) and its /dev/shm
/// fills up: the guilty process fails, the container and the sandbox go on.
#[test]
fn guest_memory_and_tmpfs_exhaustion() {
    let env = Env::new();
    let b = env.bundle("hog", &["sleep", "1000"]);
    std::fs::copy(
        e2e_tests::bin_dir().join("kata-spec-checker"),
        b.join("rootfs/kata-spec-checker"),
    )
    .unwrap();
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "hog"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let out = env.run(
        &["exec", "hog", "/kata-spec-checker", "--hold-mem", "1024"],
        b"",
        T,
    );
    assert_ne!(
        out.code(),
        0,
        "a 1 GiB allocation in a 256 MiB VM succeeded?"
    );
    let out = env.run(
        &[
            "exec",
            "hog",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M 2>&1; echo dd=$?",
        ],
        b"",
        T,
    );
    let stdout = out.stdout_str();
    assert!(
        stdout.contains("No space left") && !stdout.contains("dd=0"),
        "{stdout}"
    );
    assert_eq!(env.status("hog"), "running");
    let out = env.run(&["kata-check", "--sandbox", "hog"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stdout_str());
    force_delete_leaves_nothing(&env, "hog");
}

/// The agent's socket is broken (the proxy's listening socket removed): calls fail with one
/// line naming the socket, the health check says which link is broken, delete --force cleans.
#[test]
fn agent_socket_broken() {
    let env = Env::new();
    start(&env, "nosock");
    let socket = env.path().join("vm/nosock/proxy.sock");
    std::fs::remove_file(&socket).unwrap();
    let out = env.run(&["exec", "nosock", "true"], b"", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("proxy.sock"), "{}", out.stderr);
    let out = env.run(&["kata-check", "--sandbox", "nosock"], b"", T);
    let table = out.stdout_str();
    assert_eq!(out.code(), 1, "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent ") && l.contains(" FAIL ")),
        "{table}"
    );
    force_delete_leaves_nothing(&env, "nosock");
}

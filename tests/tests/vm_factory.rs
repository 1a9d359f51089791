//! The VM factory end to end: `factory init` keeps VMs booted, new sandboxes take them (plain
//! boots and template clones), the daemon refills, `factory destroy` leaves nothing.

use e2e_tests::{host_kernel_release, Env};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(180);

fn with_factory(env: &Env, section: &str) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text += &format!("[factory]\n{section}");
    std::fs::write(&env.config, text).unwrap();
}

fn status(env: &Env) -> Option<Value> {
    let out = env.run(&["factory", "status", "--json"], b"", T);
    (out.code() == 0).then(|| serde_json::from_slice(&out.stdout).expect("status JSON"))
}

fn wait_ready(env: &Env, n: usize) -> Value {
    let t0 = Instant::now();
    loop {
        let s = status(env).expect("the daemon answers");
        if s["ready"].as_array().map_or(0, Vec::len) >= n && s["booting"] == false {
            return s;
        }
        assert!(t0.elapsed() < T, "cache not refilled: {s}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs `uname -r` in a new sandbox; returns the release it printed.
fn run_uname(env: &Env, id: &str) -> String {
    let b = env.bundle(id, &["uname", "-r"]);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), id], b"", T);
    assert_eq!(out.code(), 0, "run {id}: {}", out.stderr);
    let release = out.stdout_str().trim().to_string();
    assert!(!release.is_empty(), "run {id}: no output; {}", out.stderr);
    assert_ne!(
        release,
        host_kernel_release(),
        "{id} ran on the host's kernel"
    );
    release
}

fn destroy(env: &Env) {
    let out = env.run(&["factory", "destroy"], b"", T);
    assert_eq!(out.code(), 0, "destroy: {}", out.stderr);
    assert!(status(env).is_none(), "the daemon still answers");
}

#[test]
fn vm_factory_cache_serves_and_refills() {
    let env = Env::new();
    // Without vm_cache_number there is nothing to start: one line, exit 1.
    let out = env.run(&["factory", "init"], b"", T);
    assert_eq!(out.code(), 1, "{}", out.stdout_str());
    assert!(
        out.stderr.contains("vm_cache_number is 0"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    with_factory(&env, "vm_cache_number = 1\n");
    let out = env.run(&["factory", "init"], b"", T);
    assert_eq!(out.code(), 0, "init: {}", out.stderr);
    assert!(
        out.stdout_str().contains("1 VMs ready"),
        "{}",
        out.stdout_str()
    );
    let s = wait_ready(&env, 1);
    let cached_pid = s["ready"][0]["qemu_pid"].as_i64().unwrap();
    // A second daemon is refused.
    let out = env.run(&["factory", "init"], b"", T);
    assert_eq!(out.code(), 1);
    assert!(out.stderr.contains("already running"), "{}", out.stderr);

    // The sandbox takes the booted VM (its QEMU is the cached one), and the container still
    // runs on the guest kernel.
    let b = env.bundle("c1", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "c1"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);
    let out = env.run(&["events", "--stats", "c1"], b"", T);
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats");
    let qemu_pid = stats["data"]["sandbox_host_overhead"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["component"] == "qemu")
        .and_then(|p| p["pid"].as_i64());
    assert_eq!(qemu_pid, Some(cached_pid), "not the cached VM: {stats}");
    let out = env.run(&["exec", "c1", "cat", "/proc/sys/kernel/hostname"], b"", T);
    assert_eq!(out.code(), 0, "exec: {}", out.stderr);
    let logs = env.run(&["logs", "c1"], b"", T).stdout_str();
    assert!(logs.contains("took cached VM"), "{logs}");
    let out = env.run(&["delete", "--force", "c1"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);

    // A replacement was booted; the next sandbox takes it.
    let s = wait_ready(&env, 1);
    assert_eq!(s["handed_out"], 1, "{s}");
    assert_ne!(s["ready"][0]["qemu_pid"].as_i64(), Some(cached_pid));
    run_uname(&env, "c2");

    // A sandbox whose VM settings differ boots its own VM, the cache untouched.
    let b = env.bundle("big", &["true"]);
    e2e_tests::edit_spec(&b, |s| {
        s["annotations"] = serde_json::json!({
            "io.katacontainers.config.hypervisor.default_memory": "320"
        });
    });
    let s = wait_ready(&env, 1);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "big"], b"", T);
    assert_eq!(out.code(), 0, "run big: {}", out.stderr);
    let after = wait_ready(&env, 1);
    assert_eq!(after["handed_out"], s["handed_out"], "{after}");

    destroy(&env);
    env.assert_clean();
}

#[test]
fn vm_factory_template_clones() {
    let env = Env::new();
    with_factory(&env, "vm_cache_number = 2\nenable_template = true\n");
    let out = env.run(&["factory", "init"], b"", T);
    assert_eq!(out.code(), 0, "init: {}", out.stderr);
    let s = wait_ready(&env, 2);
    assert!(s["template"].is_string(), "no template: {s}");
    let template = std::path::PathBuf::from(s["template"].as_str().unwrap());
    assert!(template.join("memory").is_file() && template.join("state").is_file());
    for vm in s["ready"].as_array().unwrap() {
        assert_eq!(vm["from_template"], true, "{s}");
    }
    // Two sandboxes from two clones of one template: each its own VM, hostname, files.
    let a = run_uname(&env, "t1");
    let b = run_uname(&env, "t2");
    assert_eq!(a, b);
    let bundle = env.bundle(
        "t3",
        &["sh", "-c", "echo x > /tmp/f && cat /tmp/f && hostname"],
    );
    e2e_tests::edit_spec(&bundle, |s| s["hostname"] = "clone-three".into());
    let out = env.run(&["run", "--bundle", bundle.to_str().unwrap(), "t3"], b"", T);
    assert_eq!(out.code(), 0, "run t3: {}", out.stderr);
    assert_eq!(out.stdout_str(), "x\nclone-three\n");

    destroy(&env);
    assert!(!template.exists(), "template left behind");
    env.assert_clean();
}

/// Gone: no such process, or a zombie nobody reaps (its parent died).
fn gone(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        })
        .unwrap_or(true)
}

fn wait_gone(pid: i64, what: &str) {
    let t0 = Instant::now();
    while !gone(pid) {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{what} (pid {pid}) still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn vm_factory_faults() {
    let env = Env::new();
    with_factory(&env, "vm_cache_number = 1\n");
    let out = env.run(&["factory", "init"], b"", T);
    assert_eq!(out.code(), 0, "init: {}", out.stderr);

    // A sandbox on a cached VM whose records are corrupt: `delete --force` finds its QEMU and
    // proxy by the folders they were booted in (named in the sandbox's VM folder).
    let s = wait_ready(&env, 1);
    let cached_qemu = s["ready"][0]["qemu_pid"].as_i64().unwrap();
    let b = env.bundle("c1", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "c1"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);
    for file in ["container.json", "sandbox.json"] {
        std::fs::write(env.root.join("c1").join(file), b"{\"trunc").unwrap();
    }
    let out = env.run(&["delete", "--force", "c1"], b"", T);
    assert_eq!(out.code(), 0, "delete --force: {}", out.stderr);
    wait_gone(cached_qemu, "the corrupt sandbox's QEMU");

    // The daemon killed: its cached VM stays behind, `create` boots instead, and
    // `factory destroy` stops what the dead daemon left.
    let s = wait_ready(&env, 1);
    let (daemon, cached_qemu) = (
        s["pid"].as_i64().unwrap(),
        s["ready"][0]["qemu_pid"].as_i64().unwrap(),
    );
    let _ = std::process::Command::new("kill")
        .args(["-9", &daemon.to_string()])
        .status();
    wait_gone(daemon, "the daemon");
    assert!(!gone(cached_qemu), "the cached VM died with the daemon");
    run_uname(&env, "c2");
    assert!(status(&env).is_none(), "a dead daemon answers");
    let out = env.run(&["factory", "destroy"], b"", T);
    assert_eq!(out.code(), 0, "destroy: {}", out.stderr);
    assert!(
        out.stdout_str().contains("no daemon"),
        "{}",
        out.stdout_str()
    );
    wait_gone(cached_qemu, "the dead daemon's cached QEMU");
    env.assert_clean();
}

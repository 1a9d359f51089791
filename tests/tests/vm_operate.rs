//! Operating a sandbox: the statistics (the container's usage from the guest, the host
//! overhead apart), the merged log of all five sources, the end-to-end health check, and the
//! configuration file shaping the VM.

use e2e_tests::{bin_dir, edit_spec, Env};
use serde_json::Value;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
const MIB: f64 = 1024.0 * 1024.0;

fn stats(env: &Env, id: &str) -> Value {
    let out = env.run(&["events", "--stats", id], b"", T);
    assert_eq!(out.code(), 0, "events --stats: {}", out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON event");
    assert_eq!(v["type"], "stats", "{v}");
    v["data"].clone()
}

fn memory_usage(data: &Value) -> f64 {
    data["memory"]["usage"]["usage"]
        .as_f64()
        .expect("memory usage")
        / MIB
}

/// The sandbox's whole host RSS as `events --stats` reports it apart.
fn host_rss(data: &Value) -> f64 {
    data["sandbox_host_overhead"]["total_rss_bytes"]
        .as_f64()
        .expect("host overhead")
        / MIB
}

#[test]
fn stats_logs_and_health_of_a_running_sandbox() {
    let env = Env::new();
    let b = env.bundle("ops", &["sleep", "1000"]);
    std::fs::copy(
        bin_dir().join("kata-spec-checker"),
        b.join("rootfs/kata-spec-checker"),
    )
    .unwrap();
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "ops"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);

    // Stats: the container's memory rises by what it allocates; the VM's host RSS is apart.
    let before = stats(&env, "ops");
    let base = memory_usage(&before);
    assert!(
        base < 32.0,
        "a sleeping busybox uses {base:.1} MiB? {before}"
    );
    let overhead = &before["sandbox_host_overhead"];
    let components: Vec<&str> = overhead["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["component"].as_str())
        .collect();
    for c in ["qemu", "proxy", "shim"] {
        assert!(components.contains(&c), "{c} missing from {overhead}");
    }
    assert!(host_rss(&before) > 64.0, "the VM's host RSS: {overhead}");
    assert!(before["pids"]["current"].as_u64().unwrap() >= 1, "{before}");
    assert!(
        before["network_interfaces"].is_array(),
        "network interfaces: {before}"
    );

    let out = env.run(
        &[
            "exec",
            "-d",
            "ops",
            "/kata-spec-checker",
            "--hold-mem",
            "64",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "exec --hold-mem: {}", out.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let s = stats(&env, "ops");
        if memory_usage(&s) - base > 60.0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let rise = memory_usage(&after) - base;
    assert!(
        (60.0..=80.0).contains(&rise),
        "allocating 64 MiB raised the container's memory by {rise:.1} MiB: {after}"
    );
    assert!(host_rss(&after) > 64.0, "{after}");

    // Logs: one time-ordered view with lines of all five sources.
    let out = env.run(&["logs", "ops"], b"", T);
    assert_eq!(out.code(), 0, "logs: {}", out.stderr);
    let text = out.stdout_str();
    for source in ["runtime", "proxy", "shim", "qemu", "agent"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" source={source} "))),
            "no {source} line in the logs:\n{text}"
        );
    }
    let times: Vec<&str> = text
        .lines()
        .map(|l| {
            l.strip_prefix("time=")
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
        })
        .collect();
    assert!(times.iter().all(|t| !t.is_empty()), "{text}");
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "not time-ordered:\n{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains(" source=runtime ") || l.contains(" source=shim "))
            .all(|l| l.contains(" sandbox=ops ") && l.contains(" container=ops ")),
        "runtime and shim lines name the sandbox and container:\n{text}"
    );
    let out = env.run(&["logs", "nosuch"], b"", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    // Health: every link answers; then the proxy dies and the check says so.
    let out = env.run(&["kata-check", "--sandbox", "ops"], b"", T);
    let table = out.stdout_str();
    assert_eq!(
        out.code(),
        0,
        "kata-check --sandbox:\n{table}{}",
        out.stderr
    );
    for row in ["qemu ", "qmp ", "proxy ", "agent ", "shim ops "] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(row) && l.contains(" OK ")),
            "{row}row:\n{table}"
        );
    }
    let out = env.run(&["kata-check", "--sandbox", "ops", "--json"], b"", T);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let agent = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["component"] == "agent")
        .unwrap();
    assert!(agent["rtt_ms"].as_f64().unwrap() > 0.0, "{agent}");

    let proxy_pid = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["component"] == "proxy")
        .and_then(|p| p["detail"].as_str())
        .and_then(|d| d.strip_prefix("pid "))
        .and_then(|d| d.split(' ').next())
        .and_then(|p| p.parse::<i32>().ok())
        .expect("proxy pid");
    // SAFETY: kill has no memory effects.
    assert_eq!(unsafe { libc::kill(proxy_pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    let out = env.run(&["kata-check", "--sandbox", "ops"], b"", T);
    let table = out.stdout_str();
    assert_eq!(
        out.code(),
        1,
        "kata-check after killing the proxy:\n{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("proxy ") && l.contains(" FAIL ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent ") && l.contains(" FAIL ")),
        "{table}"
    );

    let out = env.run(&["delete", "--force", "ops"], b"", T);
    assert_eq!(out.code(), 0, "delete --force: {}", out.stderr);
    env.assert_clean();
}

/// Runs the sizing bundle as `id`: the processors and MemTotal (MiB) the container sees.
fn guest_size(env: &Env, bundle: &std::path::Path, id: &str) -> (u32, f64) {
    let out = env.run(&["run", "--bundle", bundle.to_str().unwrap(), id], b"", T);
    let stdout = out.stdout_str();
    assert_eq!(out.code(), 0, "{stdout} {}", out.stderr);
    let cpus = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cpus="))
        .and_then(|v| v.trim().parse().ok())
        .expect("cpus");
    let mem_kib: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    (cpus, mem_kib / 1024.0)
}

/// `[hypervisor.qemu] default_memory` and `default_vcpus` decide the VM the container sees.
#[test]
fn configuration_file_sizes_the_vm() {
    let env = Env::new();
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text += "\n[hypervisor.qemu]\ndefault_memory = 640\ndefault_vcpus = 2\n";
    std::fs::write(&env.config, text).unwrap();
    let b = env.bundle(
        "sized",
        &[
            "sh",
            "-c",
            "grep MemTotal /proc/meminfo; echo cpus=$(grep -c ^processor /proc/cpuinfo)",
        ],
    );
    let (cpus, mem) = guest_size(&env, &b, "sized");
    assert_eq!(cpus, 2);
    // The guest kernel keeps ~120 MiB for itself (its image, the initramfs being unpacked);
    // the default 256 MiB shows as ~140.
    assert!(
        (440.0..=640.0).contains(&mem),
        "MemTotal {mem:.0} MiB for 640 MiB"
    );

    // A per-pod annotation from the safe list overrides the file.
    edit_spec(&b, |s| {
        s["annotations"] = serde_json::json!({
            "io.katacontainers.config.hypervisor.default_memory": "384",
            "io.katacontainers.config.hypervisor.default_vcpus": "1",
        });
    });
    let (cpus, mem) = guest_size(&env, &b, "sized2");
    assert_eq!(cpus, 1);
    assert!(
        (220.0..=384.0).contains(&mem),
        "MemTotal {mem:.0} MiB for 384 MiB"
    );

    // One that is not on the list is refused before anything starts.
    edit_spec(&b, |s| {
        s["annotations"] = serde_json::json!({
            "io.katacontainers.config.hypervisor.kernel": "/tmp/evil-vmlinux",
        });
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "sized3"], b"", T);
    assert_eq!(out.code(), 1, "{}", out.stdout_str());
    assert!(
        out.stderr
            .contains("io.katacontainers.config.hypervisor.kernel")
            && out.stderr.contains("not allowed"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    env.assert_clean();
}

//! `kata-runtime run` end to end: real binaries, a real QEMU VM per container.

use e2e_tests::{host_kernel_release, Env};
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_run_prints_the_guest_kernel_release() {
    let env = Env::new();
    let b = env.bundle("uname", &["uname", "-r"]);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "uname"], b"", T);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    let guest = out.stdout_str().trim().to_string();
    assert!(!guest.is_empty(), "no output; stderr: {}", out.stderr);
    assert_ne!(
        guest,
        host_kernel_release(),
        "the container saw the host's kernel"
    );
    // The guest image's kernel, as recorded by the image builder.
    let manifest =
        std::fs::read_to_string(e2e_tests::bin_dir().join("../../../build/guest/manifest.json"))
            .expect("guest manifest");
    assert!(
        manifest.contains(&guest),
        "{guest} is not the guest image's kernel: {manifest}"
    );
    env.assert_clean();
}

#[test]
fn vm_pid_1_is_the_containers_own_process() {
    let env = Env::new();
    let b = env.bundle("cmdline", &["cat", "/proc/1/cmdline"]);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "cmdline"], b"", T);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, b"cat\0/proc/1/cmdline\0");
    env.assert_clean();
}

#[test]
fn vm_exit_codes_pass_through() {
    let env = Env::new();
    let b = env.bundle("exit7", &["sh", "-c", "exit 7"]);
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "exit7"], b"", T);
    assert_eq!(out.code(), 7, "stderr: {}", out.stderr);
    // Killed by SIGKILL from outside (the container's PID 1 cannot be SIGKILLed from inside
    // its own pid namespace, in a VM as with runc).
    let b = env.bundle("kill9", &["sleep", "1000"]);
    let mut run = env.cmd(&["run", "--bundle", b.to_str().unwrap(), "kill9"]);
    run.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = run.spawn().unwrap();
    let start = std::time::Instant::now();
    loop {
        let s = env.run(&["state", "kill9"], b"", T);
        if s.stdout_str().contains("\"running\"") {
            break;
        }
        assert!(start.elapsed() < T, "kill9 never ran: {}", s.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["kill", "kill9", "9"], b"", T);
    assert_eq!(out.code(), 0, "kill: {}", out.stderr);
    let status = e2e_tests::wait_timeout(&mut child, T);
    assert_eq!(status.code(), Some(137));
    env.assert_clean();
}

#[test]
fn vm_one_mib_through_cat_is_byte_identical() {
    let env = Env::new();
    let b = env.bundle("cat", &["cat"]);
    // Pseudo-random, so any reordering or loss shows.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let data: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "cat"], &data, T);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "output differs from input");
    env.assert_clean();
}

#[test]
fn vm_process_and_linux_spec_fields_apply_in_the_guest() {
    let env = Env::new();
    let b = env.bundle(
        "caps",
        &[
            "sh",
            "-c",
            "grep -E '^Cap(Eff|Bnd)' /proc/self/status; id; touch /x 2>&1 || echo ro-refused; \
             echo nofile=$(ulimit -Sn)/$(ulimit -Hn)",
        ],
    );
    let path = b.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let caps = serde_json::json!(["CAP_CHOWN", "CAP_KILL"]);
    spec["process"]["capabilities"] = serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps
    });
    spec["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [1002]});
    spec["root"]["readonly"] = serde_json::json!(true);
    spec["process"]["user"]["umask"] = serde_json::json!(0o027);
    spec["process"]["oomScoreAdj"] = serde_json::json!(123);
    spec["domainname"] = serde_json::json!("kata.example");
    spec["linux"]["sysctl"] = serde_json::json!({"kernel.msgmax": "4321"});
    spec["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000}]);
    // Host-only settings: ignored with a warning in a VM, never an error.
    spec["process"]["apparmorProfile"] = serde_json::json!("docker-default");
    spec["process"]["selinuxLabel"] = serde_json::json!("system_u:system_r:container_t:s0");
    spec["linux"]["resources"] = serde_json::json!({"cpu": {"cpus": "5-7", "mems": "3"}});
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "caps"], b"", T);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    let text = out.stdout_str();
    // CAP_CHOWN (0) and CAP_KILL (5): 0x21, kept by a non-root user through the ambient set.
    assert!(text.contains("CapEff:\t0000000000000021"), "{text}");
    assert!(text.contains("CapBnd:\t0000000000000021"), "{text}");
    assert!(
        text.contains("uid=1000") && text.contains("gid=1001") && text.contains("1002"),
        "{text}"
    );
    assert!(
        text.contains("ro-refused") || text.contains("Read-only"),
        "{text}"
    );
    assert!(text.contains("nofile=1000/2000"), "{text}");
    env.assert_clean();
}

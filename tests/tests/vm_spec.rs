//! Spec fields that need more than a plain container: user namespaces with id maps, cgroup
//! namespaces, rootfsPropagation, seccomp profiles (for the init and for execs), startContainer
//! hooks and `exec --cap` — each asserted from inside the container in its VM.

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_user_namespace_maps_ids_and_seccomp_without_no_new_privs() {
    let env = Env::new();
    let b = env.bundle(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; echo uid=$(id -u); \
             echo x > /dev/null && echo devnull-ok; mkdir /tmp/nope 2>&1; \
             grep Seccomp: /proc/self/status",
        ],
    );
    edit_spec(&b, |s| {
        let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "user"}));
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        // Installed while still privileged (no noNewPrivileges): needs CAP_SYS_ADMIN in the
        // user namespace, which the container's root has.
        s["process"]["noNewPrivileges"] = json!(false);
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
    });
    let out = env.run(&["run", "--bundle", b.to_str().unwrap(), "userns"], b"", T);
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "stdout: {text}\nstderr: {}", out.stderr);
    let maps: Vec<Vec<&str>> = text
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(maps[0], ["0", "100000", "65536"], "{text}");
    assert_eq!(maps[1], ["0", "200000", "65536"], "{text}");
    assert!(text.contains("uid=0\n"), "{text}");
    assert!(text.contains("devnull-ok"), "{text}");
    assert!(text.contains("Function not implemented"), "{text}");
    assert!(text.contains("Seccomp:\t2"), "{text}");
    env.assert_clean();
}

#[test]
fn vm_cgroup_namespace_propagation_seccomp_hooks_and_exec_cap() {
    let env = Env::new();
    let b = env.bundle("box", &["sleep", "1000"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
        }));
        s["linux"]["rootfsPropagation"] = json!("shared");
        s["process"]["noNewPrivileges"] = json!(true);
        let caps = json!(["CAP_KILL"]);
        s["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        });
        // Resolved inside the container: the rootfs is the bundle's, so its output lands in
        // the bundle's rootfs on the host.
        s["hooks"] = json!({"startContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", "cat > /hook-state"]
        }]});
    });
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "box"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);

    // startContainer ran in the container with the state on stdin.
    let state = std::fs::read_to_string(b.join("rootfs/hook-state")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["id"], "box", "{state}");
    assert_eq!(state["status"], "created", "{state}");

    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        env.run(&all, b"", T)
    };
    // The container's cgroup is the root of its cgroup namespace.
    let out = exec(&["box", "cat", "/proc/1/cgroup"]);
    assert_eq!(out.stdout_str(), "0::/\n", "stderr: {}", out.stderr);
    let out = exec(&["box", "ls", "/sys/fs/cgroup"]);
    assert!(
        out.stdout_str().contains("cgroup.procs"),
        "{}",
        out.stdout_str()
    );
    // rootfsPropagation: / is a shared mount.
    let out = exec(&["box", "awk", "$5 == \"/\"", "/proc/1/mountinfo"]);
    assert!(out.stdout_str().contains("shared:"), "{}", out.stdout_str());
    // The container's seccomp profile applies to an exec as well.
    let out = exec(&["box", "mkdir", "/tmp/nope"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("Function not implemented")
            || out.stdout_str().contains("Function not implemented"),
        "stdout {} stderr {}",
        out.stdout_str(),
        out.stderr
    );
    // exec --cap adds to the container's own set (CAP_KILL = bit 5, CAP_CHOWN = bit 0).
    let out = exec(&["box", "grep", "CapEff", "/proc/self/status"]);
    assert!(
        out.stdout_str().contains("0000000000000020"),
        "{}",
        out.stdout_str()
    );
    let out = exec(&[
        "--cap",
        "CAP_CHOWN",
        "box",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(
        out.stdout_str().contains("0000000000000021"),
        "{} {}",
        out.stdout_str(),
        out.stderr
    );
    // An unknown capability is refused before anything runs.
    let out = exec(&["--cap", "CAP_NOPE", "box", "true"]);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let out = env.run(&["delete", "--force", "box"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    env.assert_clean();
}

//! Pods: annotations route member containers into their sandbox's VM (containerd CRI, CRI-O
//! and dockershim keys), many members are added concurrently, and stopping the sandbox
//! container stops the pod.

use e2e_tests::{edit_spec, processes_mentioning, Env};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

/// (type key, sandbox value, container value, sandbox-id key) of one engine.
type Keys = (&'static str, &'static str, &'static str, &'static str);
const CRI: Keys = (
    "io.kubernetes.cri.container-type",
    "sandbox",
    "container",
    "io.kubernetes.cri.sandbox-id",
);
const CRIO: Keys = (
    "io.kubernetes.cri-o.ContainerType",
    "sandbox",
    "container",
    "io.kubernetes.cri-o.SandboxID",
);
const DOCKERSHIM: Keys = (
    "io.kubernetes.docker.type",
    "podsandbox",
    "container",
    "io.kubernetes.sandbox.id",
);

/// A `sleep` bundle annotated as the pod's sandbox (a distinct argument, so a member sharing
/// its pid namespace can tell it from its own `sleep 1000`).
fn sandbox_bundle(env: &Env, keys: Keys, id: &str) -> PathBuf {
    let b = env.bundle(id, &["sleep", "999999"]);
    edit_spec(&b, |s| {
        s["annotations"] = json!({keys.0: keys.1, keys.3: id});
        s["hostname"] = json!("pod-host");
    });
    b
}

/// A member bundle running `args`, sharing the sandbox's ipc and uts namespaces the way CRI
/// asks (host paths of the sandbox's namespaces), with `shared` bind-mounted at /shared.
fn member_bundle(env: &Env, keys: Keys, sandbox: &str, id: &str, shared: &Path) -> PathBuf {
    let b = env.bundle(id, &["sleep", "1000"]);
    edit_spec(&b, |s| {
        s["annotations"] = json!({keys.0: keys.2, keys.3: sandbox});
        // Ignored: the member shares the sandbox's uts namespace.
        s["hostname"] = json!("member-host");
        s["linux"]["namespaces"] = json!([
            {"type": "pid"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            {"type": "uts", "path": "/proc/4242/ns/uts"},
            {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/cni-test"}
        ]);
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/shared", "type": "bind", "source": shared,
            "options": ["rbind", "rw"]
        }));
    });
    b
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args, b"", T);
    assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr);
    out.stdout_str()
}

fn status(env: &Env, id: &str) -> String {
    let out = env.run(&["state", id], b"", T);
    assert_eq!(out.code(), 0, "state {id}: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

fn wait_status(env: &Env, id: &str, want: &str) {
    let start = Instant::now();
    while status(env, id) != want {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{id} never became {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn qemus(env: &Env) -> usize {
    let me = env.path().to_string_lossy().into_owned();
    processes_mentioning(&me)
        .iter()
        .filter(|(_, cmd)| cmd.contains("qemu-system"))
        .count()
}

fn pod_of_four(keys: Keys) {
    let env = Env::new();
    let shared = env.path().join("pod-shared");
    std::fs::create_dir_all(&shared).unwrap();
    let sb = sandbox_bundle(&env, keys, "pod");
    ok(&env, &["create", "--bundle", sb.to_str().unwrap(), "pod"]);
    ok(&env, &["start", "pod"]);
    let mem_total = || -> u64 {
        let text = ok(&env, &["exec", "pod", "grep", "MemTotal", "/proc/meminfo"]);
        text.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mem_before = mem_total();
    let members = ["m1", "m2", "m3"];
    for m in members {
        let b = member_bundle(&env, keys, "pod", m, &shared);
        if m == "m2" {
            // Shares the sandbox's pid namespace (CRI's shareProcessNamespace gives a path).
            edit_spec(&b, |s| {
                s["linux"]["namespaces"][0] = json!({"type": "pid", "path": "/proc/4242/ns/pid"});
            });
        }
        if m == "m3" {
            // A member's limits grow the pod's VM (memory hot-plug).
            edit_spec(&b, |s| {
                s["linux"]["resources"] = json!({"memory": {"limit": 128 << 20}});
            });
        }
        ok(&env, &["create", "--bundle", b.to_str().unwrap(), m]);
        ok(&env, &["start", m]);
        assert_eq!(status(&env, m), "running");
    }
    assert_eq!(qemus(&env), 1, "a pod is one VM");
    let mem_after = mem_total();
    assert!(
        mem_after >= mem_before + 100 * 1024,
        "a 128 MiB member grows the VM: {mem_before} -> {mem_after} KiB"
    );

    // One kernel: the same boot id everywhere.
    let boot_id = |id: &str| {
        ok(
            &env,
            &["exec", id, "cat", "/proc/sys/kernel/random/boot_id"],
        )
    };
    let first = boot_id("pod");
    assert_eq!(first.trim().len(), 36, "{first}");
    for m in members {
        assert_eq!(boot_id(m), first, "{m} runs in another kernel");
    }
    // The bind-mounted host folder and the shared ipc namespace (a POSIX message queue) and
    // uts namespace (the sandbox's hostname).
    ok(
        &env,
        &[
            "exec",
            "m1",
            "sh",
            "-c",
            "echo from-m1 > /shared/f && touch /dev/mqueue/q1",
        ],
    );
    assert_eq!(ok(&env, &["exec", "m2", "cat", "/shared/f"]), "from-m1\n");
    assert!(ok(&env, &["exec", "m2", "ls", "/dev/mqueue"]).contains("q1"));
    assert!(ok(&env, &["exec", "pod", "ls", "/dev/mqueue"]).contains("q1"));
    assert_eq!(ok(&env, &["exec", "m3", "hostname"]), "pod-host\n");
    // m2 shares the sandbox's pid namespace: its pid 1 is the sandbox's process.
    assert_eq!(
        ok(&env, &["exec", "m2", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}999999\u{0}"
    );
    // m3 has a pid namespace of its own (the spec asks for a new one).
    assert_eq!(
        ok(&env, &["exec", "m3", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}1000\u{0}"
    );

    // Deleting one member leaves the rest of the pod running.
    ok(&env, &["delete", "--force", "m1"]);
    assert!(env.run(&["state", "m1"], b"", T).code() == 1);
    for id in ["pod", "m2", "m3"] {
        assert_eq!(status(&env, id), "running", "{id}");
    }
    assert_eq!(ok(&env, &["exec", "m2", "echo", "alive"]), "alive\n");

    // Killing the sandbox container stops every member; deleting it removes the pod.
    ok(&env, &["kill", "pod", "KILL"]);
    for id in ["pod", "m2", "m3"] {
        wait_status(&env, id, "stopped");
    }
    ok(&env, &["delete", "pod"]);
    for id in ["pod", "m2", "m3"] {
        assert_eq!(
            env.run(&["state", id], b"", T).code(),
            1,
            "{id} still known"
        );
    }
    env.assert_clean();
}

#[test]
fn vm_pod_with_containerd_cri_keys() {
    pod_of_four(CRI);
}

#[test]
fn vm_pod_with_cri_o_keys() {
    pod_of_four(CRIO);
}

#[test]
fn vm_pod_with_dockershim_keys() {
    pod_of_four(DOCKERSHIM);
}

/// Ten members created by ten parallel `kata-runtime create` into one sandbox, five times.
#[test]
fn vm_pod_parallel_creates() {
    let env = Env::new();
    let shared = env.path().join("pod-shared");
    std::fs::create_dir_all(&shared).unwrap();
    let sb = sandbox_bundle(&env, CRI, "pod");
    ok(&env, &["create", "--bundle", sb.to_str().unwrap(), "pod"]);
    ok(&env, &["start", "pod"]);
    let bundle = member_bundle(&env, CRI, "pod", "member", &shared);
    for round in 0..5 {
        let ids: Vec<String> = (0..10).map(|i| format!("r{round}c{i}")).collect();
        let mut children: Vec<_> = ids
            .iter()
            .map(|id| {
                // A file, not a pipe: the container's shim inherits it and keeps it open.
                let err = std::fs::File::create(env.path().join(format!("{id}.err"))).unwrap();
                let mut c = env.cmd(&["create", "--bundle", bundle.to_str().unwrap(), id]);
                c.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(err);
                c.spawn().unwrap()
            })
            .collect();
        for (id, child) in ids.iter().zip(children.iter_mut()) {
            let status = e2e_tests::wait_timeout(child, T);
            let err = std::fs::read_to_string(env.path().join(format!("{id}.err")));
            assert!(status.success(), "round {round}: create {id}: {err:?}");
        }
        for id in &ids {
            assert_eq!(status(&env, id), "created", "round {round}: {id}");
        }
        let listed = ok(&env, &["list", "-q"]);
        for id in &ids {
            assert!(listed.lines().any(|l| l == id), "{id} not listed");
        }
        assert_eq!(qemus(&env), 1);
        // Start them in parallel too, then remove them all.
        let mut starts: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut c = env.cmd(&["start", id]);
                c.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
                c.spawn().unwrap()
            })
            .collect();
        for s in starts.iter_mut() {
            assert!(e2e_tests::wait_timeout(s, T).success());
        }
        for id in &ids {
            assert_eq!(status(&env, id), "running", "round {round}: {id}");
        }
        let mut deletes: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut c = env.cmd(&["delete", "--force", id]);
                c.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
                c.spawn().unwrap()
            })
            .collect();
        for d in deletes.iter_mut() {
            assert!(e2e_tests::wait_timeout(d, T).success());
        }
        assert_eq!(ok(&env, &["list", "-q"]), "pod\n");
    }
    ok(&env, &["delete", "--force", "pod"]);
    env.assert_clean();
}

/// Members that cannot join: a clear error, exit 1, and the sandbox untouched.
#[test]
fn vm_pod_bad_members() {
    let env = Env::new();
    let shared = env.path().join("pod-shared");
    std::fs::create_dir_all(&shared).unwrap();
    let sb = sandbox_bundle(&env, CRI, "pod");
    ok(&env, &["create", "--bundle", sb.to_str().unwrap(), "pod"]);
    ok(&env, &["start", "pod"]);
    let good = member_bundle(&env, CRI, "pod", "good", &shared);
    ok(
        &env,
        &["create", "--bundle", good.to_str().unwrap(), "good"],
    );

    let cases: [(&str, serde_json::Value); 5] = [
        ("no-id", json!({CRI.0: "container"})),
        ("unknown", json!({CRI.0: "container", CRI.3: "nosuch"})),
        (
            "member-as-sandbox",
            json!({CRI.0: "container", CRI.3: "good"}),
        ),
        ("bad-type", json!({CRI.0: "sidecar", CRI.3: "pod"})),
        ("unsafe-id", json!({CRI.0: "container", CRI.3: "../pod"})),
    ];
    for (name, annotations) in cases {
        let b = env.bundle(name, &["true"]);
        edit_spec(&b, |s| s["annotations"] = annotations.clone());
        let out = env.run(&["create", "--bundle", b.to_str().unwrap(), name], b"", T);
        assert_eq!(out.code(), 1, "{name}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{name}: {}",
            out.stderr
        );
        assert_eq!(
            env.run(&["state", name], b"", T).code(),
            1,
            "{name} left state"
        );
    }
    assert_eq!(ok(&env, &["list", "-q"]), "good\npod\n");
    assert_eq!(status(&env, "pod"), "running");
    assert_eq!(qemus(&env), 1);
    ok(&env, &["delete", "--force", "pod"]);
    env.assert_clean();
}

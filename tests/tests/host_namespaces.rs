//! The host is not the pod's: a spec naming the host's own network or IPC namespace, by any
//! path (`/proc/self/ns/net`, `/proc/1/ns/net`, a bind-mounted pin of it as CRI-O's pinns
//! makes), or carrying CRI-O's HostNetwork annotation, is refused with one line before anything
//! is made, and the host's links, drivers, qdiscs and routes stay byte-for-byte the same.
//! Namespace paths of the wrong type are refused too. No VM is booted by these tests.

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// What a host-network pod must never change: links with details, addresses, every routing
/// table, qdiscs and ingress filters, the driver each NIC is bound to.
fn host_network_snapshot() -> String {
    sh(
        "ip -d link show; ip addr show; ip route show table all; ip -6 route show table all; \
        tc qdisc show; for l in /sys/class/net/*; do echo $l $(readlink $l/device/driver); done; \
        ls -l /sys/bus/pci/drivers/vfio-pci 2>&1",
    )
}

fn refused(env: &Env, bundle: &Path, id: &str, want: &str) {
    let out = env.run(
        &["create", "--bundle", bundle.to_str().unwrap(), id],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{id}: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.trim().lines().collect();
    assert_eq!(lines.len(), 1, "{id}: one line wanted: {lines:?}");
    assert!(
        out.stderr.contains(want),
        "{id}: want {want:?} in {}",
        out.stderr
    );
    env.assert_clean();
}

fn with_namespace(env: &Env, name: &str, typ: &str, path: Option<&str>) -> std::path::PathBuf {
    let b = env.bundle(name, &["true"]);
    edit_spec(&b, |s| {
        let list = s["linux"]["namespaces"].as_array_mut().unwrap();
        list.retain(|ns| ns["type"] != typ);
        match path {
            Some(p) => list.push(json!({"type": typ, "path": p})),
            None => list.push(json!({"type": typ})),
        }
    });
    b
}

/// Issue 17, items 0 and 9: every way of naming the host's network or IPC namespace.
#[test]
fn host_network_and_ipc_are_refused_whatever_names_them() {
    let env = Env::new();
    let before = host_network_snapshot();

    let b = with_namespace(&env, "self", "network", Some("/proc/self/ns/net"));
    refused(&env, &b, "self", "host's own namespace");
    let b = with_namespace(&env, "thread", "network", Some("/proc/thread-self/ns/net"));
    refused(&env, &b, "thread", "host's own namespace");
    // PID 1's links cannot be read on every host (not on this one): refused either way.
    let b = with_namespace(&env, "pid1", "network", Some("/proc/1/ns/net"));
    refused(&env, &b, "pid1", "/proc/1/ns/net");

    // A pin of the host's namespace, bind-mounted as CRI-O's pinns does.
    let pin = env.path().join("netns-pin");
    std::fs::write(&pin, b"").unwrap();
    let out = Command::new("mount")
        .args(["--bind", "/proc/self/ns/net"])
        .arg(&pin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = with_namespace(&env, "pinned", "network", pin.to_str());
    edit_spec(&b, |s| {
        s["annotations"] = json!({
            "io.kubernetes.cri-o.ContainerType": "sandbox",
            "io.kubernetes.cri-o.SandboxID": "pinned",
        });
    });
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "pinned"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("host's own namespace"),
        "{}",
        out.stderr
    );
    // The same pin with CRI-O's annotation, as CRI-O hands a host-network pod.
    edit_spec(&b, |s| {
        s["annotations"]["io.kubernetes.cri-o.HostNetwork"] = json!("true");
    });
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "pinned"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("HostNetwork"), "{}", out.stderr);
    let umount = Command::new("umount").arg(&pin).output().unwrap();
    assert!(umount.status.success());

    // The annotation alone is enough, whatever namespace the spec gives.
    let b = with_namespace(&env, "annotated", "network", None);
    edit_spec(&b, |s| {
        s["annotations"] = json!({"io.kubernetes.cri-o.HostNetwork": "true"});
    });
    refused(&env, &b, "annotated", "HostNetwork");

    // No network entry, no IPC entry: the host's (runc's meaning), refused.
    let b = env.bundle("nonet", &["true"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "network");
    });
    refused(&env, &b, "nonet", "host networking");
    let b = env.bundle("noipc", &["true"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["type"] != "ipc");
    });
    refused(&env, &b, "noipc", "host IPC");
    let b = with_namespace(&env, "hostipc", "ipc", Some("/proc/self/ns/ipc"));
    refused(&env, &b, "hostipc", "host's own namespace");

    assert_eq!(
        host_network_snapshot(),
        before,
        "the host's network changed"
    );
    env.assert_clean();
}

/// Issue 17, item 12: a namespace path that is not a namespace of its entry's type.
#[test]
fn namespace_paths_must_match_their_type() {
    let env = Env::new();
    let b = with_namespace(&env, "cg", "cgroup", Some("/proc/self/ns/ipc"));
    refused(&env, &b, "cg", "is a ipc namespace, not a cgroup namespace");
    let b = with_namespace(&env, "uts", "uts", Some("/etc/hostname"));
    refused(&env, &b, "uts", "is not a namespace");
    let b = with_namespace(&env, "gone", "pid", Some("/proc/999999999/ns/pid"));
    refused(&env, &b, "gone", "does not exist");
    let b = with_namespace(&env, "netipc", "network", Some("/proc/self/ns/uts"));
    refused(
        &env,
        &b,
        "netipc",
        "is a uts namespace, not a network namespace",
    );
}

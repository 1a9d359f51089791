//! Verbs that need no VM: spec, list on an empty root, version.

use e2e_tests::Env;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn spec_writes_a_loadable_default_and_refuses_to_overwrite() {
    let env = Env::new();
    let dir = env.path().join("specbundle");
    std::fs::create_dir_all(&dir).unwrap();
    let out = env.run(&["spec", "--bundle", dir.to_str().unwrap()], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    let out = env.run(&["spec", "--bundle", dir.to_str().unwrap()], b"", T);
    assert_eq!(out.code(), 1);
    assert!(out.stderr.contains("exists"), "{}", out.stderr);
}

#[test]
fn list_of_an_empty_root() {
    let env = Env::new();
    let out = env.run(&["list", "--format", "json"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout_str().trim(), "[]");
    let out = env.run(&["list"], b"", T);
    assert!(out.stdout_str().starts_with("ID"), "{}", out.stdout_str());
    env.assert_clean();
}

#[test]
fn features_is_runc_shaped_json() {
    let env = Env::new();
    let out = env.run(&["features"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "pid"));
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
}

#[test]
fn version_names_the_runtime_and_the_spec() {
    let env = Env::new();
    let out = env.run(&["version"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = out.stdout_str();
    assert!(text.contains("kata-runtime"), "{text}");
    assert!(text.to_lowercase().contains("spec"), "{text}");
    let out = env.run(&["--version"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout_str().contains("kata-runtime"));
}

#[test]
fn spec_rootless_maps_the_caller() {
    let env = Env::new();
    let dir = env.path().join("rootless");
    std::fs::create_dir_all(&dir).unwrap();
    let out = env.run(
        &["spec", "--rootless", "--bundle", dir.to_str().unwrap()],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(namespaces.iter().any(|n| n["type"] == "user"), "{spec}");
    assert_eq!(spec["linux"]["uidMappings"][0]["containerID"], 0, "{spec}");
}

/// runc's global flags are accepted; `--log-format json` writes one JSON object per line with
/// level, msg and time.
#[test]
fn global_flags_and_json_log() {
    let env = Env::new();
    let log = env.path().join("runtime.log");
    let out = env.run(
        &[
            "--debug",
            "--systemd-cgroup",
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nosuch",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        for key in ["level", "msg", "time"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(text.contains("nosuch"), "{text}");
    let out = env.run(&["--log-format", "xml", "list"], b"", T);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    env.assert_clean();
}

/// kata-check passes on this machine (TCG, with the reason) and fails clearly when the guest
/// kernel is missing; kata-env names every component.
#[test]
fn kata_check_and_kata_env() {
    let env = Env::new();
    let out = env.run(&["kata-check"], b"", Duration::from_secs(60));
    let text = out.stdout_str();
    assert_eq!(out.code(), 0, "{text} {}", out.stderr);
    assert!(text.contains("PASS qemu:"), "{text}");
    assert!(text.contains("PASS guest kernel:"), "{text}");
    assert!(text.contains(" accelerator: "), "{text}");
    let out = env.run(&["kata-check", "--json"], b"", Duration::from_secs(60));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    // The accelerator line says which one and why (here: TCG, KVM guests hang on this host).
    let accel = text
        .lines()
        .find(|l| l.contains(" accelerator: "))
        .unwrap_or_default();
    assert!(
        (accel.contains(": tcg") || accel.contains(": kvm")) && accel.matches(": ").count() >= 2,
        "{accel}"
    );

    // The kernel the configuration names is removed: FAIL naming it, and exit 1.
    let kernel = env.path().join("vmlinux-copy");
    let built = std::path::Path::new(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "guest kernel")
            .and_then(|c| c["detail"].as_str())
            .and_then(|d| d.split(' ').next())
            .expect("guest kernel path"),
    )
    .to_path_buf();
    std::fs::copy(&built, &kernel).unwrap();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config += &format!("\n[hypervisor.qemu]\nkernel = \"{}\"\n", kernel.display());
    std::fs::write(&env.config, config).unwrap();
    let out = env.run(&["kata-check"], b"", Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stdout_str());
    std::fs::remove_file(&kernel).unwrap();
    let out = env.run(&["kata-check"], b"", Duration::from_secs(60));
    let text = out.stdout_str();
    assert_eq!(out.code(), 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL guest kernel:") && l.contains("vmlinux-copy")),
        "{text}"
    );

    let out = env.run(&["kata-env", "--json"], b"", Duration::from_secs(60));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["runtime"]["config"].as_str(),
        env.config.to_str(),
        "the configuration file used: {v}"
    );
    for section in [
        "runtime",
        "hypervisor",
        "guest",
        "proxy",
        "shim",
        "agent",
        "host",
    ] {
        assert!(v[section].is_object(), "{section} missing: {v}");
    }
    assert!(
        v["proxy"]["version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kata-proxy "),
        "{v}"
    );
    assert!(
        v["shim"]["version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kata-shim "),
        "{v}"
    );
    // kata-env reports the accelerator VMs will use, the same as kata-check's, with the
    // reason; `host.kvm` is whether that is KVM, not whether /dev/kvm exists (issue 17, 14).
    let used = v["hypervisor"]["accelerator_used"]
        .as_str()
        .unwrap_or_default();
    assert!(
        accel.contains(&format!(": {used}")) && !used.is_empty(),
        "kata-env {used:?} vs kata-check {accel:?}"
    );
    assert!(
        !v["hypervisor"]["accelerator_reason"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );
    assert_eq!(v["host"]["kvm"], used == "kvm", "{v}");
    let out = env.run(&["kata-env"], b"", Duration::from_secs(60));
    let text = out.stdout_str();
    assert!(
        text.contains(&format!("accelerator_used = \"{used}\"")),
        "{text}"
    );
}

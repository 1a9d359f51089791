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

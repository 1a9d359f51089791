//! Callers match on runc's error words (issue 17, item 3): containerd ignores a kill error only
//! when it says "container not running" (or "process already finished", "no such process"), and
//! a delete error only when it says "does not exist"; podman and CRI-O look for "does not exist"
//! and "not running" as well. kata-runtime's messages contain runc's words in exactly those
//! cases, on stderr and in the `--log` JSON that containerd reads.

use e2e_tests::Env;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

/// Runs `args`, expects exit 1 with one stderr line containing `words`, and the same words in
/// the last line of the JSON log.
fn refused_with(env: &Env, args: &[&str], words: &str) {
    let log = env.path().join("log.json");
    let _ = std::fs::remove_file(&log);
    let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
    all.extend_from_slice(args);
    let out = env.run(&all, b"", T);
    assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.contains(words),
        "{args:?}: want {words:?} in {}",
        out.stderr
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "{args:?}: {}",
        out.stderr
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last_error = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["level"] == "error")
        .unwrap_or_default();
    assert!(
        last_error["msg"]
            .as_str()
            .unwrap_or_default()
            .contains(words),
        "{args:?}: log.json: {text}"
    );
}

#[test]
fn vm_errors_carry_runcs_words() {
    let env = Env::new();
    // A running container.
    let b = env.bundle("box", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "box"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    refused_with(
        &env,
        &["start", "box"],
        "cannot start an already running container",
    );
    refused_with(&env, &["delete", "box"], "cannot delete");
    refused_with(&env, &["resume", "box"], "container not paused");
    let out = env.run(&["pause", "box"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    refused_with(
        &env,
        &["exec", "box", "true"],
        "cannot exec in a paused container",
    );
    refused_with(
        &env,
        &["start", "box"],
        "cannot start a container in the paused state",
    );
    refused_with(&env, &["pause", "box"], "container not running");
    let out = env.run(&["resume", "box"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);

    // It exits on its own: what StopPodSandbox and `podman stop` meet.
    let out = env.run(&["kill", "box", "KILL"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let start = Instant::now();
    while env.status("box") != "stopped" {
        assert!(start.elapsed() < Duration::from_secs(30), "never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    refused_with(&env, &["kill", "box", "9"], "container not running");
    refused_with(&env, &["kill", "box", "15"], "container not running");
    // containerd's kill --all of a stopped container is fine, as with runc.
    let out = env.run(&["kill", "--all", "box", "9"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    refused_with(
        &env,
        &["start", "box"],
        "cannot start a container that has stopped",
    );
    refused_with(
        &env,
        &["exec", "box", "true"],
        "cannot exec in a stopped container",
    );
    refused_with(&env, &["pause", "box"], "container not running");
    refused_with(&env, &["resume", "box"], "container not paused");
    let out = env.run(&["delete", "box"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);

    // Gone: every verb says "does not exist" (containerd's delete, podman's and CRI-O's
    // state and kill treat that as already removed).
    for verb in [
        &["state", "box"][..],
        &["kill", "box", "9"],
        &["delete", "box"],
        &["start", "box"],
        &["exec", "box", "true"],
        &["pause", "box"],
        &["ps", "box"],
    ] {
        refused_with(&env, verb, "does not exist");
    }
    env.assert_clean();
}

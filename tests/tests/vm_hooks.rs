//! OCI hooks as the runtime spec says (issue 17, item 13): a failing poststart hook is a
//! warning and `start` succeeds; a failing poststop hook is a warning and `delete` succeeds; a
//! hook that never reads the state on its stdin does not kill kata-runtime (the default
//! SIGPIPE action) nor leave QEMU, proxy or shim running without a record.

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_hooks_that_fail_or_do_not_read_their_stdin() {
    let env = Env::new();
    let b = env.bundle("hooked", &["sleep", "1000"]);
    let marker = env.path().join("after-failures");
    edit_spec(&b, |s| {
        // A state document far larger than a pipe's buffer, so writing it to a hook that
        // exits without reading must meet a closed pipe.
        s["annotations"] = json!({"padding": "x".repeat(256 * 1024)});
        let deaf = json!({"path": "/bin/true"});
        let failing = json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]});
        let touch = json!({"path": "/bin/sh",
            "args": ["sh", "-c", format!("cat >/dev/null; echo ran >> {}", marker.display())]});
        s["hooks"] = json!({
            "prestart": [deaf.clone()],
            "createRuntime": [deaf.clone()],
            "poststart": [failing.clone(), deaf.clone(), touch.clone()],
            "poststop": [failing, deaf, touch],
        });
    });
    let log = env.path().join("runtime.log");
    let with_log = |args: &[&str]| {
        let mut all = vec!["--log", log.to_str().unwrap()];
        all.extend_from_slice(args);
        env.run(&all, b"", T)
    };
    let out = with_log(&["create", "--bundle", b.to_str().unwrap(), "hooked"]);
    assert_eq!(
        out.code(),
        0,
        "create with a hook that never reads: {}",
        out.stderr
    );
    assert_eq!(env.status("hooked"), "created");
    let out = with_log(&["start", "hooked"]);
    assert_eq!(
        out.code(),
        0,
        "start with a failing poststart hook: {}",
        out.stderr
    );
    assert_eq!(env.status("hooked"), "running");
    // The hooks after the failing one still ran.
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "ran\n"
    );
    let out = with_log(&["kill", "hooked", "KILL"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let out = with_log(&["delete", "--force", "hooked"]);
    assert_eq!(
        out.code(),
        0,
        "delete with a failing poststop hook: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "ran\nran\n"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings = text
        .lines()
        .filter(|l| l.contains("warn") && l.contains("exited with"))
        .count();
    assert!(warnings >= 2, "a warning per failing hook: {text}");
    env.assert_clean();

    // A failing createRuntime hook fails create, with one line and nothing left.
    let b = env.bundle("badhook", &["true"]);
    edit_spec(&b, |s| {
        s["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    });
    let out = env.run(
        &["create", "--bundle", b.to_str().unwrap(), "badhook"],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    env.assert_clean();
}

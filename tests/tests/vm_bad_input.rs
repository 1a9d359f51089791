//! Bad input that needs a live container: a second create of the same id, an unknown signal to
//! a running container.

use e2e_tests::Env;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_second_create_and_bad_signal_leave_the_first_untouched() {
    let env = Env::new();
    let b = env.bundle("dup", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "dup"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);

    let out = env.run(&["create", "--bundle", b.to_str().unwrap(), "dup"], b"", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);

    let out = env.run(&["kill", "dup", "SIGNOPE"], b"", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let out = env.run(&["state", "dup"], b"", T);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["status"], "running", "the first container must survive");

    let out = env.run(&["delete", "--force", "dup"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    env.assert_clean();
}

//! Bad input: one clear line on stderr, exit status 1, nothing left behind. These need no VM:
//! every check happens before one would be started.

use e2e_tests::Env;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn assert_refused(env: &Env, args: &[&str], what: &str) {
    let out = env.run(args, b"", T);
    assert_eq!(
        out.code(),
        1,
        "{what}: expected exit 1; stderr: {}",
        out.stderr
    );
    let lines: Vec<_> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one stderr line, got {lines:?}"
    );
    assert!(
        lines[0].len() > 20,
        "{what}: unhelpful message {:?}",
        lines[0]
    );
    env.assert_clean();
}

#[test]
fn missing_bundle() {
    let env = Env::new();
    assert_refused(
        &env,
        &["create", "--bundle", "/nonexistent/bundle", "c1"],
        "missing bundle",
    );
}

#[test]
fn malformed_config_json() {
    let env = Env::new();
    let b = env.bundle("bad", &["true"]);
    std::fs::write(b.join("config.json"), "{\"ociVersion\": ").unwrap();
    let out = env.run(&["create", "--bundle", b.to_str().unwrap(), "c1"], b"", T);
    assert_eq!(out.code(), 1);
    assert!(out.stderr.contains("config.json"), "{}", out.stderr);
    assert_refused(
        &env,
        &["create", "--bundle", b.to_str().unwrap(), "c1"],
        "malformed config",
    );
}

#[test]
fn unknown_ids() {
    let env = Env::new();
    for verb in [&["state"][..], &["start"], &["kill"], &["delete"]] {
        let mut args = verb.to_vec();
        args.push("nosuch");
        assert_refused(&env, &args, &format!("{verb:?} of an unknown id"));
    }
    // As runc: `delete --force` of an unknown id is quietly done (CRI-O and podman rely on it).
    let out = env.run(&["delete", "--force", "nosuch"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    env.assert_clean();
}

#[test]
fn unsafe_ids() {
    let env = Env::new();
    let b = env.bundle("ok", &["true"]);
    let long = "a".repeat(1025);
    for id in ["../x", "a/b", "", "..", long.as_str()] {
        assert_refused(
            &env,
            &["create", "--bundle", b.to_str().unwrap(), id],
            &format!("create {id:?}"),
        );
        assert_refused(&env, &["state", id], &format!("state {id:?}"));
    }
}

#[test]
fn unknown_signal() {
    let env = Env::new();
    assert_refused(&env, &["kill", "nosuch", "SIGFOO"], "unknown signal");
    assert_refused(&env, &["kill", "nosuch", "99"], "signal out of range");
}

/// A malformed configuration file: one line naming the file, the line and the key; nothing
/// is created.
#[test]
fn malformed_configuration_file() {
    let env = Env::new();
    let b = env.bundle("cfg", &["true"]);
    let base = std::fs::read_to_string(&env.config).unwrap();
    let base_lines = base.lines().count();
    let cases = [
        (
            "[hypervisor.qemu]\nbogus_key = 1\n",
            "bogus_key",
            2,
            "unknown key",
        ),
        (
            "[hypervisor.qemu]\ndefault_memory = \"lots\"\n",
            "default_memory",
            2,
            "invalid type",
        ),
        (
            "[hypervisor.qemu]\nshared_fs = \"nfs\"\n",
            "shared_fs",
            2,
            "bad value",
        ),
        // The base file ends in its [runtime] section.
        (
            "internetworking_model = \"warp\"\n",
            "internetworking_model",
            1,
            "bad value",
        ),
        (
            "[agent.kata]\ndial_timeout = 0\n",
            "dial_timeout",
            2,
            "bad value",
        ),
        ("[hypervisor.qemu\n", "", 1, "line"),
        ("[nosuch]\nx = 1\n", "nosuch", 1, "unknown key"),
    ];
    for (extra, key, line, what) in cases {
        let text = format!("{base}{extra}");
        std::fs::write(&env.config, &text).unwrap();
        let out = env.run(&["create", "--bundle", b.to_str().unwrap(), "c1"], b"", T);
        assert_eq!(out.code(), 1, "{extra:?}: {}", out.stderr);
        let stderr = out.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        let want_line = format!("line {}", base_lines + line);
        for needle in [env.config.to_str().unwrap(), &want_line, key, what] {
            assert!(
                stderr.contains(needle),
                "{extra:?}: {needle:?} missing in {stderr}"
            );
        }
        env.assert_clean();
        assert!(
            !env.root.join("c1").exists(),
            "{extra:?}: state left behind"
        );
    }
    // `kata-check` and `kata-env` report the same error.
    let out = env.run(&["kata-env"], b"", T);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
}

//! The guest kernel's configuration fragments (kernel/fragments/) and the build script's check
//! of a configuration against them: every option is asked once (no fragment silently undoes
//! another), and `scripts/build-guest-kernel.sh --check` refuses a .config that lost one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (option, value, fragment file) for every option line; `# CONFIG_X is not set` is "n".
fn requested() -> Vec<(String, String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(top().join("kernel/fragments"))
        .expect("kernel/fragments")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for line in std::fs::read_to_string(&f).expect("fragment").lines() {
            if let Some(opt) = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
                .filter(|o| o.starts_with("CONFIG_"))
            {
                out.push((opt.to_owned(), "n".to_owned(), name.clone()));
            } else if let Some((opt, value)) = line
                .split_once('=')
                .filter(|(o, _)| o.starts_with("CONFIG_"))
            {
                out.push((opt.to_owned(), value.to_owned(), name.clone()));
            } else {
                assert!(
                    line.is_empty() || line.starts_with('#'),
                    "{name}: not an option, a comment or empty: {line:?}"
                );
            }
        }
    }
    out
}

#[test]
fn every_option_is_asked_once() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let all = requested();
    assert!(all.len() > 100, "{} options", all.len());
    for (opt, _, file) in &all {
        if let Some(first) = seen.insert(opt.clone(), file.clone()) {
            panic!("{opt} is asked in {first} and again in {file}");
        }
    }
}

fn check(config: &str) -> (bool, String) {
    let path = std::env::temp_dir().join(format!("kata-kconfig-{}", std::process::id()));
    std::fs::write(&path, config).expect("writing the test config");
    let out = Command::new(top().join("scripts/build-guest-kernel.sh"))
        .arg("--check")
        .arg(&path)
        .output()
        .expect("running build-guest-kernel.sh");
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_build_refuses_a_config_that_lost_an_option() {
    if !Path::new("/usr/src/linux-source-6.1.tar.xz").exists() {
        panic!("linux-source-6.1 is not installed (make deps installs it)");
    }
    let line = |(opt, value, _): &(String, String, String)| {
        if value == "n" {
            format!("# {opt} is not set\n")
        } else {
            format!("{opt}={value}\n")
        }
    };
    let all = requested();
    let complete: String = all.iter().map(line).collect();
    let (ok, out) = check(&complete);
    assert!(ok, "a config with every asked option was refused: {out}");

    let lost = complete.replace("CONFIG_VIRTIO_FS=y\n", "# CONFIG_VIRTIO_FS is not set\n");
    let (ok, out) = check(&lost);
    assert!(
        !ok && out.contains("CONFIG_VIRTIO_FS: asked y, got n"),
        "{out}"
    );

    let module = complete.replace("CONFIG_TUN=y\n", "CONFIG_TUN=m\n");
    let (ok, out) = check(&module);
    assert!(!ok && out.contains("CONFIG_TUN: asked y, got m"), "{out}");

    let turned_on = complete.replace("# CONFIG_XFS_FS is not set\n", "CONFIG_XFS_FS=y\n");
    let (ok, out) = check(&turned_on);
    assert!(
        !ok && out.contains("CONFIG_XFS_FS: asked n, got y"),
        "{out}"
    );
}

//! Conformance: `kata-spec-checker` (tests/checker) runs as the container's process, reads the
//! bundle's spec (copied into the rootfs as /spec.json) and checks from inside that every field
//! was applied. The same bundles run under kata-runtime (one VM each) and, when it is on PATH,
//! runc; a table compares the two. kata-runtime must fail no check, and must pass every check
//! runc passes.
//!
//! `make conformance` runs this alone with --nocapture, so the table shows.

use e2e_tests::{bin_dir, make_busybox_bundle, run_cmd, Env, Output};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(180);
const CHECKER: &str = "kata-spec-checker";

/// One bundle: the base spec exercises every field group the agent implements; the others
/// add one feature each to the plain busybox spec, so the table shows them on their own.
struct Variant {
    name: &'static str,
    /// Checks this variant is about: shown in the table even when they match the base run.
    focus: &'static [&'static str],
    edit: fn(&mut Value),
}

const VARIANTS: [Variant; 4] = [
    Variant {
        name: "base",
        focus: &[],
        edit: base_spec,
    },
    Variant {
        name: "cgroupns",
        focus: &[
            "linux.namespaces cgroup",
            "linux.resources",
            "mounts /sys/fs/cgroup",
        ],
        edit: cgroupns_spec,
    },
    Variant {
        name: "seccomp",
        focus: &["linux.seccomp"],
        edit: seccomp_spec,
    },
    Variant {
        name: "userns",
        focus: &[
            "linux.namespaces user",
            "linux.uidMappings",
            "linux.gidMappings",
        ],
        edit: userns_spec,
    },
];

fn cgroup_mount() -> Value {
    json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
           "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
}

fn base_spec(s: &mut Value) {
    let p = &mut s["process"];
    p["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("CONFORMANCE=two words"));
    p["cwd"] = json!("/tmp");
    p["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [1001, 1002], "umask": 0o027});
    // Distinct sets: a non-root process keeps its permitted/effective caps through ambient.
    let kept = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE"
    ]);
    p["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL",
                     "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE", "CAP_SETUID", "CAP_SETGID"],
        "effective": kept, "permitted": kept, "ambient": kept,
        "inheritable": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                        "CAP_SETUID"],
    });
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]);
    p["noNewPrivileges"] = json!(true);
    p["oomScoreAdj"] = json!(100);
    s["hostname"] = json!("conformance");
    s["domainname"] = json!("kata.test");
    s["root"]["readonly"] = json!(true);
    let mounts = s["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=1777"]}),
    );
    mounts.push(cgroup_mount());
    // Bind mounts of host folders and files (`@bundle/` is replaced by the bundle's path).
    mounts.push(
        json!({"destination": "/hostro", "type": "bind", "source": "@bundle/hostdir",
                       "options": ["rbind", "ro", "nosuid", "nodev"]}),
    );
    mounts.push(
        json!({"destination": "/hostfile", "type": "none", "source": "@bundle/hostfile",
                       "options": ["bind", "rw", "noexec"]}),
    );
    let l = &mut s["linux"];
    l["sysctl"] = json!({"kernel.msgmax": "4321"});
    l["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                           "fileMode": 0o666, "uid": 0, "gid": 0}]);
    l["resources"] = json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 100},
        "cpu": {"quota": 50000, "period": 100000},
    });
}

fn cgroupns_spec(s: &mut Value) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    s["mounts"].as_array_mut().unwrap().push(cgroup_mount());
    s["linux"]["resources"] = json!({"pids": {"limit": 100}});
}

fn seccomp_spec(s: &mut Value) {
    s["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    });
}

fn userns_spec(s: &mut Value) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    s["linux"]["uidMappings"] = map.clone();
    s["linux"]["gidMappings"] = map;
}

/// A busybox bundle running the checker on its own spec.
fn checker_bundle(dir: &Path, v: &Variant) -> PathBuf {
    let args = ["/kata-spec-checker", "/spec.json"];
    make_busybox_bundle(dir, &args);
    let config = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    (v.edit)(&mut spec);
    spec["process"]["args"] = json!(args);
    for m in spec["mounts"].as_array_mut().unwrap() {
        let Some(rest) = m["source"]
            .as_str()
            .and_then(|s| s.strip_prefix("@bundle/"))
        else {
            continue;
        };
        let host = dir.join(rest);
        if rest.ends_with("dir") {
            std::fs::create_dir_all(&host).unwrap();
            std::fs::write(host.join("file"), "from the host\n").unwrap();
        } else {
            std::fs::write(&host, "a host file\n").unwrap();
        }
        m["source"] = json!(host);
    }
    let text = serde_json::to_vec_pretty(&spec).unwrap();
    std::fs::write(&config, &text).unwrap();
    let rootfs = dir.join("rootfs");
    let checker = bin_dir().join(CHECKER);
    assert!(
        checker.exists(),
        "{} missing: run `make build` first",
        checker.display()
    );
    std::fs::copy(&checker, rootfs.join(CHECKER)).unwrap();
    std::fs::write(rootfs.join("spec.json"), &text).unwrap();
    // Mount points of a read-only root exist beforehand, the same for both runtimes, with the
    // tmpfs's mode: runc gives a tmpfs the mode of the folder it covers.
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::create_dir_all(rootfs.join("hostro")).unwrap();
    std::fs::write(rootfs.join("hostfile"), "").unwrap();
    std::fs::set_permissions(rootfs.join("data"), mode(0o1777)).unwrap();
    std::fs::set_permissions(rootfs.join(CHECKER), mode(0o755)).unwrap();
    std::fs::set_permissions(rootfs.join("spec.json"), mode(0o644)).unwrap();
    dir.to_path_buf()
}

#[derive(Clone, Debug, PartialEq)]
enum Res {
    Pass,
    Fail(String),
    Skip(String),
}

impl Res {
    fn word(&self) -> &'static str {
        match self {
            Res::Pass => "PASS",
            Res::Fail(_) => "FAIL",
            Res::Skip(_) => "SKIP",
        }
    }
}

/// The checker's lines, after a `run` row that says whether the checker ran at all.
fn parse(out: &Output) -> Vec<(String, Res)> {
    let text = out.stdout_str();
    let mut rows: Vec<(String, Res)> = text
        .lines()
        .filter_map(|l| {
            let (word, rest) = l.split_once(' ')?;
            let (check, why) = match rest.split_once(": ") {
                Some((c, w)) => (c, w.to_string()),
                None => (rest, String::new()),
            };
            let res = match word {
                "PASS" => Res::Pass,
                "FAIL" => Res::Fail(why),
                "SKIP" => Res::Skip(why),
                _ => return None,
            };
            Some((check.to_string(), res))
        })
        .collect();
    let ran = matches!(out.code(), 0 | 1) && !rows.is_empty();
    let run = if ran {
        Res::Pass
    } else {
        let err: Vec<&str> = out.stderr.lines().rev().take(3).collect();
        Res::Fail(format!(
            "exit {}: {}",
            out.code(),
            err.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    };
    rows.insert(0, ("run".to_string(), run));
    rows
}

fn runc_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

fn run_runc(runc: &Path, root: &Path, bundle: &Path, id: &str) -> Output {
    let mut cmd = Command::new(runc);
    cmd.arg("--root")
        .arg(root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id);
    let out = run_cmd(cmd, b"", T);
    // `run` deletes the container when it ends; make sure of it, then drop the state root.
    let mut del = Command::new(runc);
    del.arg("--root").arg(root).args(["delete", "--force", id]);
    let _ = run_cmd(del, b"", T);
    let _ = std::fs::remove_dir_all(root);
    out
}

/// One table row: a check of one variant, with each runtime's result.
struct Row {
    variant: &'static str,
    check: String,
    kata: Option<Res>,
    runc: Option<Res>,
}

#[test]
fn conformance_kata_runtime_against_runc() {
    let env = Env::new();
    // runc's user-namespace variant walks to the rootfs as the mapped root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let runc = runc_path();
    let mut rows: Vec<Row> = Vec::new();
    for v in &VARIANTS {
        let bundle = checker_bundle(&env.path().join("bundles").join(v.name), v);
        let b = bundle.to_str().unwrap();
        let kata_id = format!("conf-{}", v.name);
        let kata = parse(&env.run(&["run", "--bundle", b, &kata_id], b"", T));
        let runc_rows = runc.as_ref().map(|r| {
            let id = format!("conf-{}-runc-{}", v.name, std::process::id());
            parse(&run_runc(r, &env.path().join("runc"), &bundle, &id))
        });
        let mut merged: BTreeMap<String, (Option<Res>, Option<Res>)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut add = |check: &String, res: &Res, kata_side: bool| {
            let e = merged.entry(check.clone()).or_insert_with(|| {
                order.push(check.clone());
                (None, None)
            });
            let slot = if kata_side { &mut e.0 } else { &mut e.1 };
            *slot = Some(res.clone());
        };
        for (c, res) in &kata {
            add(c, res, true);
        }
        for (c, res) in runc_rows.iter().flatten() {
            add(c, res, false);
        }
        for check in order {
            let (kata, runc) = merged.remove(&check).unwrap_or_default();
            rows.push(Row {
                variant: v.name,
                check,
                kata,
                runc,
            });
        }
    }

    print_table(&rows, runc.is_some());

    // The verdict: kata-runtime fails nothing, and passes whatever runc passes. A variant
    // kata-runtime could not run at all counts once.
    let mut problems = Vec::new();
    let mut not_run: Vec<&str> = Vec::new();
    for r in &rows {
        if not_run.contains(&r.variant) {
            continue;
        }
        if r.check == "run" && matches!(r.kata, Some(Res::Fail(_))) {
            not_run.push(r.variant);
        }
        let label = format!("[{}] {}", r.variant, r.check);
        match (&r.kata, &r.runc) {
            (Some(Res::Fail(why)), _) => {
                problems.push(format!("{label}: kata-runtime FAIL: {why}"))
            }
            (Some(Res::Pass), _) => {}
            (k, Some(Res::Pass)) => problems.push(format!(
                "{label}: runc PASS, kata-runtime {}",
                k.as_ref().map_or("did not check it", Res::word)
            )),
            _ => {}
        }
    }
    env.assert_clean();
    assert!(
        problems.is_empty(),
        "{} conformance problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Base rows all; of the other variants, the rows they are about, rows new to them and any
/// FAIL (the rest repeat the base run and are only counted).
fn print_table(rows: &[Row], have_runc: bool) {
    let base: BTreeMap<&str, (&Option<Res>, &Option<Res>)> = rows
        .iter()
        .filter(|r| r.variant == "base")
        .map(|r| (r.check.as_str(), (&r.kata, &r.runc)))
        .collect();
    let focus = |variant: &str| {
        VARIANTS
            .iter()
            .find(|v| v.name == variant)
            .map_or(&[][..], |v| v.focus)
    };
    let is_fail = |r: &Option<Res>| matches!(r, Some(Res::Fail(_)));
    let mut hidden = 0;
    let shown: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            let show = r.variant == "base"
                || r.check == "run"
                || focus(r.variant).iter().any(|f| r.check.starts_with(f))
                || !base.contains_key(r.check.as_str())
                || is_fail(&r.kata)
                || is_fail(&r.runc);
            hidden += usize::from(!show);
            show
        })
        .collect();
    let label = |r: &Row| format!("[{}] {}", r.variant, r.check);
    let cell = |r: &Option<Res>, present: bool| match (r, present) {
        (_, false) => "n/a",
        (Some(r), _) => r.word(),
        (None, _) => "-",
    };
    let width = shown.iter().map(|r| label(r).len()).max().unwrap_or(5);
    println!();
    println!(
        "| {:width$} | {:12} | {:4} |",
        "check", "kata-runtime", "runc"
    );
    println!(
        "|{}|{}|{}|",
        "-".repeat(width + 2),
        "-".repeat(14),
        "-".repeat(6)
    );
    for r in &shown {
        println!(
            "| {:width$} | {:12} | {:4} |",
            label(r),
            cell(&r.kata, true),
            cell(&r.runc, have_runc)
        );
    }
    if hidden > 0 {
        println!(
            "({hidden} more rows of the other variants: checks the base run has too, none failed)"
        );
    }
    if !have_runc {
        println!("(runc is not on PATH: kata-runtime only)");
    }
    println!();
    for r in &shown {
        for (who, res) in [("kata-runtime", &r.kata), ("runc", &r.runc)] {
            if let Some(Res::Fail(why) | Res::Skip(why)) = res {
                let word = res.as_ref().map_or("", Res::word);
                println!("{who} {word} {}: {why}", label(r));
            }
        }
    }
    println!();
}

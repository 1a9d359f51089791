//! `process`: args, env, cwd, user, umask, capabilities, rlimits, noNewPrivileges, oomScoreAdj.

use crate::caps;
use crate::procfs;
use crate::report::{Outcome, Report};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, Process, User};
use std::collections::BTreeMap;
use std::path::Path;

pub fn check(p: &Process, r: &mut Report) {
    if let Some(args) = p.args() {
        r.record("process.args", args_match(args));
    }
    if let Some(env) = p.env() {
        r.record("process.env", env_match(env));
    }
    r.record("process.cwd", cwd_match(p.cwd()));
    user(p.user(), r);
    if let Some(c) = p.capabilities() {
        capabilities(c, r);
    }
    for rl in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(rl.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_else(|| format!("{:?}", rl.typ()));
        r.record(&format!("process.rlimits {name}"), rlimit_match(&name, rl));
    }
    if let Some(nnp) = p.no_new_privileges() {
        let got = procfs::status_field("NoNewPrivs");
        r.record(
            "process.noNewPrivileges",
            got.map(|v| Outcome::expect_eq(if nnp { "1" } else { "0" }, v.as_str())),
        );
    }
    if let Some(adj) = p.oom_score_adj() {
        let got = procfs::read("/proc/self/oom_score_adj");
        r.record(
            "process.oomScoreAdj",
            got.map(|v| Outcome::expect_eq(adj.to_string(), v.trim().to_string())),
        );
    }
}

/// Our argv is the spec's, and argv[0] (when a path) is this very binary.
fn args_match(args: &[String]) -> Outcome {
    let actual: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if actual != args {
        return Outcome::expect_eq(args.to_vec(), actual);
    }
    let Some(first) = args.first().filter(|a| a.contains('/')) else {
        return Outcome::Pass;
    };
    let me = std::fs::read_link("/proc/self/exe");
    let named = std::fs::canonicalize(first);
    match (me, named) {
        (Ok(me), Ok(named)) if me == named => Outcome::Pass,
        (me, named) => Outcome::Fail(format!(
            "args[0] {first} is {named:?}, but this process runs {me:?}"
        )),
    }
}

/// Every variable of the spec is set, with the spec's value (the last one when repeated).
fn env_match(env: &[String]) -> Outcome {
    let mut want: BTreeMap<&str, &str> = BTreeMap::new();
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            want.insert(k, v);
        }
    }
    let problems = want
        .iter()
        .filter_map(|(k, v)| match std::env::var_os(k) {
            Some(got) if got.to_string_lossy() == *v => None,
            Some(got) => Some(format!("{k}: expected {v:?}, got {got:?}")),
            None => Some(format!("{k}: expected {v:?}, not set")),
        })
        .collect();
    Outcome::from_problems(problems)
}

fn cwd_match(cwd: &Path) -> Outcome {
    match std::env::current_dir() {
        Ok(d) => Outcome::expect_eq(procfs::normalize(cwd), procfs::normalize(&d)),
        Err(e) => Outcome::Fail(format!("getcwd: {e}")),
    }
}

fn user(u: &User, r: &mut Report) {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    r.record(
        "process.user.uid",
        Outcome::expect_eq((u.uid(), u.uid()), (getuid().as_raw(), geteuid().as_raw())),
    );
    r.record(
        "process.user.gid",
        Outcome::expect_eq((u.gid(), u.gid()), (getgid().as_raw(), getegid().as_raw())),
    );
    if let Some(gids) = u.additional_gids() {
        let mut want: Vec<u32> = gids.clone();
        want.sort_unstable();
        want.dedup();
        let got = nix::unistd::getgroups().map(|g| {
            let mut v: Vec<u32> = g.iter().map(|g| g.as_raw()).collect();
            v.sort_unstable();
            v.dedup();
            v
        });
        r.record(
            "process.user.additionalGids",
            match got {
                Ok(got) => Outcome::expect_eq(want, got),
                Err(e) => Outcome::Fail(format!("getgroups: {e}")),
            },
        );
    }
    if let Some(umask) = u.umask() {
        let got = procfs::status_field("Umask")
            .and_then(|v| u32::from_str_radix(&v, 8).map_err(|e| format!("Umask {v:?}: {e}")));
        r.record(
            "process.user.umask",
            got.map(|g| Outcome::expect_eq(format!("{:04o}", umask & 0o777), format!("{g:04o}"))),
        );
    }
}

/// Bits of a spec set; names this checker does not know are left out.
fn spec_mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().and_then(caps::number))
        .fold(0u64, |m, n| m | (1u64 << n))
}

fn capabilities(c: &LinuxCapabilities, r: &mut Report) {
    let known = caps::known_mask(procfs::cap_last_cap());
    let sets = [
        ("bounding", c.bounding(), "CapBnd"),
        ("effective", c.effective(), "CapEff"),
        ("permitted", c.permitted(), "CapPrm"),
        ("inheritable", c.inheritable(), "CapInh"),
        ("ambient", c.ambient(), "CapAmb"),
    ];
    for (name, set, field) in sets {
        let Some(set) = set else { continue };
        let want = spec_mask(Some(set)) & known;
        let outcome = procfs::status_mask(field).map(|got| {
            let got = got & known;
            if got == want {
                Outcome::Pass
            } else {
                let missing = want & !got;
                let extra = got & !want;
                Outcome::Fail(format!(
                    "{field} {got:016x}, expected {want:016x} (missing: {}; extra: {})",
                    caps::names(missing),
                    caps::names(extra)
                ))
            }
        });
        r.record(&format!("process.capabilities.{name}"), outcome);
    }
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name.trim_start_matches("RLIMIT_") {
        "AS" => libc::RLIMIT_AS,
        "CORE" => libc::RLIMIT_CORE,
        "CPU" => libc::RLIMIT_CPU,
        "DATA" => libc::RLIMIT_DATA,
        "FSIZE" => libc::RLIMIT_FSIZE,
        "LOCKS" => libc::RLIMIT_LOCKS,
        "MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "NICE" => libc::RLIMIT_NICE,
        "NOFILE" => libc::RLIMIT_NOFILE,
        "NPROC" => libc::RLIMIT_NPROC,
        "RSS" => libc::RLIMIT_RSS,
        "RTPRIO" => libc::RLIMIT_RTPRIO,
        "RTTIME" => libc::RLIMIT_RTTIME,
        "SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

fn rlimit_match(name: &str, rl: &PosixRlimit) -> Outcome {
    let Some(resource) = rlimit_resource(name) else {
        return Outcome::Skip(format!("{name} unknown to this checker"));
    };
    let mut got = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut got) } != 0 {
        return Outcome::Fail(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    Outcome::expect_eq(
        format!("soft {} hard {}", rl.soft(), rl.hard()),
        format!("soft {} hard {}", got.rlim_cur, got.rlim_max),
    )
}

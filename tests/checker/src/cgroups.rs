//! `linux.resources`: memory limit, pids limit and cpu quota/period as the container's own
//! cgroup shows them, on cgroup v2 mounted at /sys/fs/cgroup (anything else: SKIP).

use crate::procfs;
use crate::report::{Outcome, Report};
use oci_spec::runtime::Linux;
use std::path::{Path, PathBuf};

const MOUNT: &str = "/sys/fs/cgroup";

pub fn check(l: &Linux, r: &mut Report) {
    let Some(res) = l.resources() else { return };
    let mut wanted: Vec<(&str, &str, String)> = Vec::new();
    if let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) {
        wanted.push(("linux.resources.memory.limit", "memory.max", max_or(limit)));
    }
    if let Some(p) = res.pids() {
        wanted.push(("linux.resources.pids.limit", "pids.max", max_or(p.limit())));
    }
    if let Some(cpu) = res.cpu() {
        if cpu.quota().is_some() || cpu.period().is_some() {
            let quota = cpu.quota().map_or("max".to_string(), max_or);
            let period = cpu.period().unwrap_or(100_000);
            wanted.push((
                "linux.resources.cpu",
                "cpu.max",
                format!("{quota} {period}"),
            ));
        }
    }
    if wanted.is_empty() {
        return;
    }
    let dir = own_cgroup();
    for (check, file, want) in wanted {
        let outcome = match &dir {
            Ok(d) => read_value(&d.join(file)).map(|got| Outcome::expect_eq(want, got)),
            Err(skip) => Ok(Outcome::Skip(skip.clone())),
        };
        r.record(check, outcome);
    }
}

/// Non-positive limits mean "no limit".
fn max_or(v: i64) -> String {
    if v <= 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

fn read_value(p: &Path) -> Result<String, String> {
    procfs::read(&p.to_string_lossy()).map(|s| s.trim().to_string())
}

/// The folder of our cgroup, or why the cgroup checks are skipped.
fn own_cgroup() -> Result<PathBuf, String> {
    let table = procfs::mountinfo()?;
    let fstype = procfs::mount_at(&table, Path::new(MOUNT))
        .map(|m| m.fstype.clone())
        .ok_or_else(|| format!("{MOUNT} is not mounted in the container"))?;
    if fstype != "cgroup2" {
        return Err(format!("{MOUNT} is {fstype}, not cgroup v2"));
    }
    let text = procfs::read("/proc/self/cgroup")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| "no cgroup v2 line in /proc/self/cgroup".to_string())?;
    // Without a cgroup namespace the mount shows the whole tree and rel is our place in it;
    // a runtime may also mount our own cgroup there.
    let joined = Path::new(MOUNT).join(rel.trim_start_matches('/'));
    if joined.join("cgroup.procs").exists() && rel != "/" {
        return Ok(joined);
    }
    Ok(PathBuf::from(MOUNT))
}

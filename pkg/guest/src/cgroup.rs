//! One cgroup (v2) per container in the guest, under `/sys/fs/cgroup/kata/<id>`: the freezer
//! for pause/resume, and the place resource limits and stats will come from.

use std::path::PathBuf;
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup/kata";

#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct Error {
    path: PathBuf,
    source: std::io::Error,
}

fn err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_path_buf(),
        source,
    }
}

pub fn path(id: &str) -> PathBuf {
    PathBuf::from(ROOT).join(id)
}

/// Creates the container's cgroup and moves `pid` into it.
pub fn create_with(id: &str, pid: i32) -> Result<(), Error> {
    let dir = path(id);
    std::fs::create_dir_all(&dir).map_err(err(&dir))?;
    add(id, pid)
}

pub fn add(id: &str, pid: i32) -> Result<(), Error> {
    let procs = path(id).join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(err(&procs))
}

/// The (guest) pids in the container's cgroup, descendants' cgroups included.
pub fn pids(id: &str) -> Result<Vec<i32>, Error> {
    let mut out = Vec::new();
    collect_pids(&path(id), &mut out)?;
    Ok(out)
}

fn collect_pids(dir: &std::path::Path, out: &mut Vec<i32>) -> Result<(), Error> {
    let procs = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(err(&procs))?;
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in std::fs::read_dir(dir).map_err(err(dir))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Freezes or thaws every process of the container and waits until the kernel says it is done.
pub fn freeze(id: &str, frozen: bool) -> Result<(), Error> {
    let file = path(id).join("cgroup.freeze");
    std::fs::write(&file, if frozen { "1" } else { "0" }).map_err(err(&file))?;
    let events = path(id).join("cgroup.events");
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&events).map_err(err(&events))?;
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(Error {
                path: events,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not {want} after 5 s"),
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn remove(id: &str) {
    let dir = path(id);
    if let Err(e) = std::fs::remove_dir(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing cgroup {}: {e}", dir.display());
        }
    }
}

/// Controllers the containers' cgroups get, enabled once at agent start.
const CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "memory", "pids", "io"];

/// Enables the controllers for `kata/` and its children (each on its own: a kernel without
/// one must not cost the others).
pub fn enable_controllers() {
    let root = PathBuf::from("/sys/fs/cgroup");
    let _ = std::fs::create_dir_all(ROOT);
    for dir in [root, PathBuf::from(ROOT)] {
        for c in CONTROLLERS {
            let file = dir.join("cgroup.subtree_control");
            if let Err(e) = std::fs::write(&file, format!("+{c}")) {
                log::debug!("enabling {c} in {}: {e}", file.display());
            }
        }
    }
}

fn write(id: &str, file: &str, value: &str) -> Result<(), Error> {
    let path = path(id).join(file);
    std::fs::write(&path, value).map_err(err(&path))
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// A value runc leaves alone: `runc update` (Docker, containerd) sends every field, with 0
/// for the ones the caller did not set.
fn given(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v != 0)
}

/// Applies OCI resources (memory, cpu, pids, blkio weight) to the container's cgroup (v2 files),
/// with runc's cgroup v2 mapping: a zero is "not set", a negative limit is "max".
pub fn apply_resources(id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        if let Some(l) = given(m.limit()) {
            write(id, "memory.max", &limit(l))?;
        }
        if let Some(l) = given(m.reservation()) {
            write(id, "memory.low", &limit(l))?;
        }
        if let (Some(swap), Some(mem)) = (given(m.swap()), given(m.limit())) {
            // OCI's swap is memory+swap (cgroup v1 semantics); v2 wants the swap alone.
            let v2 = if swap < 0 { -1 } else { (swap - mem).max(0) };
            let _ = write(id, "memory.swap.max", &limit(v2));
        }
    }
    if let Some(c) = r.cpu() {
        let quota = given(c.quota());
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let quota = quota.filter(|q| *q > 0).map(|q| q.to_string());
            let value = match period {
                Some(p) => format!("{} {p}", quota.as_deref().unwrap_or("max")),
                None => quota.unwrap_or_else(|| "max".into()),
            };
            write(id, "cpu.max", &value)?;
        }
        // CPU and memory node numbers are the host's; the VM has its own (fewer) ones. Where
        // they do not exist in the guest the setting is dropped with a warning, as Kata did.
        for (file, value) in [("cpuset.cpus", c.cpus()), ("cpuset.mems", c.mems())] {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                if let Err(e) = write(id, file, v) {
                    log::warn!(
                        "container {id}: {file} {v} does not apply in the VM: ignored ({e})"
                    );
                }
            }
        }
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            // The conversion runc and crun use from v1 shares to v2 weight.
            let weight = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
            write(id, "cpu.weight", &weight.to_string())?;
        }
    }
    if let Some(p) = r.pids().as_ref().filter(|p| p.limit() != 0) {
        write(id, "pids.max", &limit(p.limit()))?;
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w != 0)
    {
        let _ = write(id, "io.weight", &format!("default {w}"));
    }
    Ok(())
}

fn read_u64(id: &str, file: &str) -> u64 {
    std::fs::read_to_string(path(id).join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn read_limit(id: &str, file: &str) -> u64 {
    match std::fs::read_to_string(path(id).join(file)) {
        Ok(s) if s.trim() == "max" => u64::MAX,
        Ok(s) => s.trim().parse().unwrap_or(0),
        Err(_) => 0,
    }
}

/// The key of memory.events' `oom_kill` count in the memory statistics the agent returns.
pub const OOM_KILL_KEY: &str = "oom_kill";

fn read_keyed(id: &str, file: &str) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string(path(id).join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// cgroup v2 `io.stat` lines (`MAJ:MIN rbytes=N wbytes=N rios=N ...`) as
/// (major, minor, key, value).
fn parse_io_stat(text: &str) -> Vec<(u64, u64, &str, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for (key, value) in words.filter_map(|w| w.split_once('=')) {
            if let Ok(value) = value.parse() {
                out.push((major, minor, key, value));
            }
        }
    }
    out
}

/// The container's cgroup statistics, measured where its processes run: in the guest.
pub fn stats(id: &str) -> protocols::agent::CgroupStats {
    use protocols::agent::*;
    let cpu = read_keyed(id, "cpu.stat");
    let mut usage = CpuUsage::new();
    usage.total_usage = cpu.get("usage_usec").copied().unwrap_or(0) * 1000;
    usage.usage_in_usermode = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
    usage.usage_in_kernelmode = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
    let mut throttling = ThrottlingData::new();
    throttling.periods = cpu.get("nr_periods").copied().unwrap_or(0);
    throttling.throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
    throttling.throttled_time = cpu.get("throttled_usec").copied().unwrap_or(0) * 1000;
    let mut cpu_stats = CpuStats::new();
    cpu_stats.cpu_usage = Some(usage).into();
    cpu_stats.throttling_data = Some(throttling).into();

    let mut mem_usage = MemoryData::new();
    mem_usage.usage = read_u64(id, "memory.current");
    mem_usage.max_usage = read_u64(id, "memory.peak");
    mem_usage.limit = read_limit(id, "memory.max");
    let events = read_keyed(id, "memory.events");
    // As runc reads cgroup v2: hits of the limit.
    mem_usage.failcnt = events.get("max").copied().unwrap_or(0);
    let mut memory = MemoryStats::new();
    memory.stats = read_keyed(id, "memory.stat");
    // OOM kills in the container's cgroup: the host turns a rise into runc's `oom` event.
    memory.stats.insert(
        OOM_KILL_KEY.into(),
        events.get("oom_kill").copied().unwrap_or(0),
    );
    memory.cache = memory.stats.get("file").copied().unwrap_or(0);
    memory.usage = Some(mem_usage).into();
    memory.use_hierarchy = true;

    let mut pids = PidsStats::new();
    pids.current = read_u64(id, "pids.current");
    pids.limit = read_limit(id, "pids.max");

    let io_stat = std::fs::read_to_string(path(id).join("io.stat")).unwrap_or_default();
    let mut blkio = BlkioStats::new();
    for (major, minor, key, value) in parse_io_stat(&io_stat) {
        let (op, list) = match key {
            "rbytes" => ("Read", &mut blkio.io_service_bytes_recursive),
            "wbytes" => ("Write", &mut blkio.io_service_bytes_recursive),
            "rios" => ("Read", &mut blkio.io_serviced_recursive),
            "wios" => ("Write", &mut blkio.io_serviced_recursive),
            _ => continue,
        };
        let mut e = BlkioStatsEntry::new();
        e.major = major;
        e.minor = minor;
        e.op = op.into();
        e.value = value;
        list.push(e);
    }

    let mut s = CgroupStats::new();
    s.blkio_stats = Some(blkio).into();
    s.cpu_stats = Some(cpu_stats).into();
    s.memory_stats = Some(memory).into();
    s.pids_stats = Some(pids).into();
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_stat_lines() {
        let got = super::parse_io_stat(
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbad line\n",
        );
        assert_eq!(got[0], (254, 0, "rbytes", 4096));
        assert_eq!(got[3], (254, 0, "wios", 2));
        assert_eq!(got.len(), 6);
    }
}

//! What a sandbox costs the host besides its containers: QEMU (the whole VM as the host sees
//! it), virtiofsd, the proxy and the shims, each with its CPU time and resident memory. Reported
//! apart from the containers' own usage, which is measured in the guest.

use hypervisor::QemuState;
use serde::Serialize;
use store::{ProcessRef, SandboxRecord};

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    pub component: &'static str,
    /// The container a shim stands in for.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container: String,
    pub pid: i32,
    /// User + system CPU time since the process started.
    pub cpu_ns: u64,
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among their users (what the process
    /// really costs when many sandboxes share binaries and libraries).
    pub pss_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostOverhead {
    pub processes: Vec<ProcessUsage>,
    pub total_cpu_ns: u64,
    pub total_rss_bytes: u64,
    pub total_pss_bytes: u64,
}

/// The host processes of sandbox `sb` that are still alive; `shims`: (container, shim).
pub fn measure(sb: &SandboxRecord, shims: &[(String, ProcessRef)]) -> HostOverhead {
    let mut procs: Vec<(&'static str, String, i32, u64)> = Vec::new();
    if let Ok(state) = serde_json::from_value::<QemuState>(sb.hypervisor.clone()) {
        procs.push(("qemu", String::new(), state.pid, state.pid_start_time));
        if let Some(v) = state.virtiofsd_pid {
            procs.push(("virtiofsd", String::new(), v.pid, v.start_time));
        }
    }
    if let Some(p) = sb.proxy {
        procs.push(("proxy", String::new(), p.pid, p.start_time));
    }
    for (container, p) in shims {
        procs.push(("shim", container.clone(), p.pid, p.start_time));
    }
    let processes: Vec<ProcessUsage> = procs
        .into_iter()
        .filter(|(_, _, pid, start)| store::process_alive(*pid, *start))
        .filter_map(|(component, container, pid, _)| {
            Some(ProcessUsage {
                component,
                container,
                pid,
                cpu_ns: cpu_ns(pid)?,
                rss_bytes: rss_bytes(pid).unwrap_or(0),
                pss_bytes: pss_bytes(pid).unwrap_or(0),
            })
        })
        .collect();
    HostOverhead {
        total_cpu_ns: processes.iter().map(|p| p.cpu_ns).sum(),
        total_rss_bytes: processes.iter().map(|p| p.rss_bytes).sum(),
        total_pss_bytes: processes.iter().map(|p| p.pss_bytes).sum(),
        processes,
    }
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat) in nanoseconds.
fn cpu_ns(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_ns_of_stat(&stat, clock_ticks_per_second())
}

fn cpu_ns_of_stat(stat: &str, ticks_per_second: u64) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / ticks_per_second.max(1)))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// VmRSS of /proc/PID/status.
fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    rss_of_status(&status)
}

/// Pss of /proc/PID/smaps_rollup.
fn pss_bytes(pid: i32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&rollup, "Pss:")
}

fn rss_of_status(status: &str) -> Option<u64> {
    kib_field(status, "VmRSS:")
}

/// `Key:   1234 kB` as bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_fields() {
        let stat =
            "4242 (qemu (x) sys) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 900 1 2";
        assert_eq!(cpu_ns_of_stat(stat, 100), Some(3_000_000_000));
        assert_eq!(cpu_ns_of_stat("garbage", 100), None);
        assert_eq!(
            rss_of_status("Name:\tqemu\nVmRSS:\t  204800 kB\nThreads: 3\n"),
            Some(200 * 1024 * 1024)
        );
        assert_eq!(rss_of_status("Name: kthread\n"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id() as i32;
        assert!(cpu_ns(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(pss_bytes(me).unwrap() > 0);
    }
}

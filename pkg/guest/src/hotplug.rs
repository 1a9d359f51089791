//! Bringing hot-plugged vCPUs and memory online (the agent's OnlineCPUMem). Without udev in
//! the guest nothing else would: the kernel leaves new CPUs offline, and new memory blocks too
//! unless it was built to online them itself (MEMORY_HOTPLUG_DEFAULT_ONLINE, as our kernel is;
//! `auto_online_blocks` then says so).

use std::path::Path;
use std::time::{Duration, Instant};

const CPUS: &str = "/sys/devices/system/cpu";
const MEMORY: &str = "/sys/devices/system/memory";
/// "offline" when new memory blocks wait for someone to online them; "online", "online_kernel"
/// or "online_movable" when the kernel does it as they appear.
const AUTO_ONLINE_BLOCKS: &str = "/sys/devices/system/memory/auto_online_blocks";
/// ACPI announces new devices asynchronously after QMP's device_add returns.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("only {cpus_online} of {cpus_wanted} new vCPUs and {blocks_online} memory blocks came online within {APPEAR_TIMEOUT:?}")]
pub struct Error {
    cpus_wanted: u32,
    cpus_online: u32,
    blocks_online: u32,
}

/// Onlines every offline CPU and (unless `cpu_only`) memory block; with `wait`, keeps at it
/// until `cpus` CPUs and at least one memory block have come online.
pub fn online(cpus: u32, cpu_only: bool, wait: bool) -> Result<(), Error> {
    let start = Instant::now();
    let mut cpus_online = 0;
    let mut blocks_online = 0;
    // Memory the kernel onlines itself needs neither our write nor our wait.
    let memory_is_ours = !cpu_only && !kernel_onlines_memory();
    loop {
        cpus_online += online_offline(Path::new(CPUS), "cpu", "online", "1");
        if !cpu_only {
            blocks_online += online_offline(Path::new(MEMORY), "memory", "state", "online");
        }
        let done = cpus_online >= cpus && (!memory_is_ours || blocks_online > 0);
        if done || !wait {
            log::info!("onlined {cpus_online} vCPUs, {blocks_online} memory blocks");
            return Ok(());
        }
        if start.elapsed() > APPEAR_TIMEOUT {
            return Err(Error {
                cpus_wanted: cpus,
                cpus_online,
                blocks_online,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kernel_onlines_memory() -> bool {
    std::fs::read_to_string(AUTO_ONLINE_BLOCKS)
        .map(|policy| auto_onlines(&policy))
        .unwrap_or(false)
}

fn auto_onlines(policy: &str) -> bool {
    policy.trim().starts_with("online")
}

/// Writes `on` to `<dir>/<prefix>N/<file>` where it reads as offline; returns how many came
/// online (a write refused because the kernel onlined it meanwhile counts too).
fn online_offline(dir: &Path, prefix: &str, file: &str, on: &str) -> u32 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(|s| s.strip_prefix(prefix)) else {
            continue;
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = entry.path().join(file);
        let Ok(state) = std::fs::read_to_string(&path) else {
            continue; // cpu0 has no `online` file
        };
        if matches!(state.trim(), "0" | "offline") {
            match std::fs::write(&path, on) {
                Ok(()) => n += 1,
                Err(_) if is_online(&path) => n += 1,
                Err(e) => log::warn!("onlining {}: {e}", path.display()),
            }
        }
    }
    n
}

fn is_online(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|state| !matches!(state.trim(), "0" | "offline"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_online_policies() {
        for policy in ["online\n", "online_kernel\n", "online_movable\n"] {
            assert!(auto_onlines(policy), "{policy}");
        }
        assert!(!auto_onlines("offline\n"));
        assert!(!auto_onlines(""));
    }
}

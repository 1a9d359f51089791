//! The VM grows along with its containers' limits, as Kata 1.x did: a CPU quota of Q/P asks
//! for ceil(Q/P) vCPUs, a memory limit of L for L MiB more memory — on top of the sandbox's
//! defaults for `update`, on top of the VM's current size for a pod member joining it. vCPUs and DIMMs are hot-plugged over QMP (up to
//! `default_maxvcpus` / `default_maxmemory`), then the agent brings them online. Limits are
//! enforced by the guest cgroup either way, so a VM that cannot grow only logs a warning.
//! The VM never shrinks.

use crate::Runtime;
use agent_client::{messages as msg, AgentClient};
use hypervisor::{resize, Qemu, QemuState};
use oci_spec::runtime::LinuxResources;

pub fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

pub fn host_memory_mib() -> u32 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| u32::try_from(kib / 1024).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// The vCPUs and memory (MiB) these limits ask for; None where they set none.
fn asked(r: &LinuxResources) -> (Option<u32>, Option<u64>) {
    let cpus = r.cpu().as_ref().and_then(|c| {
        let quota = u64::try_from(c.quota()?).ok().filter(|q| *q > 0)?;
        let period = c.period().filter(|p| *p > 0)?;
        Some(u32::try_from(quota.div_ceil(period)).unwrap_or(u32::MAX))
    });
    let memory = r.memory().as_ref().and_then(|m| {
        let limit = u64::try_from(m.limit()?).ok().filter(|l| *l > 0)?;
        Some(limit.div_ceil(1 << 20))
    });
    (cpus, memory)
}

/// How the wanted size is computed: from the configured defaults, or from the VM's size now.
#[derive(Clone, Copy)]
enum Base {
    Defaults,
    Current,
}

/// `update` of a container, or a sandbox's first container at create: the VM should have the
/// defaults plus what the limits ask.
pub fn grow_for(rt: &Runtime, sandbox_id: &str, agent: &AgentClient, r: &LinuxResources) {
    grow_and_online(rt, sandbox_id, agent, r, Base::Defaults);
}

/// A member joining a pod: the VM grows by what its limits ask.
pub fn grow_for_member(rt: &Runtime, sandbox_id: &str, agent: &AgentClient, r: &LinuxResources) {
    grow_and_online(rt, sandbox_id, agent, r, Base::Current);
}

fn grow_and_online(
    rt: &Runtime,
    sandbox_id: &str,
    agent: &AgentClient,
    r: &LinuxResources,
    base: Base,
) {
    let (cpus, memory) = asked(r);
    if cpus.is_none() && memory.is_none() {
        return;
    }
    match grow(rt, sandbox_id, cpus, memory, base) {
        Ok((0, false)) => {}
        Ok((added_cpus, added_memory)) => {
            let mut req = msg::OnlineCPUMemRequest::new();
            req.wait = true;
            req.nb_cpus = added_cpus;
            req.cpu_only = !added_memory;
            if let Err(e) = agent.online_cpu_mem(&req) {
                log::warn!("sandbox {sandbox_id}: onlining hot-plugged CPUs and memory: {e}");
            }
        }
        Err(e) => log::warn!("sandbox {sandbox_id}: the VM was not resized: {e}"),
    }
}

/// Hot-plugs what is missing; returns the vCPUs added and whether memory was.
fn grow(
    rt: &Runtime,
    sandbox_id: &str,
    cpus: Option<u32>,
    memory: Option<u64>,
    base: Base,
) -> Result<(u32, bool), String> {
    let q = &rt.config.hypervisor.qemu;
    let sb = rt
        .store
        .load_sandbox(sandbox_id)
        .map_err(|e| e.to_string())?;
    let state: QemuState =
        serde_json::from_value(sb.hypervisor.clone()).map_err(|e| e.to_string())?;
    // The configured deadline of a call ([agent.kata] request_timeout) bounds QMP too.
    let mut qmp = Qemu::from_state(state)
        .qmp(rt.call_timeout())
        .map_err(|e| e.to_string())?;
    let mut added_cpus = 0u32;
    let mut added_memory = false;
    if let Some(extra) = cpus {
        let before = resize::vcpus(&mut qmp).map_err(|e| e.to_string())?;
        let want = match base {
            Base::Defaults => q.default_vcpus,
            Base::Current => before,
        }
        .saturating_add(extra);
        if want > before {
            let after = resize::plug_vcpus(&mut qmp, want).map_err(|e| e.to_string())?;
            log::info!("sandbox {sandbox_id}: vCPUs {before} -> {after} (wanted {want})");
            added_cpus = after.saturating_sub(before);
        }
    }
    if let Some(extra) = memory {
        let before = resize::memory_mib(&mut qmp).map_err(|e| e.to_string())?;
        let want = match base {
            Base::Defaults => u64::from(q.default_memory),
            Base::Current => before,
        } + extra;
        let max = match q.default_maxmemory {
            0 => u64::from(host_memory_mib()),
            n => u64::from(n),
        };
        let want = want.min(max);
        if q.memory_slots > 0 && want > before {
            let added = resize::plug_memory(&mut qmp, want - before).map_err(|e| e.to_string())?;
            log::info!("sandbox {sandbox_id}: memory {before} MiB + {added} MiB");
            added_memory = true;
        }
    }
    Ok((added_cpus, added_memory))
}

//! Growing a running VM: vCPU and memory hot-plug over QMP, as Kata 1.x did on `update`.
//! The guest side (bringing the new CPUs and memory blocks online) is the agent's
//! OnlineCPUMem. Shrinking is not done: a container's lower limit is enforced by its cgroup.

use crate::qmp::{QmpClient, QmpError};
use serde_json::{json, Value};

/// Hot-plugged DIMMs are whole multiples of this (the x86 guest's memory block size), so the
/// guest can online all of them.
pub const MEMORY_BLOCK_MIB: u64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("QMP {command}: unexpected reply {reply}")]
    Reply {
        command: &'static str,
        reply: String,
    },
}

/// vCPUs present now.
pub fn vcpus(qmp: &mut QmpClient) -> Result<u32, Error> {
    let reply = qmp.execute("query-cpus-fast", None)?;
    let list = reply.as_array().ok_or_else(|| Error::Reply {
        command: "query-cpus-fast",
        reply: reply.to_string(),
    })?;
    Ok(u32::try_from(list.len()).unwrap_or(u32::MAX))
}

/// Plugs vCPUs until the VM has `target` (or every slot `-smp maxcpus` allows is used).
/// Returns how many vCPUs the VM has afterwards.
pub fn plug_vcpus(qmp: &mut QmpClient, target: u32) -> Result<u32, Error> {
    let slots = qmp.execute("query-hotpluggable-cpus", None)?;
    let slots = slots.as_array().cloned().ok_or_else(|| Error::Reply {
        command: "query-hotpluggable-cpus",
        reply: slots.to_string(),
    })?;
    let mut present = slots.iter().filter(|s| s.get("qom-path").is_some()).count();
    // QEMU lists slots highest id first; plug in ascending order like a real machine.
    let mut free: Vec<&Value> = slots
        .iter()
        .filter(|s| s.get("qom-path").is_none())
        .collect();
    free.reverse();
    for slot in free {
        if present >= target as usize {
            break;
        }
        let mut args = json!({
            "driver": slot["type"],
            "id": format!("cpu-{present}"),
        });
        if let Some(props) = slot["props"].as_object() {
            for (k, v) in props {
                args[k] = v.clone();
            }
        }
        qmp.execute("device_add", Some(args))?;
        present += 1;
    }
    Ok(u32::try_from(present).unwrap_or(u32::MAX))
}

/// The VM's memory now: boot memory plus hot-plugged DIMMs.
pub fn memory_mib(qmp: &mut QmpClient) -> Result<u64, Error> {
    let reply = qmp.execute("query-memory-size-summary", None)?;
    let base = reply["base-memory"].as_u64().ok_or_else(|| Error::Reply {
        command: "query-memory-size-summary",
        reply: reply.to_string(),
    })?;
    let plugged = reply["plugged-memory"].as_u64().unwrap_or(0);
    Ok((base + plugged) >> 20)
}

/// Plugs one DIMM of at least `add_mib` (rounded up to whole memory blocks); returns its size.
pub fn plug_memory(qmp: &mut QmpClient, add_mib: u64) -> Result<u64, Error> {
    let size_mib = add_mib.div_ceil(MEMORY_BLOCK_MIB) * MEMORY_BLOCK_MIB;
    let devices = qmp.execute("query-memory-devices", None)?;
    let n = devices.as_array().map_or(0, Vec::len);
    let mem = format!("hotmem{n}");
    qmp.execute(
        "object-add",
        Some(json!({"qom-type": "memory-backend-ram", "id": mem, "size": size_mib << 20})),
    )?;
    if let Err(e) = qmp.execute(
        "device_add",
        Some(json!({"driver": "pc-dimm", "id": format!("dimm{n}"), "memdev": mem})),
    ) {
        let _ = qmp.execute("object-del", Some(json!({"id": mem})));
        return Err(e.into());
    }
    Ok(size_mib)
}

//! The runc verbs that act on an existing container, each the same three steps: load the
//! sandbox and the container from their records (under the sandbox's lock), call one method,
//! save.

use crate::container::Container;
use crate::procs;
use crate::sandbox::Sandbox;
use crate::state::{effective_status, to_state, OciState};
use crate::{Error, Result, Runtime};
use std::time::Duration;
use store::{ContainerRecord, LockMode, Status};

/// The sandbox of container `id`, from its records.
fn sandbox_of(rt: &Runtime, id: &str) -> Result<Sandbox> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    Sandbox::load(rt, &rec.sandbox_id)
}

/// The sandbox id of container `id` (to lock it before loading anything else).
fn sandbox_id_of(rt: &Runtime, id: &str) -> Result<String> {
    oci::validate_id(id)?;
    Ok(rt.store.load_container(id)?.sandbox_id)
}

pub fn state(rt: &Runtime, id: &str) -> Result<OciState> {
    let _lock = rt.store.lock(&sandbox_id_of(rt, id)?, LockMode::Shared)?;
    Ok(to_state(rt.store.load_container(id)?))
}

/// Every container under the root, without locks or VM calls (a record being written is
/// replaced atomically, so reading without the lock sees a whole one).
pub fn list(rt: &Runtime) -> Vec<OciState> {
    rt.store
        .list()
        .into_iter()
        .filter_map(|id| rt.store.load_container(&id).ok())
        .map(to_state)
        .collect()
}

pub fn start(rt: &Runtime, id: &str) -> Result<()> {
    let _lock = rt
        .store
        .lock(&sandbox_id_of(rt, id)?, LockMode::Exclusive)?;
    let sandbox = sandbox_of(rt, id)?;
    Container::load(&sandbox, id)?.start()
}

pub fn kill(rt: &Runtime, id: &str, signal: i32, all: bool) -> Result<()> {
    // Shared: a kill changes no record, and must not wait behind a slow create or delete of
    // another container of the pod.
    let _lock = rt.store.lock(&sandbox_id_of(rt, id)?, LockMode::Shared)?;
    let sandbox = sandbox_of(rt, id)?;
    Container::load(&sandbox, id)?.kill(signal, all)
}

/// The kata-shim standing for a container being deleted: it exits once its process has; if
/// the VM is gone it may be stuck.
fn shim_gone(rec: &ContainerRecord) {
    if let Some(shim) = &rec.shim {
        if !procs::wait_gone(shim, Duration::from_secs(3)) {
            procs::stop_process(shim, Duration::from_secs(1));
        }
    }
}

pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<()> {
    oci::validate_id(id)?;
    let rec = match rt.store.load_container(id) {
        Ok(r) => r,
        // A corrupt record must not make the container undeletable, nor a missing one when
        // the id's folder exists (a `create` killed before it saved the record).
        Err(store::Error::Corrupt { .. }) if force => return crate::sandbox::force_remove(rt, id),
        Err(store::Error::NotFound(_)) if force && rt.store.exists(id) => {
            return crate::sandbox::force_remove(rt, id)
        }
        // runc: `delete --force` of an id it does not know succeeds quietly (CRI-O and podman
        // call it to make sure a container is gone).
        Err(store::Error::NotFound(_)) if force => {
            log::info!("delete --force {id}: no such container, nothing to do");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Exclusive)?;
    let rec = rt.store.load_container(id)?;
    let status = effective_status(&rec);
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: "cannot delete a container that is not stopped (use --force)",
        });
    }
    let mut sandbox = Sandbox::load(rt, &rec.sandbox_id)?;
    if rec.sandbox_id == id {
        // The sandbox container takes the whole pod with it: members first, then the VM.
        sandbox.destroy(&shim_gone);
    } else {
        sandbox.remove_member(rec, &shim_gone);
        sandbox.save()?;
    }
    log::info!("container {id}: deleted");
    Ok(())
}

/// `pause` (`frozen`) and `resume`: the container's guest cgroup freezer.
pub fn set_paused(rt: &Runtime, id: &str, frozen: bool) -> Result<()> {
    let _lock = rt
        .store
        .lock(&sandbox_id_of(rt, id)?, LockMode::Exclusive)?;
    let sandbox = sandbox_of(rt, id)?;
    Container::load(&sandbox, id)?.set_paused(frozen)
}

/// `ps`: the container's processes. The table is the guest's view (pid and command line).
/// The json list holds host pids, as every pid the runtime hands out (`state`, `--pid-file`):
/// those of the kata-shims standing for the container's process and its execs. Callers look
/// these pids up on the host (`docker top` runs the host's `ps` and keeps the listed pids;
/// containerd's shims match them with the execs' pid files): a guest pid there would name
/// whatever unrelated host process has that number.
pub fn ps(rt: &Runtime, id: &str, format: &str) -> Result<Vec<u8>> {
    let _lock = rt.store.lock(&sandbox_id_of(rt, id)?, LockMode::Shared)?;
    let sandbox = sandbox_of(rt, id)?;
    let container = Container::load(&sandbox, id)?;
    if format == "json" {
        if container.status() == Status::Stopped {
            return Err(Error::BadState {
                id: id.into(),
                status: Status::Stopped,
                action: "a stopped container has no processes",
            });
        }
        let pids = crate::procs::shims_of(sandbox.id(), id);
        return serde_json::to_vec(&pids).map_err(|e| Error::Unsupported(format!("ps json: {e}")));
    }
    container.processes(format)
}

/// `update`: new resource limits for the container's cgroup in the guest.
pub fn update(rt: &Runtime, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let _lock = rt.store.lock(&sandbox_id_of(rt, id)?, LockMode::Shared)?;
    let sandbox = sandbox_of(rt, id)?;
    Container::load(&sandbox, id)?.update(resources)
}

/// How many processes the guest's OOM killer has killed in the container's cgroup: `events`
/// turns a rise into runc's `oom` event.
pub fn oom_kills(rt: &Runtime, id: &str) -> Result<u64> {
    let sandbox = sandbox_of(rt, id)?;
    Container::load(&sandbox, id)?.oom_kills()
}

/// The container's statistics from its guest cgroup, shaped as runc's `events --stats` data,
/// with what the sandbox costs the host beside them.
pub fn stats(rt: &Runtime, id: &str) -> Result<serde_json::Value> {
    let _lock = rt.store.lock(&sandbox_id_of(rt, id)?, LockMode::Shared)?;
    let sandbox = sandbox_of(rt, id)?;
    let resp = Container::load(&sandbox, id)?.stats()?;
    // Every shim of the sandbox: the VM and its helpers are shared by its containers, so
    // the overhead is the sandbox's, not this container's.
    let shims: Vec<(String, store::ProcessRef)> = sandbox
        .container_ids()
        .iter()
        .filter_map(|c| {
            let r = rt.store.load_container(c).ok()?;
            Some((r.id, r.shim?))
        })
        .collect();
    let overhead = crate::overhead::measure(sandbox.record(), &shims);
    let mut stats = crate::stats::runc_stats(&resp);
    // Not part of runc's stats: what the sandbox costs the host (QEMU, virtiofsd, proxy,
    // shims), measured on the host, apart from the container's own usage.
    stats["sandbox_host_overhead"] = serde_json::json!({
        "sandbox": sandbox.id(),
        "processes": overhead.processes,
        "total_cpu_ns": overhead.total_cpu_ns,
        "total_rss_bytes": overhead.total_rss_bytes,
        "total_pss_bytes": overhead.total_pss_bytes,
    });
    Ok(stats)
}

/// The agent of container `id`'s sandbox, refused with `what` when the container has stopped.
pub(crate) fn running_agent(
    rt: &Runtime,
    id: &str,
    what: &'static str,
) -> Result<agent_client::AgentClient> {
    let sandbox = sandbox_of(rt, id)?;
    let status = Container::load(&sandbox, id)?.status();
    if status == Status::Stopped {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: what,
        });
    }
    Ok(sandbox.agent()?.clone())
}

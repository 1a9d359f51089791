//! start, state, kill, delete: the verbs that act on an existing container.

use crate::procs;
use crate::share;
use crate::{Error, Result, Runtime};
use agent_client::{messages as msg, AgentClient};
use hypervisor::{Hypervisor, Qemu, QemuState};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use store::{ContainerRecord, LockMode, SandboxRecord, Status};

/// The OCI state document, as `runc state` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// A record's status corrected by reality: a container whose shim is gone has stopped.
pub(crate) fn effective_status(rec: &ContainerRecord) -> Status {
    match rec.status {
        Status::Stopped => Status::Stopped,
        s if rec.shim.is_some_and(|p| p.alive()) => s,
        _ => Status::Stopped,
    }
}

fn load(rt: &Runtime, id: &str) -> Result<(ContainerRecord, SandboxRecord)> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    Ok((rec, sb))
}

fn agent(rt: &Runtime, sb: &SandboxRecord) -> Result<AgentClient> {
    Ok(AgentClient::connect(&sb.proxy_socket, rt.call_timeout())?)
}

pub fn state(rt: &Runtime, id: &str) -> Result<OciState> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
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

pub(crate) fn to_state(rec: ContainerRecord) -> OciState {
    let status = effective_status(&rec);
    OciState {
        oci_version: "1.0.2".into(),
        id: rec.id.clone(),
        status: status.to_string(),
        pid: match status {
            Status::Stopped => 0,
            _ => rec.shim.map(|p| p.pid).unwrap_or(0),
        },
        rootfs: rec.bundle.join("rootfs"),
        bundle: rec.bundle,
        created: rec.created,
        owner: String::new(),
        annotations: rec.annotations,
    }
}

pub fn start(rt: &Runtime, id: &str) -> Result<()> {
    let (rec, _) = load(rt, id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Exclusive)?;
    let (mut rec, sb) = load(rt, id)?;
    let status = effective_status(&rec);
    if status != Status::Created {
        // runc's words: callers match on them.
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: match status {
                Status::Stopped => "cannot start a container that has stopped",
                Status::Paused => "cannot start a container in the paused state",
                _ => "cannot start an already running container",
            },
        });
    }
    let mut req = msg::StartContainerRequest::new();
    req.container_id = id.into();
    agent(rt, &sb)?.start_container(&req)?;
    rec.status = Status::Running;
    rt.store.save_container(&rec)?;
    if let Some(hooks) = bundle_hooks(&rec) {
        // Failures are warnings (hooks::run): the container is running.
        crate::hooks::run(
            Some(&hooks),
            crate::hooks::Stage::Poststart,
            &to_state(rec.clone()),
        )?;
    }
    log::info!("container {id}: started");
    Ok(())
}

pub fn kill(rt: &Runtime, id: &str, signal: i32, all: bool) -> Result<()> {
    let (rec, _) = load(rt, id)?;
    // Shared: a kill changes no record, and must not wait behind a slow create or delete of
    // another container of the pod.
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    let (rec, sb) = load(rt, id)?;
    let status = effective_status(&rec);
    if status == Status::Stopped && !all {
        return Err(Error::BadState {
            id: id.into(),
            status,
            // runc's words: containerd ignores a kill error only when it says so.
            action: "container not running",
        });
    }
    if status == Status::Stopped {
        return Ok(());
    }
    let agent = agent(rt, &sb)?;
    let stops_pod = rec.sandbox_id == id
        && oci::is_pod_sandbox(&rec.annotations)
        && (signal == libc::SIGKILL || signal == libc::SIGTERM);
    if stops_pod {
        // Stopping a pod's sandbox container stops the pod, as Kata 1.x's StopSandbox did:
        // every member first, then the sandbox container, all with SIGKILL. The VM stays up
        // until the sandbox container is deleted.
        for member in sb.containers.iter().filter(|c| c.as_str() != id) {
            let mut req = msg::SignalProcessRequest::new();
            req.container_id = member.clone();
            req.signal = libc::SIGKILL as u32;
            req.all = true;
            if let Err(e) = agent.signal_process(&req) {
                log::warn!("kill {id}: member {member}: {e}");
            }
        }
    }
    let mut req = msg::SignalProcessRequest::new();
    req.container_id = id.into();
    req.signal = if stops_pod { libc::SIGKILL } else { signal } as u32;
    req.all = all || stops_pod;
    agent.signal_process(&req)?;
    Ok(())
}

pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<()> {
    oci::validate_id(id)?;
    let rec = match rt.store.load_container(id) {
        Ok(r) => r,
        // A corrupt record must not make the container undeletable, nor a missing one when
        // the id's folder exists (a `create` killed before it saved the record).
        Err(store::Error::Corrupt { .. }) if force => return force_remove_corrupt(rt, id),
        Err(store::Error::NotFound(_)) if force && rt.store.exists(id) => {
            return force_remove_corrupt(rt, id)
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
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    let status = effective_status(&rec);
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: "cannot delete a container that is not stopped (use --force)",
        });
    }
    let agent = agent(rt, &sb)
        .inspect_err(|e| log::warn!("delete {id}: {e}"))
        .ok();
    if rec.sandbox_id == id {
        // The sandbox container takes the whole pod with it: members first, then the VM.
        for member in sb.containers.iter().filter(|c| c.as_str() != id) {
            match rt.store.load_container(member) {
                Ok(m) => {
                    teardown_one(agent.as_ref(), &m);
                    forget_one(rt, m);
                }
                Err(e) => log::warn!("delete {id}: member {member}: {e}"),
            }
        }
        teardown_one(agent.as_ref(), &rec);
        // The records go last: a delete that dies half-way can be run again.
        stop_sandbox(rt, &sb, agent.as_ref());
        forget_one(rt, rec);
    } else {
        teardown_one(agent.as_ref(), &rec);
        // The agent has unmounted it: the disk can leave the running VM.
        for disk in rec.block_rootfs.iter().chain(rec.block_volumes.iter()) {
            crate::blockdev::unplug(&sb.vm_dir, disk, rt.call_timeout());
        }
        forget_one(rt, rec);
        let mut sb = sb;
        sb.containers.retain(|c| c != id);
        rt.store.save_sandbox(&sb)?;
    }
    log::info!("container {id}: deleted");
    Ok(())
}

/// Stops one container of a sandbox whose lock the caller holds exclusively: its processes
/// (killed if still running), its guest side, its shim, its shared rootfs.
fn teardown_one(agent: Option<&AgentClient>, rec: &ContainerRecord) {
    let id = rec.id.clone();
    let status = effective_status(rec);
    if let Some(a) = agent {
        if status != Status::Stopped {
            let mut req = msg::SignalProcessRequest::new();
            req.container_id = id.clone();
            req.signal = libc::SIGKILL as u32;
            req.all = true;
            if let Err(e) = a.signal_process(&req) {
                log::warn!("delete {id}: {e}");
            }
        }
        let mut req = msg::RemoveContainerRequest::new();
        req.container_id = id.clone();
        req.timeout = 5;
        if let Err(e) = a.remove_container(&req) {
            log::warn!("delete {id}: {e}");
        }
    }
    if let Some(shim) = &rec.shim {
        // The shim exits once its process has; if the VM is gone it may be stuck.
        if !procs::wait_gone(shim, Duration::from_secs(3)) {
            procs::stop_process(shim, Duration::from_secs(1));
        }
    }
    share::unshare_container(&rec.rootfs_mount);
}

/// Removes a torn-down container's record, then runs its poststop hooks.
fn forget_one(rt: &Runtime, rec: ContainerRecord) {
    let id = rec.id.clone();
    let hooks = bundle_hooks(&rec);
    let mut final_state = to_state(rec);
    final_state.status = Status::Stopped.to_string();
    if let Err(e) = rt.store.remove(&id) {
        log::warn!("delete {id}: {e}");
    }
    if let Err(e) = crate::hooks::run(hooks.as_ref(), crate::hooks::Stage::Poststop, &final_state) {
        log::warn!("container {id}: {e}");
    }
}

/// Tears the sandbox's VM down: agent, QEMU, proxy, folders.
fn stop_sandbox(rt: &Runtime, sb: &SandboxRecord, agent: Option<&AgentClient>) {
    if let Some(a) = agent {
        if let Err(e) = a.destroy_sandbox(&msg::DestroySandboxRequest::new()) {
            log::warn!("sandbox {}: {e}", sb.id);
        }
    }
    match serde_json::from_value::<QemuState>(sb.hypervisor.clone()) {
        Ok(state) => {
            if let Err(e) = Qemu::from_state(state).stop() {
                log::warn!("sandbox {}: stopping the VM: {e}", sb.id);
            }
        }
        Err(e) => log::warn!("sandbox {}: unreadable hypervisor state: {e}", sb.id),
    }
    if let Some(proxy) = sb.proxy {
        // It exits by itself when the VM goes away; make sure.
        if !procs::wait_gone(&proxy, Duration::from_secs(2)) {
            procs::stop_process(&proxy, Duration::from_secs(2));
        }
    }
    crate::portforward::stop(
        &sb.id,
        sb.port_forwarder.as_ref(),
        crate::network::recorded_netns(&sb.network).as_deref(),
    );
    // After QEMU: its taps must be closed before they are removed.
    crate::network::teardown(&sb.id, &sb.network);
    for dir in [&sb.shared_dir, &sb.vm_dir] {
        share::unmount_tree(dir);
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("removing {}: {e}", dir.display());
            }
        }
    }
    let _ = rt;
}

/// `delete --force` of a container whose record cannot be read or was never written: remove
/// what its id names, processes included.
fn force_remove_corrupt(rt: &Runtime, id: &str) -> Result<()> {
    log::warn!("container {id}: state is missing or corrupt; removing what can be found");
    if let Ok(sb) = rt.store.load_sandbox(id) {
        stop_sandbox(rt, &sb, None);
    }
    let (shared_dir, vm_dir) = (rt.shared_dir(id), rt.vm_dir(id));
    // A VM taken from the factory's cache: its processes name the folders it was booted in.
    let origin = crate::factory::origin_dirs(&vm_dir);
    let mut dirs: Vec<&std::path::Path> = vec![&vm_dir, &shared_dir];
    dirs.extend(origin.iter().map(|d| d.as_path()));
    if procs::kill_orphans(&dirs) > 0 || vm_dir.exists() {
        // The taps and filters a killed create made in the pod's namespace (QEMU, which
        // held the taps, is gone now), and the port forwarder's rule.
        let progress = crate::network::recorded_progress(&vm_dir);
        crate::portforward::stop(
            id,
            None,
            crate::network::recorded_netns(&progress).as_deref(),
        );
        crate::network::teardown(id, &progress);
    }
    for dir in origin.iter().chain([&shared_dir, &vm_dir]) {
        share::unmount_tree(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    rt.store.remove(id)?;
    Ok(())
}

/// `pause` (`frozen`) and `resume`: the container's guest cgroup freezer.
pub fn set_paused(rt: &Runtime, id: &str, frozen: bool) -> Result<()> {
    let (rec, _) = load(rt, id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Exclusive)?;
    let (mut rec, sb) = load(rt, id)?;
    let status = effective_status(&rec);
    // runc's words for both refusals.
    let (from, to, action) = if frozen {
        (Status::Running, Status::Paused, "container not running")
    } else {
        (Status::Paused, Status::Running, "container not paused")
    };
    if status != from {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action,
        });
    }
    let agent = agent(rt, &sb)?;
    if frozen {
        let mut req = msg::PauseContainerRequest::new();
        req.container_id = id.into();
        agent.pause_container(&req)?;
    } else {
        let mut req = msg::ResumeContainerRequest::new();
        req.container_id = id.into();
        agent.resume_container(&req)?;
    }
    rec.status = to;
    rt.store.save_container(&rec)?;
    Ok(())
}

/// `ps`: the container's processes. The table is the guest's view (pid and command line).
/// The json list holds host pids, as every pid the runtime hands out (`state`, `--pid-file`):
/// those of the kata-shims standing for the container's process and its execs. Callers look
/// these pids up on the host (`docker top` runs the host's `ps` and keeps the listed pids;
/// containerd's shims match them with the execs' pid files): a guest pid there would name
/// whatever unrelated host process has that number.
pub fn ps(rt: &Runtime, id: &str, format: &str) -> Result<Vec<u8>> {
    let (rec, _) = load(rt, id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    let agent = running_agent(rt, id, "a stopped container has no processes")?;
    if format == "json" {
        let pids = crate::procs::shims_of(&rec.sandbox_id, id);
        return serde_json::to_vec(&pids).map_err(|e| Error::Unsupported(format!("ps json: {e}")));
    }
    let mut req = msg::ListProcessesRequest::new();
    req.container_id = id.into();
    req.format = format.into();
    Ok(agent.list_processes(&req)?.process_list)
}

pub(crate) fn running_agent(rt: &Runtime, id: &str, what: &'static str) -> Result<AgentClient> {
    let (rec, sb) = load(rt, id)?;
    let status = effective_status(&rec);
    if status == Status::Stopped {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: what,
        });
    }
    agent(rt, &sb)
}

/// `update`: new resource limits for the container's cgroup in the guest.
pub fn update(rt: &Runtime, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let (rec, _) = load(rt, id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    // runc's words.
    let agent = running_agent(rt, id, "container not running")?;
    let mut req = msg::UpdateContainerRequest::new();
    req.container_id = id.into();
    req.resources_json =
        serde_json::to_vec(resources).map_err(|e| Error::Unsupported(format!("resources: {e}")))?;
    agent.update_container(&req)?;
    crate::resize::grow_for(rt, &rec.sandbox_id, &agent, resources);
    Ok(())
}

/// The container's statistics from its guest cgroup, shaped as runc's `events --stats` data.
/// How many processes the guest's OOM killer has killed in the container's cgroup, asked of the
/// agent while the sandbox's VM runs, whether the container still runs or not (its cgroup
/// lives until delete): `events` turns a rise into runc's `oom` event.
pub fn oom_kills(rt: &Runtime, id: &str) -> Result<u64> {
    let (_, sb) = load(rt, id)?;
    let mut req = msg::StatsContainerRequest::new();
    req.container_id = id.into();
    let resp = agent(rt, &sb)?.stats_container(&req)?;
    Ok(resp
        .cgroup_stats
        .memory_stats
        .stats
        .get(OOM_KILL_KEY)
        .copied()
        .unwrap_or(0))
}

/// Must equal the agent's key (pkg/guest cgroup.rs).
const OOM_KILL_KEY: &str = "oom_kill";

pub fn stats(rt: &Runtime, id: &str) -> Result<serde_json::Value> {
    let (rec, _) = load(rt, id)?;
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    let agent = running_agent(rt, id, "a stopped container has no statistics")?;
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    let mut req = msg::StatsContainerRequest::new();
    req.container_id = id.into();
    let resp = agent.stats_container(&req)?;
    let s = resp.cgroup_stats.clone().unwrap_or_default();
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let usage = cpu.cpu_usage.clone().unwrap_or_default();
    let thr = cpu.throttling_data.clone().unwrap_or_default();
    let mem = s.memory_stats.clone().unwrap_or_default();
    let mu = mem.usage.clone().unwrap_or_default();
    let pids = s.pids_stats.clone().unwrap_or_default();
    let blkio = s.blkio_stats.clone().unwrap_or_default();
    let blk_entries = |entries: &[msg::BlkioStatsEntry]| -> Vec<serde_json::Value> {
        entries
            .iter()
            .map(|e| serde_json::json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect()
    };
    let interfaces: Vec<serde_json::Value> = resp
        .network_stats
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped,
            })
        })
        .collect();
    // Every shim of the sandbox: the VM and its helpers are shared by its containers, so
    // the overhead is the sandbox's, not this container's.
    let shims: Vec<(String, store::ProcessRef)> = sb
        .containers
        .iter()
        .filter_map(|c| {
            let r = rt.store.load_container(c).ok()?;
            Some((r.id, r.shim?))
        })
        .collect();
    let overhead = crate::overhead::measure(&sb, &shims);
    Ok(serde_json::json!({
        "cpu": {
            "usage": {
                "total": usage.total_usage,
                "percpu": usage.percpu_usage,
                "kernel": usage.usage_in_kernelmode,
                "user": usage.usage_in_usermode,
            },
            "throttling": {
                "periods": thr.periods,
                "throttledPeriods": thr.throttled_periods,
                "throttledTime": thr.throttled_time,
            },
        },
        "memory": {
            "cache": mem.cache,
            "usage": {"usage": mu.usage, "max": mu.max_usage, "limit": mu.limit, "failcnt": mu.failcnt},
            "raw": mem.stats,
        },
        "pids": {"current": pids.current, "limit": pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blk_entries(&blkio.io_service_bytes_recursive),
            "ioServicedRecursive": blk_entries(&blkio.io_serviced_recursive),
        },
        "hugetlb": {},
        "network_interfaces": interfaces,
        // Not part of runc's stats: what the sandbox costs the host (QEMU, virtiofsd, proxy,
        // shims), measured on the host, apart from the container's own usage above.
        "sandbox_host_overhead": {
            "sandbox": sb.id,
            "processes": overhead.processes,
            "total_cpu_ns": overhead.total_cpu_ns,
            "total_rss_bytes": overhead.total_rss_bytes,
            "total_pss_bytes": overhead.total_pss_bytes,
        },
    }))
}

/// The hooks of the container's bundle, if the bundle is still there to say.
fn bundle_hooks(rec: &ContainerRecord) -> Option<oci_spec::runtime::Hooks> {
    oci::Bundle::load(&rec.bundle).ok()?.spec.hooks().clone()
}

//! `create` of a pod member: a container whose annotations name an existing sandbox joins that
//! sandbox's VM instead of booting one. Its rootfs is shared into the running VM, the agent
//! creates it next to the sandbox container, sharing the namespaces its spec shares with the
//! sandbox (ipc, uts, pid: rewritten to the guest paths where the agent published them), and
//! the sandbox's record lists it. The whole addition runs under the sandbox's exclusive lock,
//! which no VM boot ever holds (a new sandbox locks only itself).

use crate::create::{add_container, publish, CreateOptions, Created, Target};
use crate::lifecycle::effective_status;
use crate::rollback::Rollback;
use crate::{Error, Result, Runtime};
use agent_client::AgentClient;
use hypervisor::{Hypervisor, Qemu, QemuState};
use oci::Bundle;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::path::Path;
use std::time::Instant;
use store::{LockMode, SandboxRecord, Status};

pub fn create(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    sandbox_id: &str,
    started: Instant,
) -> Result<Created> {
    let id = opts.id;
    if sandbox_id == id {
        return Err(refused(
            id,
            sandbox_id,
            "a container cannot be its own sandbox",
        ));
    }
    crate::namespaces::refuse_host_pid(&bundle.spec)?;
    let shim_bin = rt.config.shim_path()?;
    let mut undo = Rollback::new();
    rt.store.claim(id)?;
    {
        let store = rt.store.clone();
        let id = id.to_string();
        undo.push("remove state folder", move || {
            let _ = store.remove(&id);
        });
    }
    let sb = running_sandbox(rt, id, sandbox_id)?;
    let _lock = rt.store.lock(sandbox_id, LockMode::Exclusive)?;
    // Re-read under the lock: the sandbox may have been deleted meanwhile.
    let sb = running_sandbox(rt, id, sandbox_id).map(|_| sb)?;
    let agent = AgentClient::connect(&sb.proxy_socket, rt.call_timeout())?;
    let debug = rt.config.hypervisor.qemu.enable_debug || rt.config.agent.kata.enable_debug;
    let vm = serde_json::from_value::<QemuState>(sb.hypervisor.clone())
        .map_err(|e| Error::Unsupported(format!("sandbox {sandbox_id}: hypervisor state: {e}")))?
        .config;
    let target = Target {
        sandbox_id,
        vm_dir: &sb.vm_dir,
        shared_dir: &sb.shared_dir,
        proxy_socket: &sb.proxy_socket,
        shim_bin: &shim_bin,
        debug,
        vm: &vm,
        used_ports: crate::blockdev::used_ports(rt, Some(&sb)),
    };
    let (shim, record) = add_container(
        rt,
        opts,
        bundle,
        &target,
        &agent,
        &mut undo,
        share_sandbox_namespaces,
    )?;
    let mut sb = rt.store.load_sandbox(sandbox_id)?;
    sb.containers.push(id.into());
    rt.store.save_sandbox(&sb)?;
    {
        let store = rt.store.clone();
        let (sid, cid) = (sandbox_id.to_string(), id.to_string());
        undo.push("unlist from the sandbox", move || {
            if let Ok(mut sb) = store.load_sandbox(&sid) {
                sb.containers.retain(|c| *c != cid);
                let _ = store.save_sandbox(&sb);
            }
        });
    }
    publish(rt, opts, bundle, record, &shim)?;
    undo.disarm();
    if let Some(resources) = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
    {
        crate::resize::grow_for_member(rt, sandbox_id, &agent, resources);
    }
    log::info!(
        "container {id}: created in sandbox {sandbox_id} in {:?}",
        started.elapsed()
    );
    Ok(Created { shim })
}

fn refused(id: &str, sandbox_id: &str, reason: &str) -> Error {
    Error::Unsupported(format!(
        "container {id} cannot join sandbox {sandbox_id}: {reason}"
    ))
}

/// The sandbox's record, if `sandbox_id` names a sandbox whose sandbox container and VM are
/// alive.
fn running_sandbox(rt: &Runtime, id: &str, sandbox_id: &str) -> Result<SandboxRecord> {
    let sb = match rt.store.load_sandbox(sandbox_id) {
        Ok(sb) => sb,
        Err(store::Error::NotFound(_)) => {
            let reason = match rt.store.load_container(sandbox_id) {
                Ok(other) => format!(
                    "{sandbox_id} is a member of sandbox {}, not a sandbox",
                    other.sandbox_id
                ),
                Err(_) => "no such sandbox".to_string(),
            };
            return Err(refused(id, sandbox_id, &reason));
        }
        Err(e) => return Err(e.into()),
    };
    let owner = rt.store.load_container(sandbox_id)?;
    if effective_status(&owner) == Status::Stopped {
        return Err(refused(id, sandbox_id, "the sandbox container is stopped"));
    }
    let vm_alive = serde_json::from_value::<QemuState>(sb.hypervisor.clone())
        .map(|s| Qemu::from_state(s).is_running())
        .unwrap_or(false);
    if !vm_alive {
        return Err(refused(id, sandbox_id, "the sandbox's VM is not running"));
    }
    Ok(sb)
}

/// The sandbox a container without pod annotations joins because its spec names another
/// container's namespace by that container's pid: Docker's `--network container:<other>` (and
/// `--ipc`/`--pid container:<other>`) give `/proc/<pid>/ns/<type>` with the pid the runtime
/// reported for the other container, which is the host pid of its kata-shim. A VM container's
/// namespaces live in its VM, so sharing one means running in that VM. Only a live kata-shim of
/// a container of this state root counts; any other path is left to the host-namespace checks.
pub(crate) fn sandbox_named_by_pid(rt: &Runtime, spec: &Spec) -> Option<String> {
    let namespaces = spec.linux().as_ref()?.namespaces().clone()?;
    let pids: Vec<i32> = namespaces
        .iter()
        .filter_map(|ns| proc_pid_of(ns.path().as_deref()?))
        .collect();
    if pids.is_empty() {
        return None;
    }
    rt.store.list().into_iter().find_map(|cid| {
        let rec = rt.store.load_container(&cid).ok()?;
        let shim = rec.shim.as_ref()?;
        (pids.contains(&shim.pid) && shim.alive()).then(|| rec.sandbox_id.clone())
    })
}

/// The pid of a `/proc/<pid>/ns/<type>` path.
fn proc_pid_of(path: &Path) -> Option<i32> {
    let mut parts = path.strip_prefix("/proc").ok()?.components();
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "ns" && parts.next().is_some() && parts.next().is_none())
        .then_some(pid)
}

/// CRI gives a member the host paths of its sandbox's namespaces (`/proc/<pause>/ns/ipc`):
/// in the guest those become the agent's published sandbox namespaces. Other paths (the
/// network one: the VM's network is the pod's) are dropped.
pub(crate) fn share_sandbox_namespaces(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut namespaces) = linux.namespaces().clone() else {
        return;
    };
    for ns in namespaces.iter_mut() {
        let has_path = ns
            .path()
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty());
        if !has_path {
            continue;
        }
        let shared = match ns.typ() {
            LinuxNamespaceType::Ipc => Some("ipc"),
            LinuxNamespaceType::Uts => Some("uts"),
            LinuxNamespaceType::Pid => Some("pid"),
            _ => None,
        };
        ns.set_path(shared.map(|name| Path::new(protocols::SANDBOX_NS_DIR).join(name)));
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn proc_pid_paths() {
        assert_eq!(proc_pid_of(Path::new("/proc/42/ns/net")), Some(42));
        assert_eq!(proc_pid_of(Path::new("/proc/self/ns/net")), None);
        assert_eq!(proc_pid_of(Path::new("/proc/42/ns")), None);
        assert_eq!(proc_pid_of(Path::new("/proc/42/task/43/ns/net")), None);
        assert_eq!(proc_pid_of(Path::new("/var/run/netns/cni-1")), None);
    }

    #[test]
    fn cri_namespace_paths_become_the_sandbox_ones() {
        let mut spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"ipc","path":"/proc/42/ns/ipc"},
                {"type":"uts","path":"/proc/42/ns/uts"},
                {"type":"network","path":"/var/run/netns/cni-1"},
                {"type":"pid"},
                {"type":"mount"}]}}"#,
        )
        .unwrap();
        share_sandbox_namespaces(&mut spec);
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let path = |i: usize| ns[i].path().clone();
        assert_eq!(
            path(0),
            Some(PathBuf::from("/run/kata-containers/sandbox/ns/ipc"))
        );
        assert_eq!(
            path(1),
            Some(PathBuf::from("/run/kata-containers/sandbox/ns/uts"))
        );
        assert_eq!(path(2), None);
        assert_eq!(path(3), None);
    }
}

//! A sandbox: one VM, the agent in it, the folder shared into it and the pod's network, and
//! the containers that run there. Both front ends drive it: the v1 CLI loads one from its
//! records for each verb and saves it after; the shim v2 keeps one in memory for the pod's
//! life. Nothing here knows which front end calls, nor what stands on the host for a
//! container's processes (a kata-shim, or the shim v2's own threads).

use crate::rollback::Rollback;
use crate::share;
use crate::state::effective_status;
use crate::vm::{AgentLink, RunningVm};
use crate::{Error, Result, Runtime};
use agent_client::{messages as msg, AgentClient};
use hypervisor::{Hypervisor, Qemu, QemuState, VmConfig};
use oci::Bundle;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use store::{ContainerRecord, SandboxRecord, Status};

pub struct Sandbox {
    rt: Runtime,
    record: SandboxRecord,
    /// The VM's configuration, for device hot-plug.
    vm: VmConfig,
    /// Connected on first use: a verb that only reads records never dials the agent.
    agent: OnceLock<AgentClient>,
}

impl Sandbox {
    /// A new sandbox named `id` for the container of `bundle`: folders, the pod's network, a VM
    /// (from the factory's cache when one fits, else booted) with `link` to its agent, the
    /// agent's CreateSandbox. Everything made is undone by `undo` if a later step fails. The
    /// sandbox has no container yet and is not saved.
    pub fn boot(
        rt: &Runtime,
        id: &str,
        bundle: &Bundle,
        link: &dyn AgentLink,
        undo: &mut Rollback,
    ) -> Result<Sandbox> {
        let started = Instant::now();
        crate::namespaces::check_paths(&bundle.spec)?;
        crate::namespaces::refuse_host_namespaces(&bundle.spec)?;
        let netns_plan = crate::network::plan(&bundle.spec)?;
        let net_model = crate::network::model(&rt.config.runtime.internetworking_model)?;
        let vm_dir = rt.vm_dir(id);
        let shared_dir = rt.shared_dir(id);
        // The VM folder (sockets: QMP, agent channel, proxy; logs) is the owner's alone. The
        // shared folder is the guest's view of the rootfs: a container in a user namespace (a
        // non-root uid in the guest) must be able to pass through it, though not list it.
        // Leftovers of a crashed earlier sandbox with this id: the caller claimed the id, so
        // nothing owns them.
        share::fresh_dir(&vm_dir, 0o700, undo)?;
        share::fresh_dir(&shared_dir, 0o711, undo)?;
        share::prepare_shared_dir(&shared_dir)?;
        let mut vm = crate::vm::vm_config(rt, id, &vm_dir, &shared_dir)?;
        // Root ports for the container's disks plus headroom for members (a VM of other
        // sizes than the factory's boots its own).
        vm.hotplug_root_ports = crate::blockdev::root_ports_for(
            id,
            crate::blockdev::disks_needed(rt, id, bundle),
            vm.hotplug_root_ports,
        )?;
        let mut net = crate::network::setup(
            &netns_plan,
            net_model,
            crate::network::PhysicalNics::from_config(&rt.config),
            &vm_dir,
            undo,
        )?;
        let shared_storage = crate::vm::shared_fs_storage(&vm.shared_fs);
        // A VM from the factory's cache when one fits (same VM settings, NICs it can
        // hot-plug); otherwise this sandbox boots its own.
        let cached = match net.endpoints.iter().all(crate::network::hotpluggable) {
            true => crate::factory::take(rt, &vm),
            false => None,
        };
        let running = match cached {
            Some(cached) => crate::factory::adopt(rt, cached, id, &vm_dir, &mut net, undo)?,
            None => {
                vm.netns = net.netns.clone();
                vm.net_devices = net.endpoints.iter().map(|e| e.device.clone()).collect();
                vm.vhost_net = !vm.net_devices.is_empty() && crate::network::vhost_net_usable();
                crate::vm::boot_vm(rt, vm, id, link, undo)?
            }
        };
        let RunningVm {
            qemu,
            link,
            shared_dir,
            booted,
        } = running;
        let qemu_state = qemu
            .state()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| Error::Unsupported(format!("hypervisor state: {e}")))?
            .unwrap_or_default();
        let agent = AgentClient::wait_ready(&link.socket, rt.dial_timeout(), rt.call_timeout())?;
        match booted {
            Some(vm_started) => log::info!(
                "sandbox {id}: agent ready {:.3}s after QEMU start ({:.3}s after create began)",
                vm_started.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64()
            ),
            None => log::info!(
                "sandbox {id}: cached VM's agent ready {:.3}s after create began",
                started.elapsed().as_secs_f64()
            ),
        }
        let mut req = msg::CreateSandboxRequest::new();
        req.sandbox_id = id.into();
        req.hostname = bundle.spec.hostname().clone().unwrap_or_default();
        req.storages = vec![shared_storage];
        agent.create_sandbox(&req)?;
        crate::network::configure_guest(&agent, &net)?;
        let record = SandboxRecord {
            id: id.into(),
            vm_dir,
            shared_dir,
            hypervisor: qemu_state,
            proxy: link.process,
            proxy_socket: link.socket,
            containers: Vec::new(),
            network: serde_json::to_value(&net)
                .map_err(|e| Error::Unsupported(format!("network state: {e}")))?,
            port_forwarder: None,
        };
        Ok(Sandbox {
            rt: rt.clone(),
            vm: qemu.config().clone(),
            record,
            agent: OnceLock::from(agent),
        })
    }

    /// The sandbox of `record` as its records say (its agent is dialled on first use).
    pub fn from_record(rt: &Runtime, record: SandboxRecord) -> Result<Sandbox> {
        let vm = serde_json::from_value::<QemuState>(record.hypervisor.clone())
            .map_err(|e| {
                Error::Unsupported(format!("sandbox {}: hypervisor state: {e}", record.id))
            })?
            .config;
        Ok(Sandbox {
            rt: rt.clone(),
            record,
            vm,
            agent: OnceLock::new(),
        })
    }

    /// The sandbox `sandbox_id` from the store.
    pub fn load(rt: &Runtime, sandbox_id: &str) -> Result<Sandbox> {
        Self::from_record(rt, rt.store.load_sandbox(sandbox_id)?)
    }

    /// The sandbox `sandbox_id` that container `joining` is to join: refused with one line
    /// unless it is a sandbox whose sandbox container and VM are alive.
    pub fn load_running(rt: &Runtime, joining: &str, sandbox_id: &str) -> Result<Sandbox> {
        let refused = |reason: &str| {
            Error::Unsupported(format!(
                "container {joining} cannot join sandbox {sandbox_id}: {reason}"
            ))
        };
        let record = match rt.store.load_sandbox(sandbox_id) {
            Ok(sb) => sb,
            Err(store::Error::NotFound(_)) => {
                let reason = match rt.store.load_container(sandbox_id) {
                    Ok(other) => format!(
                        "{sandbox_id} is a member of sandbox {}, not a sandbox",
                        other.sandbox_id
                    ),
                    Err(_) => "no such sandbox".to_string(),
                };
                return Err(refused(&reason));
            }
            Err(e) => return Err(e.into()),
        };
        let owner = rt.store.load_container(sandbox_id)?;
        if effective_status(&owner) == Status::Stopped {
            return Err(refused("the sandbox container is stopped"));
        }
        let sandbox = Self::from_record(rt, record)?;
        if !sandbox.vm_alive() {
            return Err(refused("the sandbox's VM is not running"));
        }
        Ok(sandbox)
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn record(&self) -> &SandboxRecord {
        &self.record
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub fn vm_dir(&self) -> &Path {
        &self.record.vm_dir
    }

    /// The socket every connection to the agent is dialled on.
    pub fn agent_socket(&self) -> &Path {
        &self.record.proxy_socket
    }

    /// Whether the VM's QEMU still runs.
    pub fn vm_alive(&self) -> bool {
        serde_json::from_value::<QemuState>(self.record.hypervisor.clone())
            .map(|s| Qemu::from_state(s).is_running())
            .unwrap_or(false)
    }

    /// QEMU's host pid, while it runs.
    pub fn vm_pid(&self) -> Option<i32> {
        serde_json::from_value::<QemuState>(self.record.hypervisor.clone())
            .ok()
            .map(|s| s.pid)
            .filter(|_| self.vm_alive())
    }

    /// Unlists container `id` (a creation that failed after `add_container`; its undo has
    /// removed the rest).
    pub fn forget_member(&mut self, id: &str) {
        self.record.containers.retain(|c| c != id);
    }

    /// The sandbox's agent connection (dialled on first use).
    pub fn agent(&self) -> Result<&AgentClient> {
        if let Some(agent) = self.agent.get() {
            return Ok(agent);
        }
        let agent = AgentClient::connect(&self.record.proxy_socket, self.rt.call_timeout())?;
        Ok(self.agent.get_or_init(|| agent))
    }

    pub fn save(&self) -> Result<()> {
        Ok(self.rt.store.save_sandbox(&self.record)?)
    }

    /// The ids of its containers, the sandbox's own first.
    pub fn container_ids(&self) -> &[String] {
        &self.record.containers
    }

    /// Adds container `id` of `bundle` to the running VM: its rootfs and bind mounts shared
    /// into the VM (or its block devices hot-plugged), the agent's CreateContainer with
    /// `edit_spec` applied to the guest spec first. The container waits in the guest for
    /// `start`. The sandbox lists it (save the sandbox to keep that); the container's record
    /// is returned, not yet saved, without a stand-in: the front end puts in what stands for
    /// the container's process on the host.
    pub fn add_container(
        &mut self,
        id: &str,
        bundle: &Bundle,
        undo: &mut Rollback,
        edit_spec: impl FnOnce(&mut oci_spec::runtime::Spec),
    ) -> Result<ContainerRecord> {
        let rt = &self.rt;
        let used_ports = crate::blockdev::used_ports(rt, Some(&self.record));
        let guest = crate::guest_container::create(
            rt,
            id,
            bundle,
            &crate::guest_container::Target {
                vm_dir: &self.record.vm_dir,
                shared_dir: &self.record.shared_dir,
                agent_socket: &self.record.proxy_socket,
                vm: &self.vm,
                used_ports,
            },
            self.agent()?,
            undo,
            edit_spec,
        )?;
        self.record.containers.push(id.into());
        Ok(ContainerRecord {
            id: id.into(),
            sandbox_id: self.record.id.clone(),
            bundle: bundle.path.clone(),
            status: Status::Created,
            shim: None,
            rootfs_mount: guest.share_base,
            created: sandbox_log::now(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            block_rootfs: guest.block_rootfs,
            block_volumes: guest.block_volumes,
        })
    }

    /// Removes a member (not the sandbox's own container) from the running sandbox: its
    /// processes, its guest side, its disks, its record; then poststop hooks. Save the sandbox
    /// after.
    pub fn remove_member(
        &mut self,
        record: ContainerRecord,
        stand_in_gone: &dyn Fn(&ContainerRecord),
    ) {
        let id = record.id.clone();
        let agent = self
            .agent()
            .inspect_err(|e| log::warn!("delete {id}: {e}"))
            .ok();
        teardown_one(agent, &record, stand_in_gone);
        // The agent has unmounted it: the disk can leave the running VM.
        for disk in record
            .block_rootfs
            .iter()
            .chain(record.block_volumes.iter())
        {
            crate::blockdev::unplug(&self.record.vm_dir, disk, self.rt.call_timeout());
        }
        forget_one(&self.rt, record);
        self.record.containers.retain(|c| *c != id);
    }

    /// Tears the whole sandbox down: every member, then its own container, then the VM,
    /// its link, its network and its folders; the records go last, so a teardown that dies
    /// half-way can be run again.
    pub fn destroy(self, stand_in_gone: &dyn Fn(&ContainerRecord)) {
        let id = self.record.id.clone();
        let agent = self
            .agent()
            .inspect_err(|e| log::warn!("delete {id}: {e}"))
            .ok();
        let mut own = None;
        for cid in &self.record.containers {
            match self.rt.store.load_container(cid) {
                Ok(rec) if *cid == id => own = Some(rec),
                Ok(rec) => {
                    teardown_one(agent, &rec, stand_in_gone);
                    forget_one(&self.rt, rec);
                }
                Err(e) => log::warn!("delete {id}: member {cid}: {e}"),
            }
        }
        if let Some(rec) = &own {
            teardown_one(agent, rec, stand_in_gone);
        }
        stop_sandbox(&self.record, agent);
        if let Some(rec) = own {
            forget_one(&self.rt, rec);
        }
    }

    /// The VM grows for a container's limits (Kata 1.x sized the sandbox by its containers):
    /// the defaults plus what `resources` ask (`update`, the first container), or, for a
    /// member joining, by what they ask.
    pub fn grow_for(&self, resources: &oci_spec::runtime::LinuxResources, member: bool) {
        let Ok(agent) = self.agent() else { return };
        if member {
            crate::resize::grow_for_member(&self.rt, &self.record.id, agent, resources);
        } else {
            crate::resize::grow_for(&self.rt, &self.record.id, agent, resources);
        }
    }

    /// CRI port-forward for the pod: `exe port-forward` started in the pod's network
    /// namespace. Best effort: a pod without it still runs.
    pub fn start_port_forwarder(&mut self, undo: &mut Rollback) {
        let id = self.record.id.clone();
        let Some(ns) = crate::network::recorded_netns(&self.record.network) else {
            return;
        };
        match crate::portforward::start(&self.rt, &id, &ns, &self.record.vm_dir) {
            Ok(p) => {
                undo.push("stop port forwarder", move || {
                    crate::portforward::stop(&id, Some(&p), Some(&ns))
                });
                self.record.port_forwarder = Some(p);
            }
            Err(e) => log::warn!("sandbox {id}: no port-forward: {e}"),
        }
    }
}

/// Stops one container of a sandbox: its processes (killed if still running), its guest side,
/// what stands for it on the host (`stand_in_gone` waits for or stops it), its shared rootfs.
fn teardown_one(
    agent: Option<&AgentClient>,
    rec: &ContainerRecord,
    stand_in_gone: &dyn Fn(&ContainerRecord),
) {
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
    stand_in_gone(rec);
    share::unshare_container(&rec.rootfs_mount);
}

/// Removes a torn-down container's record, then runs its poststop hooks.
fn forget_one(rt: &Runtime, rec: ContainerRecord) {
    let id = rec.id.clone();
    let hooks = crate::state::bundle_hooks(&rec);
    let mut final_state = crate::state::to_state(rec);
    final_state.status = Status::Stopped.to_string();
    if let Err(e) = rt.store.remove(&id) {
        log::warn!("delete {id}: {e}");
    }
    if let Err(e) = crate::hooks::run(hooks.as_ref(), crate::hooks::Stage::Poststop, &final_state) {
        log::warn!("container {id}: {e}");
    }
}

/// Tears the sandbox's VM down: agent, QEMU, proxy, port forwarder, network, folders.
pub(crate) fn stop_sandbox(sb: &SandboxRecord, agent: Option<&AgentClient>) {
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
        if !crate::procs::wait_gone(&proxy, Duration::from_secs(2)) {
            crate::procs::stop_process(&proxy, Duration::from_secs(2));
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
}

/// Removes whatever the id `id` names when its record cannot be read or was never written (a
/// create killed half-way, a corrupt file): its sandbox if it has one, processes found by their
/// folders, the network progress a killed create recorded, the folders, the state.
pub fn force_remove(rt: &Runtime, id: &str) -> Result<()> {
    log::warn!("container {id}: state is missing or corrupt; removing what can be found");
    if let Ok(sb) = rt.store.load_sandbox(id) {
        stop_sandbox(&sb, None);
    }
    let (shared_dir, vm_dir) = (rt.shared_dir(id), rt.vm_dir(id));
    // A VM taken from the factory's cache: its processes name the folders it was booted in.
    let origin = crate::factory::origin_dirs(&vm_dir);
    let mut dirs: Vec<&Path> = vec![&vm_dir, &shared_dir];
    dirs.extend(origin.iter().map(|d| d.as_path()));
    if crate::procs::kill_orphans(&dirs) > 0 || vm_dir.exists() {
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

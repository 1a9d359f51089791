//! `create`: from a bundle to a container waiting in its own VM for `start`.

use crate::procs::{self, ProxyArgs, ShimArgs};
use crate::rollback::Rollback;
use crate::share::{self, GUEST_SHARED};
use crate::{Error, Result, Runtime};
use agent_client::{messages as msg, AgentClient};
use hypervisor::{Hypervisor, Qemu, SharedFs, VmConfig, SHARED_FS_MOUNT_TAG};
use oci::{Bundle, ContainerType};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use store::{ContainerRecord, ProcessRef, SandboxRecord, Status};

pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    /// The caller stays attached (run without -d): its own terminal may serve the process.
    pub foreground: bool,
}

/// A created container; `shim` is our child (wait on it in `run`, or just drop it).
pub struct Created {
    pub shim: Child,
}

pub fn create(rt: &Runtime, opts: &CreateOptions) -> Result<Created> {
    let started = Instant::now();
    let id = opts.id;
    oci::validate_id(id)?;
    if rt.store.exists(id) {
        return Err(store::Error::Exists(id.into()).into());
    }
    let bundle = Bundle::load(opts.bundle)?;
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    // Per-pod overrides (`io.katacontainers.config.*`, a safe list only) shape this sandbox;
    // for a member of an existing sandbox they are checked the same way but its VM is made.
    let mut pod_config = rt.config.clone();
    let applied = pod_config.apply_annotations(&annotations)?;
    if !applied.is_empty() {
        log::info!("container {id}: configuration overridden by annotations {applied:?}");
    }
    let rt = &Runtime {
        store: rt.store.clone(),
        config: pod_config,
    };
    let kind = oci::container_type(Some(&annotations))?;
    warn_ignored_fields(id, &bundle.spec);
    let process = bundle.spec.process().as_ref();
    let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
    crate::console::check(terminal, opts.console_socket, opts.foreground)?;
    let driver = &rt.config.hypervisor.qemu.block_device_driver;
    if driver != "virtio-blk" {
        return Err(Error::Unsupported(format!(
            "configuration [hypervisor.qemu] block_device_driver = {driver:?}: only \"virtio-blk\" is supported"
        )));
    }
    if let ContainerType::PodContainer { sandbox_id } = kind {
        // A member's namespace paths name its sandbox's (they become the guest's shared ones).
        return crate::member::create(rt, opts, &bundle, &sandbox_id, started);
    }
    if kind == ContainerType::Sandbox {
        if let Some(sandbox_id) = crate::member::sandbox_named_by_pid(rt, &bundle.spec) {
            log::info!("container {id}: shares namespaces of sandbox {sandbox_id}: joins its VM");
            return crate::member::create(rt, opts, &bundle, &sandbox_id, started);
        }
    }
    crate::namespaces::check_paths(&bundle.spec)?;
    crate::namespaces::refuse_host_namespaces(&bundle.spec)?;
    // Resolve every path before anything is created: a missing piece is reported up front.
    let netns_plan = crate::network::plan(&bundle.spec)?;
    let net_model = crate::network::model(&rt.config.runtime.internetworking_model)?;
    rt.config.proxy_path()?;
    let shim_bin = rt.config.shim_path()?;

    let mut undo = Rollback::new();
    let state_dir = rt.store.claim(id)?;
    {
        let store = rt.store.clone();
        let id = id.to_string();
        undo.push("remove state folder", move || {
            let _ = store.remove(&id);
        });
    }
    let _lock = rt.store.lock(id, store::LockMode::Exclusive)?;

    // A sandbox of its own: the container id names the sandbox.
    let sandbox_id = id;
    let vm_dir = rt.vm_dir(sandbox_id);
    let shared_dir = rt.shared_dir(sandbox_id);
    // The VM folder (sockets: QMP, agent channel, proxy; logs) is the owner's alone. The
    // shared folder is the guest's view of the rootfs: a container in a user namespace (a
    // non-root uid in the guest) must be able to pass through it, though not list it.
    // Leftovers of a crashed earlier sandbox with this id: the state folder we just claimed
    // did not exist, so nothing owns them.
    share::fresh_dir(&vm_dir, 0o700, &mut undo)?;
    share::fresh_dir(&shared_dir, 0o711, &mut undo)?;

    share::prepare_shared_dir(&shared_dir)?;
    let debug = rt.debug();
    let mut vm = vm_config(rt, sandbox_id, &vm_dir, &shared_dir)?;
    // Root ports for the container's disks plus headroom for members (a VM of other sizes
    // than the factory's boots its own).
    vm.hotplug_root_ports = crate::blockdev::root_ports_for(
        id,
        crate::blockdev::disks_needed(rt, id, &bundle),
        vm.hotplug_root_ports,
    )?;
    let net = crate::network::setup(
        &netns_plan,
        net_model,
        crate::network::PhysicalNics::from_config(&rt.config),
        &vm_dir,
        &mut undo,
    )?;
    let shared_storage = shared_fs_storage(&vm.shared_fs);
    // A VM from the factory's cache when one fits (same VM settings, NICs it can hot-plug);
    // otherwise this sandbox boots its own.
    let mut net = net;
    let cached = match net.endpoints.iter().all(crate::network::hotpluggable) {
        true => crate::factory::take(rt, &vm),
        false => None,
    };
    let running = match cached {
        Some(cached) => {
            crate::factory::adopt(rt, cached, sandbox_id, &vm_dir, &mut net, &mut undo)?
        }
        None => {
            vm.netns = net.netns.clone();
            vm.net_devices = net.endpoints.iter().map(|e| e.device.clone()).collect();
            vm.vhost_net = !vm.net_devices.is_empty() && crate::network::vhost_net_usable();
            boot_vm(rt, vm, sandbox_id, &mut undo)?
        }
    };
    let RunningVm {
        qemu,
        proxy,
        shared_dir,
        booted,
    } = running;
    let qemu_state = qemu
        .state()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::Unsupported(format!("hypervisor state: {e}")))?
        .unwrap_or_default();
    let proxy_socket = vm_dir.join(PROXY_SOCKET);
    let agent = AgentClient::wait_ready(&proxy_socket, rt.dial_timeout(), rt.call_timeout())?;
    match booted {
        Some(vm_started) => log::info!(
            "sandbox {sandbox_id}: agent ready {:.3}s after QEMU start ({:.3}s after create began)",
            vm_started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
        None => log::info!(
            "sandbox {sandbox_id}: cached VM's agent ready {:.3}s after create began",
            started.elapsed().as_secs_f64()
        ),
    }
    let mut req = msg::CreateSandboxRequest::new();
    req.sandbox_id = sandbox_id.into();
    req.hostname = bundle.spec.hostname().clone().unwrap_or_default();
    req.storages = vec![shared_storage];
    agent.create_sandbox(&req)?;
    crate::network::configure_guest(&agent, &net)?;

    let target = Target {
        sandbox_id,
        vm_dir: &vm_dir,
        shared_dir: &shared_dir,
        proxy_socket: &proxy_socket,
        shim_bin: &shim_bin,
        debug,
        vm: qemu.config(),
        used_ports: Vec::new(),
    };
    let (shim, record) = add_container(rt, opts, &bundle, &target, &agent, &mut undo, |_| {})?;
    // CRI port-forward: best effort, a pod without it still runs.
    let port_forwarder = net.netns.as_deref().and_then(|ns| {
        match crate::portforward::start(rt, sandbox_id, ns, &vm_dir) {
            Ok(p) => {
                let (id, ns) = (sandbox_id.to_string(), ns.to_path_buf());
                undo.push("stop port forwarder", move || {
                    crate::portforward::stop(&id, Some(&p), Some(&ns))
                });
                Some(p)
            }
            Err(e) => {
                log::warn!("sandbox {sandbox_id}: no port-forward: {e}");
                None
            }
        }
    });
    rt.store.save_sandbox(&SandboxRecord {
        id: sandbox_id.into(),
        vm_dir: vm_dir.clone(),
        shared_dir: shared_dir.clone(),
        hypervisor: qemu_state,
        proxy: Some(proxy),
        proxy_socket: proxy_socket.clone(),
        containers: vec![id.into()],
        network: serde_json::to_value(&net)
            .map_err(|e| Error::Unsupported(format!("network state: {e}")))?,
        port_forwarder,
    })?;
    publish(rt, opts, &bundle, record, &shim)?;
    undo.disarm();
    // The VM grows for the first container's limits as `update` makes it grow (Kata 1.x sized
    // the sandbox by its containers): `docker run --memory 1g` gets a VM with 1 GiB more.
    if let Some(resources) = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
    {
        crate::resize::grow_for(rt, sandbox_id, &agent, resources);
    }
    let _ = state_dir;
    log::info!("container {id}: created in {:?}", started.elapsed());
    Ok(Created { shim })
}

/// The proxy's socket in a VM folder.
pub(crate) const PROXY_SOCKET: &str = "proxy.sock";

/// A sandbox's VM with its proxy, agent answering or about to.
pub(crate) struct RunningVm {
    pub qemu: Qemu,
    pub proxy: ProcessRef,
    /// The folder shared into the guest (a cached VM brings its own).
    pub shared_dir: PathBuf,
    /// When QEMU was started, for a VM booted for this sandbox (None: from the cache).
    pub booted: Option<Instant>,
}

/// Boots `vm` and starts its proxy; both are undone by `undo` if the create fails later.
pub(crate) fn boot_vm(
    rt: &Runtime,
    vm: VmConfig,
    label: &str,
    undo: &mut Rollback,
) -> Result<RunningVm> {
    vm.validate()?;
    let shared_dir = vm.shared_dir.clone();
    let vm_dir = vm.vm_dir.clone();
    let mut qemu = Qemu::new(vm);
    let t0 = Instant::now();
    qemu.start()?;
    log::info!("sandbox {label}: VM started in {:?}", t0.elapsed());
    {
        let state = qemu.state().cloned();
        undo.push("stop VM", move || {
            if let Some(s) = state {
                let _ = Qemu::from_state(s).stop();
            }
        });
    }
    let proxy = procs::start_proxy(
        &ProxyArgs {
            binary: &rt.config.proxy_path()?,
            listen: &vm_dir.join(PROXY_SOCKET),
            mux: &qemu.agent_socket(),
            console: &qemu.console_socket(),
            sandbox_id: label,
            log: &vm_dir.join(sandbox_log::files::PROXY),
            debug: rt.debug(),
        },
        Duration::from_secs(10),
    )?;
    undo.push("stop proxy", move || {
        procs::stop_process(&proxy, Duration::from_secs(2))
    });
    Ok(RunningVm {
        qemu,
        proxy,
        shared_dir,
        booted: Some(t0),
    })
}

/// The VM a new sandbox of this configuration gets, before its network: also what the
/// factory boots for its cache (the two must compare equal to use a cached VM).
pub(crate) fn vm_config(
    rt: &Runtime,
    sandbox_id: &str,
    vm_dir: &Path,
    shared_dir: &Path,
) -> Result<VmConfig> {
    let q = &rt.config.hypervisor.qemu;
    let mut vm = VmConfig::new(
        crate::short_name(sandbox_id),
        vm_dir,
        rt.config.kernel_path()?,
        shared_dir,
    );
    vm.qemu_path = rt.config.qemu_path()?;
    vm.initrd = Some(rt.config.initrd_path()?);
    vm.memory_mib = q.default_memory;
    vm.vcpus = q.default_vcpus;
    vm.max_vcpus = match q.default_maxvcpus {
        0 => crate::resize::host_cpus(),
        n => n,
    };
    vm.memory_slots = q.memory_slots;
    vm.max_memory_mib = match q.default_maxmemory {
        0 => crate::resize::host_memory_mib(),
        n => n,
    };
    vm.machine_type = q.machine_type.clone();
    vm.kernel_params = q
        .kernel_params
        .split_whitespace()
        .map(String::from)
        .collect();
    vm.debug = rt.debug();
    vm.stop_timeout_ms = rt.config.runtime.sandbox_stop_timeout.max(1) * 1000;
    vm.probe_cache_dir = Some(rt.config.runtime.vm_dir.clone());
    vm.tcg_tb_size_mib = q.tcg_tb_size;
    vm.free_page_reporting = q.reclaim_guest_freed_memory;
    vm.accel = match q.accelerator.as_str() {
        "kvm" => hypervisor::Accel::Kvm,
        "tcg" => hypervisor::Accel::Tcg,
        _ => hypervisor::Accel::Auto,
    };
    vm.shared_fs = match q.shared_fs.as_str() {
        "virtio-fs" => SharedFs::VirtioFs {
            daemon: q.virtio_fs_daemon.clone(),
            cache: q.virtio_fs_cache.clone(),
        },
        "virtio-9p" | "" => SharedFs::Virtio9p { msize: q.msize_9p },
        other => {
            return Err(Error::Unsupported(format!(
                "configuration [hypervisor.qemu] shared_fs = {other:?}: expected \"virtio-9p\" or \"virtio-fs\""
            )))
        }
    };
    Ok(vm)
}

/// Host security labels mean nothing inside the VM, whose kernel is the boundary: ignored,
/// with a warning, never an error (as Kata 1.x).
fn warn_ignored_fields(id: &str, spec: &oci_spec::runtime::Spec) {
    let process = spec.process().as_ref();
    let fields = [
        (
            "process.apparmorProfile",
            process.and_then(|p| p.apparmor_profile().clone()),
        ),
        (
            "process.selinuxLabel",
            process.and_then(|p| p.selinux_label().clone()),
        ),
        (
            "linux.mountLabel",
            spec.linux().as_ref().and_then(|l| l.mount_label().clone()),
        ),
    ];
    for (field, value) in fields {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            log::warn!("container {id}: {field} {v:?} does not apply inside a VM: ignored");
        }
    }
}

/// The sandbox a container is being added to.
pub(crate) struct Target<'a> {
    pub sandbox_id: &'a str,
    pub vm_dir: &'a Path,
    pub shared_dir: &'a Path,
    pub proxy_socket: &'a Path,
    pub shim_bin: &'a Path,
    pub debug: bool,
    /// The VM, for device hot-plug.
    pub vm: &'a hypervisor::VmConfig,
    /// PCIe root ports already taken by hot-plugged devices.
    pub used_ports: Vec<String>,
}

/// Adds a container to a running sandbox: its rootfs and bind mounts shared into the VM, the
/// agent's CreateContainer (with `edit_spec` applied to the guest spec first), its shim.
/// Returns the shim and the container's record, not yet saved.
pub(crate) fn add_container(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    target: &Target,
    agent: &AgentClient,
    undo: &mut Rollback,
    edit_spec: impl FnOnce(&mut oci_spec::runtime::Spec),
) -> Result<(Child, ContainerRecord)> {
    let id = opts.id;
    crate::blockdev::check_capacity(
        id,
        crate::blockdev::disks_needed(rt, id, bundle),
        target.vm,
        &target.used_ports,
    )?;
    let block_rootfs = if rt.config.hypervisor.qemu.disable_block_device_use {
        None
    } else {
        crate::blockdev::rootfs_device(&bundle.rootfs)
    };
    if let Some(dev) = &block_rootfs {
        crate::blockdev::check_unused(rt, &dev.path)?;
    }
    let shared_rootfs = block_rootfs.is_none().then_some(bundle.rootfs.as_path());
    let (mut guest_spec, share_base, mut storages) =
        share::share_container(target.shared_dir, id, shared_rootfs, &bundle.spec)?;
    {
        let b = share_base.clone();
        undo.push("unshare rootfs", move || share::unshare_container(&b));
    }
    let mut used_ports = target.used_ports.clone();
    let mut plug = |key: &str, path: &Path, read_only: bool, undo: &mut Rollback| {
        let bus = crate::blockdev::free_port(target.vm, &used_ports)?;
        let disk =
            crate::blockdev::plug(target.vm_dir, key, path, bus, read_only, rt.call_timeout())?;
        used_ports.extend(disk.bus.clone());
        let (vm_dir, d, t) = (target.vm_dir.to_path_buf(), disk.clone(), rt.call_timeout());
        undo.push("unplug disk", move || {
            crate::blockdev::unplug(&vm_dir, &d, t)
        });
        Ok::<_, Error>(disk)
    };
    let disk = match &block_rootfs {
        Some(dev) => {
            let disk = plug(id, &dev.path, false, undo)?;
            let at = crate::blockdev::guest_root(id);
            storages.push(crate::blockdev::storage(
                &at,
                &disk,
                &dev.fstype,
                Vec::new(),
            ));
            if let Some(mut root) = guest_spec.root().clone() {
                root.set_path(at);
                guest_spec.set_root(Some(root));
            }
            Some(disk)
        }
        None => None,
    };
    // Block volumes: a mount whose source is a block device gets the device itself, mounted
    // by the agent and bind-mounted into the container.
    let mut volumes = Vec::new();
    let mut guest_mounts = guest_spec.mounts().clone().unwrap_or_default();
    for (n, m) in guest_mounts.iter_mut().enumerate() {
        let Some(source) = m.source().clone() else {
            continue;
        };
        if m.typ().as_deref() == Some("bind") || !crate::blockdev::is_block_device(&source) {
            continue;
        }
        crate::blockdev::check_unused(rt, &source)?;
        let options = m.options().clone().unwrap_or_default();
        let read_only = options.iter().any(|o| o == "ro");
        let disk = plug(&format!("{id}/vol{n}"), &source, read_only, undo)?;
        let at = crate::blockdev::guest_volume(id, n);
        let fstype = m.typ().clone().unwrap_or_else(|| "ext4".into());
        storages.push(crate::blockdev::storage(&at, &disk, &fstype, options));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(at));
        m.set_options(Some(vec![
            "rbind".into(),
            if read_only { "ro" } else { "rw" }.into(),
        ]));
        volumes.push(disk);
    }
    if !volumes.is_empty() {
        guest_spec.set_mounts(Some(guest_mounts));
    }
    // Block devices of `linux.devices`: the host device with those numbers is hot-plugged; the
    // agent gives the container's node the guest's numbers.
    let mut devices = Vec::new();
    let host_devices = crate::blockdev::host_block_devices(rt, id, &mut guest_spec);
    for (n, (d, host)) in host_devices.iter().enumerate() {
        crate::blockdev::check_unused(rt, host)?;
        let disk = plug(&format!("{id}/dev{n}"), host, false, undo)?;
        let mut dev = msg::Device::new();
        dev.id = disk.serial.clone();
        dev.type_ = "blk".into();
        dev.container_path = d.path().display().to_string();
        devices.push(dev);
        volumes.push(disk);
    }
    edit_spec(&mut guest_spec);
    let spec_json = serde_json::to_vec(&guest_spec)
        .map_err(|e| Error::Unsupported(format!("serialising the spec: {e}")))?;
    let mut req = msg::CreateContainerRequest::new();
    req.container_id = id.into();
    req.exec_id = id.into();
    req.oci_spec_json = spec_json;
    req.storages = storages;
    req.devices = devices;
    agent.create_container(&req)?;
    {
        let socket = target.proxy_socket.to_path_buf();
        let timeout = rt.call_timeout();
        let cid = id.to_string();
        undo.push("remove container in the guest", move || {
            if let Ok(a) = AgentClient::connect(&socket, timeout) {
                let mut req = msg::RemoveContainerRequest::new();
                req.container_id = cid;
                req.timeout = 5;
                let _ = a.remove_container(&req);
            }
        });
    }

    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let tty = if terminal {
        crate::console::prepare(opts.console_socket, opts.foreground)?
    } else {
        crate::console::ShimTerminal::Inherit
    };
    let tty = match &tty {
        crate::console::ShimTerminal::Slave(fd) => Some(fd),
        crate::console::ShimTerminal::Inherit => None,
    };
    let shim = procs::start_shim(&ShimArgs {
        tty,
        binary: target.shim_bin,
        agent_socket: target.proxy_socket,
        sandbox_id: target.sandbox_id,
        container_id: id,
        exec_id: id,
        terminal,
        log: target.vm_dir.join(format!(
            "{}{}.log",
            sandbox_log::files::SHIM_PREFIX,
            crate::short_name(id)
        )),
        debug: target.debug,
    })?;
    let shim_ref = ProcessRef::of(shim.id() as i32);
    {
        let pid = shim.id() as i32;
        undo.push("kill shim", move || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
    }
    let record = ContainerRecord {
        id: id.into(),
        sandbox_id: target.sandbox_id.into(),
        bundle: bundle.path.clone(),
        status: Status::Created,
        shim: shim_ref,
        rootfs_mount: share_base,
        created: sandbox_log::now(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        block_rootfs: disk,
        block_volumes: volumes,
    };
    Ok((shim, record))
}

/// The last steps of every create: the record saved, createRuntime/createContainer hooks, and
/// the pid file, which callers take as "created", written last.
pub(crate) fn publish(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    record: ContainerRecord,
    shim: &Child,
) -> Result<()> {
    rt.store.save_container(&record)?;
    if let Some(hooks) = bundle.spec.hooks() {
        let state = crate::lifecycle::to_state(record);
        crate::hooks::run(Some(hooks), crate::hooks::Stage::CreateRuntime, &state)?;
    }
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, shim.id())?;
    }
    Ok(())
}

/// The storage that makes the agent mount the shared folder.
fn shared_fs_storage(fs: &SharedFs) -> msg::Storage {
    let mut s = msg::Storage::new();
    s.source = SHARED_FS_MOUNT_TAG.into();
    s.mount_point = GUEST_SHARED.into();
    match fs {
        SharedFs::Virtio9p { msize } => {
            s.driver = "9p".into();
            s.fstype = "9p".into();
            s.options = vec![
                "trans=virtio".into(),
                "version=9p2000.L".into(),
                format!("msize={msize}"),
                "cache=mmap".into(),
                "nodev".into(),
            ];
        }
        SharedFs::VirtioFs { .. } => {
            s.driver = "virtio-fs".into();
            s.fstype = "virtiofs".into();
            s.options = vec!["nodev".into()];
        }
    }
    s
}

pub(crate) fn write_pid_file(path: &Path, pid: u32) -> Result<()> {
    let path: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(crate::io_err("resolving", path))?
            .join(path)
    };
    store::write_atomic(&path, pid.to_string().as_bytes())?;
    Ok(())
}

//! The VM of a sandbox: the QEMU configuration a sandbox of this configuration gets, booting
//! it, and the link that carries the callers' connections to the agent in it.

use crate::procs::{self, ProxyArgs};
use crate::rollback::Rollback;
use crate::share::GUEST_SHARED;
use crate::{Error, Result, Runtime};
use agent_client::messages as msg;
use hypervisor::{Hypervisor, Qemu, SharedFs, VmConfig, SHARED_FS_MOUNT_TAG};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store::ProcessRef;

/// The proxy's socket in a VM folder.
pub(crate) const PROXY_SOCKET: &str = "proxy.sock";

/// What the agent link of a freshly started VM is built from: QEMU's agent channel (one yamux
/// session, the agent at its other end) and its console.
pub struct VmChannel<'a> {
    pub sandbox_id: &'a str,
    pub vm_dir: &'a Path,
    /// QEMU's socket of the agent's virtio-serial port.
    pub agent_channel: &'a Path,
    /// QEMU's socket of the guest console.
    pub console: &'a Path,
}

/// Where the callers of a sandbox's agent connect (one ttrpc connection each, one yamux stream
/// each behind it), and which host process serves that socket.
pub struct LinkEnd {
    pub socket: PathBuf,
    /// The serving process when it is not the caller's own (kata-proxy); `None` when the
    /// front end serves the link in its own process (the shim v2).
    pub process: Option<ProcessRef>,
}

/// How a front end links callers to a new VM's agent: the v1 CLI starts a kata-proxy, the
/// shim v2 runs the yamux session in its own process.
pub trait AgentLink {
    /// Starts serving `channel`; the socket must accept connections when this returns.
    fn serve(&self, rt: &Runtime, channel: &VmChannel) -> Result<LinkEnd>;
}

/// Kata 1.x's link: a kata-proxy per sandbox, its own session, `proxy.sock` in the VM folder.
pub struct ProxyLink;

impl AgentLink for ProxyLink {
    fn serve(&self, rt: &Runtime, channel: &VmChannel) -> Result<LinkEnd> {
        let socket = channel.vm_dir.join(PROXY_SOCKET);
        let proxy = procs::start_proxy(
            &ProxyArgs {
                binary: &rt.config.proxy_path()?,
                listen: &socket,
                mux: channel.agent_channel,
                console: channel.console,
                sandbox_id: channel.sandbox_id,
                log: &channel.vm_dir.join(sandbox_log::files::PROXY),
                debug: rt.debug(),
            },
            Duration::from_secs(10),
        )?;
        Ok(LinkEnd {
            socket,
            process: Some(proxy),
        })
    }
}

/// A sandbox's VM with its agent link, agent answering or about to.
pub(crate) struct RunningVm {
    pub qemu: Qemu,
    pub link: LinkEnd,
    /// The folder shared into the guest (a cached VM brings its own).
    pub shared_dir: PathBuf,
    /// When QEMU was started, for a VM booted for this sandbox (None: from the cache).
    pub booted: Option<Instant>,
}

/// Boots `vm` and serves its agent link; both are undone by `undo` if the create fails later.
pub(crate) fn boot_vm(
    rt: &Runtime,
    vm: VmConfig,
    label: &str,
    link: &dyn AgentLink,
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
    let link = link.serve(
        rt,
        &VmChannel {
            sandbox_id: label,
            vm_dir: &vm_dir,
            agent_channel: &qemu.agent_socket(),
            console: &qemu.console_socket(),
        },
    )?;
    if let Some(proxy) = link.process {
        undo.push("stop proxy", move || {
            procs::stop_process(&proxy, Duration::from_secs(2))
        });
    }
    Ok(RunningVm {
        qemu,
        link,
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

/// The storage that makes the agent mount the shared folder.
pub(crate) fn shared_fs_storage(fs: &SharedFs) -> msg::Storage {
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

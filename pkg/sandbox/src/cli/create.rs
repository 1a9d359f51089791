//! `create`: from a bundle to a container waiting in its VM for `start`, with the kata-shim
//! that stands for its process and the pid file written last.

use crate::procs::{self, ShimArgs};
use crate::rollback::Rollback;
use crate::sandbox::Sandbox;
use crate::vm::ProxyLink;
use crate::{Result, Runtime};
use oci::Bundle;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;
use store::{ContainerRecord, ProcessRef};

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

/// A container with a sandbox (a VM) of its own: the container id names the sandbox.
pub(crate) fn create_sandbox(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    started: Instant,
) -> Result<Created> {
    let id = opts.id;
    // Resolve every path before anything is created: a missing piece is reported up front.
    rt.config.proxy_path()?;
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
    let _lock = rt.store.lock(id, store::LockMode::Exclusive)?;
    let mut sandbox = Sandbox::boot(rt, id, bundle, &ProxyLink, &mut undo)?;
    let mut record = sandbox.add_container(id, bundle, &mut undo, |_| {})?;
    let shim = spawn_shim(rt, opts, bundle, &sandbox, &shim_bin, &mut undo)?;
    record.shim = ProcessRef::of(shim.id() as i32);
    sandbox.start_port_forwarder(&mut undo);
    sandbox.save()?;
    publish(rt, opts, bundle, record, &shim)?;
    undo.disarm();
    if let Some(resources) = resources_of(bundle) {
        sandbox.grow_for(resources, false);
    }
    log::info!("container {id}: created in {:?}", started.elapsed());
    Ok(Created { shim })
}

/// The limits a bundle's container asks for.
pub(crate) fn resources_of(bundle: &Bundle) -> Option<&oci_spec::runtime::LinuxResources> {
    bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
}

/// Starts the kata-shim that stands for container `opts.id`'s process on the host, with the
/// caller's stdio or the terminal the caller asked for.
pub(crate) fn spawn_shim(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    sandbox: &Sandbox,
    shim_bin: &Path,
    undo: &mut Rollback,
) -> Result<Child> {
    let id = opts.id;
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
        binary: shim_bin,
        agent_socket: sandbox.agent_socket(),
        sandbox_id: sandbox.id(),
        container_id: id,
        exec_id: id,
        terminal,
        log: sandbox.vm_dir().join(format!(
            "{}{}.log",
            sandbox_log::files::SHIM_PREFIX,
            crate::short_name(id)
        )),
        debug: rt.debug(),
    })?;
    let pid = shim.id() as i32;
    undo.push("kill shim", move || {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    Ok(shim)
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
    crate::hooks::run_create_hooks(bundle, &record)?;
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, shim.id())?;
    }
    Ok(())
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

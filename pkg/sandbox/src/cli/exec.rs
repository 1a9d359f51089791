//! `exec`: one more process in a running container, with a kata-shim of its own.

use crate::container::Container;
use crate::procs::{self, ShimArgs};
use crate::sandbox::Sandbox;
use crate::{Error, Result, Runtime};
use oci_spec::runtime::Process;
use std::path::Path;
use std::process::Child;
use std::time::{SystemTime, UNIX_EPOCH};
use store::LockMode;

pub struct ExecOptions<'a> {
    pub id: &'a str,
    pub process: Process,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    /// The caller waits for the process (exec without -d).
    pub foreground: bool,
}

/// The container's own process (from its bundle), the base that inline `exec` flags modify.
pub fn base_process(rt: &Runtime, id: &str) -> Result<Process> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    let bundle = oci::Bundle::load(&rec.bundle)?;
    bundle
        .spec
        .process()
        .clone()
        .ok_or_else(|| Error::Unsupported(format!("container {id}: its bundle has no process")))
}

/// An exec id unique enough within one container: time and our pid.
fn new_exec_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "exec-{:x}-{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// Starts the process in the VM and its shim; returns the shim (our child).
pub fn exec(rt: &Runtime, opts: &ExecOptions) -> Result<Child> {
    let id = opts.id;
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    // Shared: an exec must not wait behind, or block, other verbs on the pod.
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    let sandbox = Sandbox::load(rt, &rt.store.load_container(id)?.sandbox_id)?;
    let container = Container::load(&sandbox, id)?;
    container.check_exec(&opts.process)?;
    let terminal = opts.process.terminal().unwrap_or(false);
    crate::console::check(terminal, opts.console_socket, opts.foreground)?;
    let shim_bin = rt.config.shim_path()?;
    let exec_id = new_exec_id();
    let process = container.exec(&exec_id, &opts.process)?;
    // An exec nobody will ever wait for or read from must not linger in the VM.
    let kill_exec = || {
        let _ = process.signal(libc::SIGKILL);
    };
    let tty = match terminal {
        true => match crate::console::prepare(opts.console_socket, opts.foreground) {
            Ok(t) => t,
            Err(e) => {
                kill_exec();
                return Err(e);
            }
        },
        false => crate::console::ShimTerminal::Inherit,
    };
    let shim = procs::start_shim(&ShimArgs {
        tty: match &tty {
            crate::console::ShimTerminal::Slave(fd) => Some(fd),
            crate::console::ShimTerminal::Inherit => None,
        },
        binary: &shim_bin,
        agent_socket: sandbox.agent_socket(),
        sandbox_id: sandbox.id(),
        container_id: id,
        exec_id: &exec_id,
        terminal,
        log: sandbox.vm_dir().join(format!(
            "{}{}.log",
            sandbox_log::files::SHIM_PREFIX,
            crate::short_name(id)
        )),
        debug: rt.config.shim.kata.enable_debug,
    });
    let shim = match shim {
        Ok(s) => s,
        Err(e) => {
            kill_exec();
            return Err(e);
        }
    };
    if let Some(pid_file) = opts.pid_file {
        crate::cli::create::write_pid_file(pid_file, shim.id())?;
    }
    log::info!("container {id}: exec {exec_id}, shim pid {}", shim.id());
    Ok(shim)
}

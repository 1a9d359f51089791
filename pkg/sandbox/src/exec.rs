//! `exec`: one more process in a running container, with a kata-shim of its own.

use crate::procs::{self, ShimArgs};
use crate::{Error, Result, Runtime};
use agent_client::{messages as msg, AgentClient};
use oci_spec::runtime::Process;
use std::path::Path;
use std::process::Child;
use std::time::{SystemTime, UNIX_EPOCH};
use store::{LockMode, Status};

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
    let rec = rt.store.load_container(id)?;
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    let status = crate::lifecycle::effective_status(&rec);
    if status != Status::Running {
        return Err(Error::BadState {
            id: id.into(),
            status,
            // runc's words.
            action: match status {
                Status::Paused => "cannot exec in a paused container",
                _ => "cannot exec in a stopped container",
            },
        });
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Unsupported(
            "exec: no command given (args is empty)".into(),
        ));
    }
    let terminal = opts.process.terminal().unwrap_or(false);
    crate::console::check(terminal, opts.console_socket, opts.foreground)?;
    let shim_bin = rt.config.shim_path()?;
    let exec_id = new_exec_id();
    let process_json = serde_json::to_vec(&opts.process)
        .map_err(|e| Error::Unsupported(format!("serialising the process: {e}")))?;
    let agent = AgentClient::connect(&sb.proxy_socket, rt.call_timeout())?;
    let mut req = msg::ExecProcessRequest::new();
    req.container_id = id.into();
    req.exec_id = exec_id.clone();
    req.process_json = process_json;
    agent.exec_process(&req)?;
    let tty = match terminal {
        true => match crate::console::prepare(opts.console_socket, opts.foreground) {
            Ok(t) => t,
            Err(e) => {
                kill_exec(&agent, id, &exec_id);
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
        agent_socket: &sb.proxy_socket,
        sandbox_id: &sb.id,
        container_id: id,
        exec_id: &exec_id,
        terminal,
        log: sb.vm_dir.join(format!(
            "{}{}.log",
            sandbox_log::files::SHIM_PREFIX,
            crate::short_name(id)
        )),
        debug: rt.config.shim.kata.enable_debug,
    });
    let shim = match shim {
        Ok(s) => s,
        Err(e) => {
            kill_exec(&agent, id, &exec_id);
            return Err(e);
        }
    };
    if let Some(pid_file) = opts.pid_file {
        crate::create::write_pid_file(pid_file, shim.id())?;
    }
    log::info!("container {id}: exec {exec_id}, shim pid {}", shim.id());
    Ok(shim)
}

/// An exec nobody will ever wait for or read from must not linger in the VM.
fn kill_exec(agent: &AgentClient, id: &str, exec_id: &str) {
    let mut kill = msg::SignalProcessRequest::new();
    kill.container_id = id.into();
    kill.exec_id = exec_id.into();
    kill.signal = libc::SIGKILL as u32;
    let _ = agent.signal_process(&kill);
}

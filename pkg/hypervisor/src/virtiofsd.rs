//! The virtiofsd helper: one daemon per VM, started before QEMU (QEMU connects to
//! its socket at start-up) and gone after QEMU (it exits when QEMU disconnects).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmdline::{self, CmdlineError};
use crate::config::VmConfig;
use crate::proc::{detached_command, log_tail, ProcError, ProcessId};

/// How long virtiofsd gets to leave by itself once QEMU is gone, and then after
/// each signal, before escalating.
const EXIT_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error("sandbox {sandbox_id}: cannot {doing} {}: {source}", .path.display())]
    Io {
        sandbox_id: String,
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox {sandbox_id}: virtiofsd {problem}; its log {}: {log}", .log_path.display())]
    Failed {
        sandbox_id: String,
        problem: String,
        log_path: PathBuf,
        log: String,
    },
    #[error("sandbox {sandbox_id}: timeout: virtiofsd (pid {pid}) did not create {} within {timeout:?}; check {} and that the shared dir exists and we may create namespaces (sandbox=namespace needs root)", .socket.display(), .log_path.display())]
    SocketTimeout {
        sandbox_id: String,
        pid: i32,
        socket: PathBuf,
        timeout: Duration,
        log_path: PathBuf,
    },
    #[error("sandbox {sandbox_id}: timeout: virtiofsd pid {pid} still alive after SIGTERM and SIGKILL (stop); check whether it is stuck in the kernel (state D in /proc/{pid}/stat)")]
    StopTimeout { sandbox_id: String, pid: i32 },
    #[error("sandbox {sandbox_id}: stopping virtiofsd: {source}")]
    Signal {
        sandbox_id: String,
        source: ProcError,
    },
}

/// Starts virtiofsd for `cfg` and waits (up to the start timeout) for its socket.
pub fn start(cfg: &VmConfig, daemon: &Path) -> Result<ProcessId, VirtiofsdError> {
    let id = &cfg.sandbox_id;
    let args = cmdline::virtiofsd_args(cfg)?;
    let socket = cfg.vhost_fs_socket();
    let log_path = cfg.virtiofsd_log();
    let io = |doing, path: &Path, source| VirtiofsdError::Io {
        sandbox_id: id.clone(),
        doing,
        path: path.to_path_buf(),
        source,
    };

    // A leftover socket would look "ready" before the new daemon listens.
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove stale socket", &socket, e)),
    }
    let log = std::fs::File::create(&log_path).map_err(|e| io("create", &log_path, e))?;

    log::debug!("sandbox {id}: {}", cmdline::shell_line(daemon, &args));
    let started = Instant::now();
    let mut child = detached_command(daemon)
        .args(&args)
        .stderr(log)
        .spawn()
        .map_err(|e| io("run virtiofsd", daemon, e))?;
    let pid = child.id() as i32;
    let failed = |problem: String| VirtiofsdError::Failed {
        sandbox_id: id.clone(),
        problem,
        log_path: log_path.clone(),
        log: log_tail(&log_path, 2048),
    };

    let timeout = Duration::from_millis(cfg.start_timeout_ms);
    loop {
        if socket.exists() {
            break;
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(failed(format!(
                    "exited ({status}) before creating its socket"
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(io("wait for virtiofsd", daemon, e)),
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VirtiofsdError::SocketTimeout {
                sandbox_id: id.clone(),
                pid,
                socket,
                timeout,
                log_path,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Still our unreaped child here, so the pid cannot have been reused.
    let process = ProcessId::of(pid)
        .ok_or_else(|| failed("exited right after creating its socket".into()))?;
    log::info!(
        "sandbox {id}: virtiofsd pid {pid} ready in {:.0?}",
        started.elapsed()
    );
    // Dropping `child` neither kills nor waits: the daemon must outlive this process.
    Ok(process)
}

/// Stops virtiofsd: normally it has already left because QEMU disconnected;
/// otherwise SIGTERM, then SIGKILL. Ok if it is already gone.
pub fn stop(sandbox_id: &str, process: &ProcessId) -> Result<(), VirtiofsdError> {
    let signal_err = |source| VirtiofsdError::Signal {
        sandbox_id: sandbox_id.to_string(),
        source,
    };
    if process.wait_gone(EXIT_GRACE) {
        return Ok(());
    }
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        log::warn!(
            "sandbox {sandbox_id}: virtiofsd pid {} still running; sending signal {sig}",
            process.pid
        );
        process.signal(sig).map_err(signal_err)?;
        if process.wait_gone(EXIT_GRACE) {
            return Ok(());
        }
    }
    Err(VirtiofsdError::StopTimeout {
        sandbox_id: sandbox_id.to_string(),
        pid: process.pid,
    })
}

//! The QEMU driver: start QEMU in a session of its own, find it again from saved state in a
//! later process, stop it through QMP (or SIGKILL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cmdline::{self, CmdlineError};
use crate::config::{Accel, ConfigError, SharedFs, VmConfig};
use crate::kvm_probe;
use crate::proc::{detached_command, log_tail, ProcError, ProcessId};
use crate::qmp::{QmpClient, QmpError};
use crate::virtiofsd::{self, VirtiofsdError};
use crate::Hypervisor;
use crate::TemplateRole;

/// After SIGKILL a process normally disappears within milliseconds; longer means
/// it is stuck in the kernel.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Bytes of QEMU's stderr quoted in errors.
const STDERR_TAIL: usize = 4096;

/// How long one attempt to reach a starting QEMU's QMP waits for the greeting.
const QMP_READY_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error(transparent)]
    Virtiofsd(#[from] VirtiofsdError),
    #[error("sandbox {sandbox_id}: {source}")]
    Template {
        sandbox_id: String,
        source: Box<crate::TemplateError>,
    },
    #[error("sandbox {sandbox_id}: QEMU is already running as pid {pid}")]
    AlreadyRunning { sandbox_id: String, pid: i32 },
    #[error("sandbox {sandbox_id}: {what} {} does not exist", .path.display())]
    Missing {
        sandbox_id: String,
        what: &'static str,
        path: PathBuf,
    },
    #[error("sandbox {sandbox_id}: cannot {doing} {}: {source}", .path.display())]
    Io {
        sandbox_id: String,
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox {sandbox_id}: timeout: {} did not serve QMP within {timeout:?} of its start; check {} and qemu.log next to it, and whether accelerator {accel} really works on this host (KVM on nested/PVM hosts hangs)", .program.display(), .stderr_log.display())]
    StartTimeout {
        sandbox_id: String,
        program: PathBuf,
        timeout: Duration,
        accel: Accel,
        stderr_log: PathBuf,
    },
    #[error(
        "sandbox {sandbox_id}: QEMU failed to start ({status}): {stderr}\n  command: {command}"
    )]
    StartFailed {
        sandbox_id: String,
        status: String,
        stderr: String,
        command: String,
    },
    #[error("sandbox {sandbox_id}: QEMU returned success but {problem}; stderr: {stderr}")]
    NotRunningAfterStart {
        sandbox_id: String,
        problem: String,
        stderr: String,
    },
    #[error("sandbox {sandbox_id}: timeout: QEMU pid {pid} still alive {waited:?} after SIGKILL (stop); check whether it is stuck in the kernel (state D in /proc/{pid}/stat, /proc/{pid}/stack)")]
    StopTimeout {
        sandbox_id: String,
        pid: i32,
        waited: Duration,
    },
    #[error("sandbox {sandbox_id}: {source}")]
    Process {
        sandbox_id: String,
        source: ProcError,
    },
    #[error("sandbox {sandbox_id}: {source}")]
    Qmp {
        sandbox_id: String,
        source: QmpError,
    },
}

/// What a later process needs to find and stop a running VM. Persist it (JSON)
/// after `start()` and rebuild the driver with [`Qemu::from_state`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuState {
    pub config: VmConfig,
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat at start: a different value later means the
    /// pid now belongs to another process and our QEMU is gone.
    pub pid_start_time: u64,
    /// The accelerator actually used (never `Auto`).
    pub accel: Accel,
    #[serde(default)]
    pub accel_reason: String,
    #[serde(default)]
    pub virtiofsd_pid: Option<ProcessId>,
}

impl QemuState {
    pub fn qemu_process(&self) -> ProcessId {
        ProcessId {
            pid: self.pid,
            start_time: self.pid_start_time,
        }
    }
}

/// A QEMU VM. Dropping it does nothing: the VM outlives the process that started it.
#[derive(Debug, Clone)]
pub struct Qemu {
    config: VmConfig,
    state: Option<QemuState>,
}

/// What QEMU said about a failed start. With `-D`, QEMU 7.2 writes its error
/// messages into the -D log rather than to stderr (and with -daemonize but no -D
/// they are lost entirely), so both files are quoted.
fn qemu_output(cfg: &VmConfig) -> String {
    [cfg.qemu_stderr_log(), cfg.qemu_log()]
        .iter()
        .map(|p| (p, log_tail(p, STDERR_TAIL)))
        .filter(|(_, text)| !text.is_empty())
        .map(|(p, text)| format!("[{}] {text}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Qemu {
    pub fn new(config: VmConfig) -> Self {
        Qemu {
            config,
            state: None,
        }
    }

    /// Re-attaches to a VM started by another process.
    pub fn from_state(state: QemuState) -> Self {
        Qemu {
            config: state.config.clone(),
            state: Some(state),
        }
    }

    /// The state to persist; `None` before `start()` and after `stop()`.
    pub fn state(&self) -> Option<&QemuState> {
        self.state.as_ref()
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The accelerator in use, once started.
    pub fn accel(&self) -> Option<Accel> {
        self.state.as_ref().map(|s| s.accel)
    }

    /// Opens a QMP session (for hot-plug and queries). QEMU serves one QMP client
    /// at a time, so keep the session short.
    pub fn qmp(&self, timeout: Duration) -> Result<QmpClient, QemuError> {
        QmpClient::connect(&self.config.qmp_socket(), timeout).map_err(|source| QemuError::Qmp {
            sandbox_id: self.config.sandbox_id.clone(),
            source,
        })
    }

    fn err_io(&self, doing: &'static str, path: &Path, source: std::io::Error) -> QemuError {
        QemuError::Io {
            sandbox_id: self.config.sandbox_id.clone(),
            doing,
            path: path.to_path_buf(),
            source,
        }
    }

    fn require(&self, what: &'static str, path: &Path) -> Result<(), QemuError> {
        if path.exists() {
            Ok(())
        } else {
            Err(QemuError::Missing {
                sandbox_id: self.config.sandbox_id.clone(),
                what,
                path: path.to_path_buf(),
            })
        }
    }

    fn start_vm(&mut self) -> Result<(), QemuError> {
        let cfg = self.config.clone();
        let id = cfg.sandbox_id.as_str();
        if let Some(state) = &self.state {
            if state.qemu_process().is_alive() {
                return Err(QemuError::AlreadyRunning {
                    sandbox_id: id.to_string(),
                    pid: state.pid,
                });
            }
            // The previous VM died on its own: clear what it left (a virtiofsd,
            // stale sockets) before reusing the same vm_dir.
            self.stop_vm()?;
        }
        cfg.validate()?;
        // Checked here because QEMU's own messages for these are terse or, for the
        // vm_dir, only show up as a failing socket bind.
        self.require("vm_dir", &cfg.vm_dir)?;
        self.require("kernel", &cfg.kernel)?;
        if let Some(initrd) = &cfg.initrd {
            self.require("initrd", initrd)?;
        }
        self.require("shared_dir", &cfg.shared_dir)?;
        if cfg.qemu_path.is_absolute() {
            self.require("QEMU binary", &cfg.qemu_path)?;
        }

        let (accel, accel_reason) = match cfg.accel {
            Accel::Auto => kvm_probe::choose_accel(&cfg.probe_cache_dir()),
            other => (other, "set in the configuration".to_string()),
        };
        let args = cmdline::qemu_args(&cfg, accel)?;

        let started = Instant::now();
        let virtiofsd_pid = match &cfg.shared_fs {
            SharedFs::VirtioFs { daemon, .. } => Some(virtiofsd::start(&cfg, daemon)?),
            SharedFs::Virtio9p { .. } => None,
        };
        let qemu = match self.spawn_qemu(&cfg, &args, accel) {
            Ok(p) => p,
            Err(e) => {
                // Without QEMU nobody would ever disconnect from virtiofsd.
                if let Some(v) = &virtiofsd_pid {
                    if let Err(stop_err) = virtiofsd::stop(id, v) {
                        log::warn!("sandbox {id}: after failed start: {stop_err}");
                    }
                }
                return Err(e);
            }
        };
        if let Some(t) = cfg
            .templating
            .as_ref()
            .filter(|t| t.role == TemplateRole::Clone)
        {
            let loaded = self
                .qmp(Duration::from_millis(cfg.start_timeout_ms))
                .and_then(|mut qmp| {
                    crate::template::load(&mut qmp, t, Duration::from_millis(cfg.start_timeout_ms))
                        .map_err(|source| QemuError::Template {
                            sandbox_id: id.to_string(),
                            source: Box::new(source),
                        })
                });
            if let Err(e) = loaded {
                let _ = qemu.signal(libc::SIGKILL);
                qemu.wait_gone(KILL_GRACE);
                return Err(e);
            }
        }
        log::info!(
            "sandbox {id}: QEMU pid {} up with {accel} in {:.0?} (sockets ready)",
            qemu.pid,
            started.elapsed()
        );
        self.state = Some(QemuState {
            config: cfg,
            pid: qemu.pid,
            pid_start_time: qemu.start_time,
            accel,
            accel_reason,
            virtiofsd_pid,
        });
        Ok(())
    }

    /// Starts QEMU in a session of its own and waits until it serves QMP, which it does only
    /// once initialised (devices created, every socket listening). Not `-daemonize`: the
    /// seccomp sandbox (`-sandbox ...,spawn=deny`) kills the fork that daemonizing needs, so
    /// QEMU stays the process we spawned and outlives us like the proxy does.
    fn spawn_qemu(
        &self,
        cfg: &VmConfig,
        args: &[String],
        accel: Accel,
    ) -> Result<ProcessId, QemuError> {
        let id = cfg.sandbox_id.as_str();
        let command = cmdline::shell_line(&cfg.qemu_path, args);
        log::debug!("sandbox {id}: {command}");

        // stderr goes to a file that survives for post-mortems (QEMU outlives us).
        let stderr_path = cfg.qemu_stderr_log();
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| self.err_io("create", &stderr_path, e))?;
        // QEMU's error messages land in the -D log; a leftover from an earlier run
        // must not be quoted as this run's failure.
        if let Err(e) = std::fs::remove_file(cfg.qemu_log()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(self.err_io("remove old", &cfg.qemu_log(), e));
            }
        }
        let mut qemu_command = detached_command(&cfg.qemu_path);
        // The caller's folder (often the bundle) must not stay busy for the VM's life.
        qemu_command.args(args).stderr(stderr).current_dir("/");
        // Kept open until the spawn: the child's hook uses their descriptors.
        let _inherited = self.enter_netns_and_pass_fds(cfg, &mut qemu_command)?;
        let mut child = qemu_command
            .spawn()
            .map_err(|e| self.err_io("run QEMU", &cfg.qemu_path, e))?;
        let pid = child.id() as i32;

        let timeout = Duration::from_millis(cfg.start_timeout_ms);
        let t0 = Instant::now();
        let stderr_tail = || qemu_output(cfg);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(QemuError::StartFailed {
                        sandbox_id: id.to_string(),
                        status: status.to_string(),
                        stderr: stderr_tail(),
                        command,
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(self.err_io("wait for QEMU", &cfg.qemu_path, e)),
            }
            if cfg.qemu_sockets().iter().all(|s| s.exists())
                && QmpClient::connect(&cfg.qmp_socket(), QMP_READY_POLL).is_ok()
            {
                break;
            }
            if t0.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(QemuError::StartTimeout {
                    sandbox_id: id.to_string(),
                    program: cfg.qemu_path.clone(),
                    timeout,
                    accel,
                    stderr_log: stderr_path,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ProcessId::of(pid).ok_or_else(|| QemuError::NotRunningAfterStart {
            sandbox_id: id.to_string(),
            problem: format!("pid {pid} is already gone right after serving QMP"),
            stderr: stderr_tail(),
        })
    }

    /// Makes QEMU start inside the pod's network namespace (where its taps are) and inherit
    /// the macvtap devices at the descriptor numbers its command line names. Returns the open
    /// files, which must outlive the spawn.
    fn enter_netns_and_pass_fds(
        &self,
        cfg: &VmConfig,
        command: &mut std::process::Command,
    ) -> Result<Vec<std::fs::File>, QemuError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let mut files = Vec::new();
        let netns_fd = match &cfg.netns {
            Some(path) => {
                let f = std::fs::File::open(path)
                    .map_err(|e| self.err_io("open network namespace", path, e))?;
                let fd = f.as_raw_fd();
                files.push(f);
                Some(fd)
            }
            None => None,
        };
        let mut moves = Vec::new();
        for (i, device) in cfg.inherited_devices().iter().enumerate() {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(device)
                .map_err(|e| self.err_io("open macvtap device", device, e))?;
            // Moved above every target number first, so no dup2 below overwrites a source.
            // SAFETY: plain fcntl on a descriptor we own; the result is owned by `high`.
            let high = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
            if high < 0 {
                return Err(self.err_io("duplicate", device, std::io::Error::last_os_error()));
            }
            // SAFETY: `high` is a fresh descriptor nobody else owns.
            files.push(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(high) });
            let target = crate::config::FIRST_INHERITED_FD + i as i32;
            moves.push((high, target));
        }
        if netns_fd.is_none() && moves.is_empty() {
            return Ok(files);
        }
        // SAFETY: between fork and exec the hook only calls setns and dup2, which are
        // async-signal-safe, on descriptors that stay open until the spawn returns.
        unsafe {
            command.pre_exec(move || {
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for &(from, to) in &moves {
                    // dup2 leaves the new descriptor without FD_CLOEXEC: QEMU inherits it.
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(files)
    }

    fn stop_vm(&mut self) -> Result<(), QemuError> {
        let Some(state) = self.state.clone() else {
            return Ok(());
        };
        let id = state.config.sandbox_id.as_str();
        let qemu = state.qemu_process();
        let timeout = Duration::from_millis(state.config.stop_timeout_ms);
        let t0 = Instant::now();

        if qemu.is_alive() {
            if let Err(e) = self.qmp_quit(timeout) {
                log::warn!("sandbox {id}: QMP quit failed ({e}); will SIGKILL QEMU pid {} if it does not exit", qemu.pid);
            }
            if !qemu.wait_gone(timeout.saturating_sub(t0.elapsed())) {
                log::warn!(
                    "sandbox {id}: QEMU pid {} still alive after {timeout:?}; sending SIGKILL",
                    qemu.pid
                );
                qemu.signal(libc::SIGKILL)
                    .map_err(|source| QemuError::Process {
                        sandbox_id: id.to_string(),
                        source,
                    })?;
                if !qemu.wait_gone(KILL_GRACE) {
                    return Err(QemuError::StopTimeout {
                        sandbox_id: id.to_string(),
                        pid: qemu.pid,
                        waited: KILL_GRACE,
                    });
                }
            }
            log::info!(
                "sandbox {id}: QEMU pid {} stopped in {:.0?}",
                qemu.pid,
                t0.elapsed()
            );
        } else {
            log::debug!("sandbox {id}: QEMU pid {} already gone", qemu.pid);
        }

        if let Some(v) = &state.virtiofsd_pid {
            virtiofsd::stop(id, v)?;
        }
        // A SIGKILLed QEMU leaves its sockets behind; later dials must fail fast
        // with "not found" rather than "connection refused" on a dead socket.
        // Logs stay for post-mortems; the caller owns and removes vm_dir.
        let cfg = &state.config;
        for path in cfg
            .qemu_sockets()
            .into_iter()
            .chain([cfg.vhost_fs_socket(), cfg.pid_file()])
        {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("sandbox {id}: cannot remove {}: {e}", path.display());
                }
            }
        }
        self.state = None;
        Ok(())
    }

    /// Pauses this template VM (started with the `Template` role) and saves its device state
    /// in the template folder. The VM stays paused; stop it afterwards.
    pub fn save_template(&self, timeout: Duration) -> Result<(), QemuError> {
        let id = &self.config.sandbox_id;
        let Some(t) = self
            .config
            .templating
            .as_ref()
            .filter(|t| t.role == TemplateRole::Template)
        else {
            return Err(QemuError::Template {
                sandbox_id: id.clone(),
                source: Box::new(crate::TemplateError::NotATemplate),
            });
        };
        let mut qmp = self.qmp(timeout)?;
        crate::template::save(&mut qmp, t, timeout).map_err(|source| QemuError::Template {
            sandbox_id: id.clone(),
            source: Box::new(source),
        })
    }

    fn qmp_quit(&self, timeout: Duration) -> Result<(), QemuError> {
        let mut qmp = self.qmp(timeout)?;
        match qmp.execute("quit", None) {
            // QEMU may close the socket before its reply gets out: that is success.
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(source) => Err(QemuError::Qmp {
                sandbox_id: self.config.sandbox_id.clone(),
                source,
            }),
        }
    }
}

impl Hypervisor for Qemu {
    fn start(&mut self) -> crate::Result<()> {
        Ok(self.start_vm()?)
    }

    /// Idempotent: stopping a VM that is not running (never started, already
    /// stopped, exited by itself, pid reused) is Ok.
    fn stop(&mut self) -> crate::Result<()> {
        Ok(self.stop_vm()?)
    }

    fn pid(&self) -> Option<i32> {
        self.state.as_ref().map(|s| s.pid)
    }

    fn is_running(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.qemu_process().is_alive())
    }

    fn agent_socket(&self) -> PathBuf {
        self.config.agent_socket()
    }

    fn console_socket(&self) -> PathBuf {
        self.config.console_socket()
    }

    fn qmp_socket(&self) -> PathBuf {
        self.config.qmp_socket()
    }

    /// Polls /proc: after -daemonize QEMU is not our child, so waitpid cannot be used.
    fn wait_exit(&self, timeout: Duration) -> bool {
        match &self.state {
            None => true,
            Some(s) => s.qemu_process().wait_gone(timeout),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state() -> QemuState {
        let mut cfg = VmConfig::new("abc", "/run/vc/vm/abc", "/k", "/s");
        cfg.shared_fs = SharedFs::virtio_fs();
        QemuState {
            config: cfg,
            pid: 1234,
            pid_start_time: 5678,
            accel: Accel::Tcg,
            accel_reason: "test".into(),
            virtiofsd_pid: Some(ProcessId {
                pid: 1235,
                start_time: 5679,
            }),
        }
    }

    #[test]
    fn state_round_trip() {
        let s = state();
        let json = serde_json::to_string_pretty(&s).unwrap();
        let back: QemuState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let q = Qemu::from_state(back);
        assert_eq!(q.pid(), Some(1234));
        assert_eq!(q.state(), Some(&s));
        assert_eq!(q.agent_socket(), PathBuf::from("/run/vc/vm/abc/kata.sock"));
    }

    #[test]
    fn dead_or_reused_pid_is_not_running_and_stop_is_ok() {
        // Our own pid with a wrong start time: "reused", so must be treated as dead
        // (and, crucially, never signalled).
        let mut s = state();
        s.pid = std::process::id() as i32;
        s.virtiofsd_pid = None;
        s.config.vm_dir = tempfile::tempdir().unwrap().keep();
        let mut q = Qemu::from_state(s);
        assert!(!q.is_running());
        assert!(q.wait_exit(Duration::from_millis(1)));
        q.stop().unwrap();
        assert_eq!(q.pid(), None);
        q.stop().unwrap();
        let _ = std::fs::remove_dir_all(&q.config().vm_dir);
    }

    #[test]
    fn start_reports_missing_files_before_spawning() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = VmConfig::new("abc", dir.path(), dir.path().join("no-kernel"), dir.path());
        cfg.accel = Accel::Tcg;
        let mut q = Qemu::new(cfg);
        let err = q.start().unwrap_err();
        assert!(err.to_string().contains("kernel"), "{err}");
        assert!(!q.is_running());
    }

    #[test]
    fn qemu_error_output_ends_up_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"not a kernel").unwrap();
        let mut cfg = VmConfig::new("abc", dir.path(), &kernel, dir.path());
        cfg.accel = Accel::Tcg;
        // An invalid machine type makes QEMU fail during option parsing, before
        // anything runs, so this test starts no VM.
        cfg.machine_type = "no-such-machine".into();
        let mut q = Qemu::new(cfg);
        let err = q.start().unwrap_err().to_string();
        eprintln!("{err}");
        assert!(
            err.contains("failed to start") && err.contains("unsupported machine type"),
            "{err}"
        );
    }
}

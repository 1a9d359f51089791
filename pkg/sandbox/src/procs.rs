//! The host processes a sandbox needs besides QEMU: one kata-proxy per sandbox (a daemon in
//! its own session, with no inherited stdio) and one kata-shim per container process (which
//! does inherit the caller's stdio: for containerd those pipes are the container's).

use crate::{Error, Result};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store::ProcessRef;

pub(crate) const READY_FD: i32 = 3;

pub struct ProxyArgs<'a> {
    pub binary: &'a Path,
    pub listen: &'a Path,
    pub mux: &'a Path,
    pub console: &'a Path,
    pub sandbox_id: &'a str,
    pub log: &'a Path,
    pub debug: bool,
}

/// The pipe a helper (proxy, port forwarder) says "ready" on: one byte on fd 3 of the child.
pub(crate) struct ReadyPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl ReadyPipe {
    pub(crate) fn new() -> std::io::Result<ReadyPipe> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(ReadyPipe { read, write })
    }

    /// Makes `cmd`'s child a session leader (it outlives us, away from our terminal) with the
    /// pipe's write end as its fd 3.
    pub(crate) fn hand_to(&self, cmd: &mut Command) {
        let raw = self.write.as_raw_fd();
        // SAFETY: only async-signal-safe calls (setsid, dup2) in the forked child.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if libc::dup2(raw, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// After the spawn: whether the child said ready within `timeout`.
    pub(crate) fn wait(self, timeout: Duration) -> bool {
        drop(self.write);
        let mut ready = std::fs::File::from(self.read);
        wait_readable(&ready, timeout) && matches!(ready.read(&mut [0u8; 1]), Ok(1))
    }
}

/// Starts kata-proxy and waits until it says (one byte on a pipe) that it listens.
pub fn start_proxy(a: &ProxyArgs, timeout: Duration) -> Result<ProcessRef> {
    let ready = ReadyPipe::new().map_err(|e| Error::Spawn {
        component: "kata-proxy",
        path: a.binary.to_path_buf(),
        reason: format!("pipe: {e}"),
    })?;
    let mut cmd = Command::new(a.binary);
    cmd.arg("--listen-socket")
        .arg(a.listen)
        .arg("--mux-socket")
        .arg(a.mux)
        .arg("--console-socket")
        .arg(a.console)
        .arg("--sandbox")
        .arg(a.sandbox_id)
        .arg("--log")
        .arg(a.log)
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if a.debug {
        cmd.arg("--debug");
    }
    ready.hand_to(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| Error::Spawn {
        component: "kata-proxy",
        path: a.binary.to_path_buf(),
        reason: e.to_string(),
    })?;
    let proc_ref = ProcessRef::of(child.id() as i32);
    if !ready.wait(timeout) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Spawn {
            component: "kata-proxy",
            path: a.binary.to_path_buf(),
            reason: format!(
                "did not become ready within {timeout:?} (see {})",
                a.log.display()
            ),
        });
    }
    proc_ref.ok_or_else(|| Error::Spawn {
        component: "kata-proxy",
        path: a.binary.to_path_buf(),
        reason: "exited right after starting".into(),
    })
}

fn wait_readable(f: &std::fs::File, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

pub struct ShimArgs<'a> {
    /// The pty slave to use as stdio and controlling terminal, instead of our own stdio.
    pub tty: Option<&'a OwnedFd>,
    pub binary: &'a Path,
    pub agent_socket: &'a Path,
    pub sandbox_id: &'a str,
    pub container_id: &'a str,
    pub exec_id: &'a str,
    pub terminal: bool,
    pub log: PathBuf,
    pub debug: bool,
}

/// Starts kata-shim with the caller's stdio. The caller decides whether to wait for it (`run`)
/// or leave it to its own parent (`create`: containerd-shim and conmon are subreapers).
pub fn start_shim(a: &ShimArgs) -> Result<Child> {
    let mut cmd = Command::new(a.binary);
    cmd.arg("--agent")
        .arg(a.agent_socket)
        .arg("--container")
        .arg(a.container_id)
        .arg("--exec-id")
        .arg(a.exec_id)
        .arg("--sandbox")
        .arg(a.sandbox_id)
        .arg("--log")
        .arg(&a.log);
    if a.terminal {
        cmd.arg("--terminal");
    }
    if a.debug {
        cmd.arg("--debug");
    }
    if let Some(tty) = a.tty {
        let dup = |what| {
            tty.try_clone().map_err(|e| Error::Spawn {
                component: "kata-shim",
                path: a.binary.to_path_buf(),
                reason: format!("{what}: {e}"),
            })
        };
        cmd.stdin(Stdio::from(dup("stdin")?))
            .stdout(Stdio::from(dup("stdout")?))
            .stderr(Stdio::from(dup("stderr")?));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) in the forked child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn().map_err(|e| Error::Spawn {
        component: "kata-shim",
        path: a.binary.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Waits for a process we may not be the parent of to go away.
pub fn wait_gone(p: &ProcessRef, timeout: Duration) -> bool {
    let start = Instant::now();
    while p.alive() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// SIGTERM, then SIGKILL after `timeout`.
pub fn stop_process(p: &ProcessRef, timeout: Duration) {
    if !p.alive() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(p.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if !wait_gone(p, timeout) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        wait_gone(p, Duration::from_secs(2));
    }
}

/// The sandbox's helper programs, by executable name: what [`kill_orphans`] may kill.
/// (kata-runtime: the port forwarder, `kata-runtime port-forward --vm-dir ...`.)
const SANDBOX_PROGRAMS: [&str; 5] = [
    "qemu",
    "kata-proxy",
    "kata-shim",
    "virtiofsd",
    "kata-runtime",
];

/// Kills (SIGKILL) the QEMU, proxy, shims and virtiofsd whose command line names a path under
/// one of `dirs` (the sandbox's VM and shared folders, unique to it) and waits for them to go.
/// For a sandbox whose records were never saved (its `create` was killed) or are unreadable:
/// nothing else knows their pids. Returns how many were killed.
pub fn kill_orphans(dirs: &[&Path]) -> usize {
    let needles: Vec<String> = dirs
        .iter()
        .map(|d| format!("{}/", d.display().to_string().trim_end_matches('/')))
        .collect();
    let mut victims = Vec::new();
    for (pid, name, argv) in host_processes() {
        if !SANDBOX_PROGRAMS.iter().any(|p| name.contains(p)) {
            continue;
        }
        if argv
            .iter()
            .any(|a| needles.iter().any(|n| a.contains(n.as_str())))
        {
            if let Some(p) = ProcessRef::of(pid) {
                victims.push(p);
            }
        }
    }
    for p in &victims {
        log::warn!("killing orphaned sandbox process pid {}", p.pid);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for p in &victims {
        wait_gone(p, Duration::from_secs(2));
    }
    victims.len()
}

/// Every other process of the host: pid, the file name of its executable, its arguments.
fn host_processes() -> Vec<(i32, String, Vec<String>)> {
    let me = std::process::id() as i32;
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in proc_dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let name = exe
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, name, argv));
    }
    out
}

/// The host pids of the kata-shims standing for a container's processes (its own and its
/// execs'), found by the arguments [`start_shim`] gives them.
pub fn shims_of(sandbox_id: &str, container_id: &str) -> Vec<i32> {
    let names = |argv: &[String], flag: &str, value: &str| {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    };
    let mut pids: Vec<i32> = host_processes()
        .into_iter()
        .filter(|(_, name, argv)| {
            name.contains("kata-shim")
                && names(argv, "--sandbox", sandbox_id)
                && names(argv, "--container", container_id)
        })
        .map(|(pid, _, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

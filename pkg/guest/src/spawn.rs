//! Starting the in-container setup helper in new namespaces.
//!
//! The agent is multi-threaded, so the cloned child does only async-signal-safe work (dup2,
//! sigprocmask, execve of the agent binary itself); everything else happens in the helper
//! (`setup`), a fresh single-threaded process.

use crate::setup::{START_FD, STATUS_FD};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating a pipe: {0}")]
    Pipe(nix::Error),
    #[error("clone of the container process: {0}")]
    Clone(nix::Error),
    #[error("path contains a NUL byte: {0}")]
    Nul(String),
}

/// The agent's ends of a spawned container process's pipes.
pub struct Spawned {
    pub pid: Pid,
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
    /// Reads `R` when set up, then EOF on successful exec (or `E<message>`).
    pub status: File,
    /// One byte written here lets the helper exec the workload.
    pub start: File,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::Pipe)
}

fn cstring(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Nul(s.to_string()))
}

/// Clones a child in new mount, pid, ipc and uts namespaces that execs
/// `/proc/self/exe __container-init <spec_path>`.
pub fn spawn_container_init(spec_path: &Path) -> Result<Spawned, Error> {
    let spec = spec_path
        .to_str()
        .ok_or_else(|| Error::Nul(spec_path.display().to_string()))?;
    spawn_helper(
        &[crate::CONTAINER_INIT_ARG, spec],
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
}

/// Clones a child that execs `/proc/self/exe __container-exec <init pid> <process_path>`
/// (it joins the container's namespaces itself).
pub fn spawn_container_exec(init_pid: i32, process_path: &Path) -> Result<Spawned, Error> {
    let path = process_path
        .to_str()
        .ok_or_else(|| Error::Nul(process_path.display().to_string()))?;
    spawn_helper(
        &[crate::CONTAINER_EXEC_ARG, &init_pid.to_string(), path],
        CloneFlags::empty(),
    )
}

fn spawn_helper(args: &[&str], flags: CloneFlags) -> Result<Spawned, Error> {
    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (start_r, start_w) = pipe()?;

    let exe = cstring("/proc/self/exe")?;
    let mut owned = vec![cstring("kata-agent")?];
    for a in args {
        owned.push(cstring(a)?);
    }
    let mut argv: Vec<*const libc::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp = [std::ptr::null()];
    // (child fd, target number): dup2 clears close-on-exec on the copies.
    let moves = [
        (stdin_r.as_raw_fd(), 0),
        (stdout_w.as_raw_fd(), 1),
        (stderr_w.as_raw_fd(), 2),
        (status_w.as_raw_fd(), STATUS_FD),
        (start_r.as_raw_fd(), START_FD),
    ];
    // Sources may sit at the target numbers of others (fds 0-4 are free in the agent only by
    // luck), so first move everything above the target range.
    let child = move || -> isize {
        // SAFETY: only async-signal-safe libc calls between clone and execve.
        unsafe {
            let mut high = [0i32; 5];
            for (i, (src, _)) in moves.iter().enumerate() {
                high[i] = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    libc::_exit(126);
                }
            }
            for (i, (_, dst)) in moves.iter().enumerate() {
                if libc::dup2(high[i], *dst) < 0 {
                    libc::_exit(126);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
    };
    let mut stack = vec![0u8; 256 * 1024];
    // SAFETY: the child runs only the closure above (async-signal-safe calls) on its own copy
    // of the address space (no CLONE_VM), then execs.
    let pid = unsafe { nix::sched::clone(Box::new(child), &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(Error::Clone)?;
    // Our copies of the child's ends close here, so EOFs propagate.
    drop((stdin_r, stdout_w, stderr_w, status_w, start_r));
    Ok(Spawned {
        pid,
        stdin: File::from(stdin_w),
        stdout: File::from(stdout_r),
        stderr: File::from(stderr_r),
        status: File::from(status_r),
        start: File::from(start_w),
    })
}

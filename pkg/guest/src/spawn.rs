//! Starting the in-container setup helper in new namespaces.
//!
//! The agent is multi-threaded, so the cloned child does only async-signal-safe work (dup2,
//! sigprocmask, execve of the agent binary itself); everything else happens in the helper
//! (`setup`), a fresh single-threaded process.

use crate::setup::{CONSOLE_FD, START_FD, STATUS_FD};
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
    #[error("joining the pid namespace {0}: {1}")]
    JoinPid(String, std::io::Error),
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
    /// Where the helper sends the pty master of a process with a terminal.
    pub console: std::os::unix::net::UnixStream,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::Pipe)
}

fn cstring(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Nul(s.to_string()))
}

/// Clones a child in the given new namespaces that execs
/// `/proc/self/exe __container-init <spec_path>`.
///
/// The child waits for one byte on its start pipe (`GO`) while the agent writes the user
/// namespace's id maps and moves it into the container's cgroup. With a user namespace it must
/// wait before it execs (an exec before the maps would drop every capability), so it gets a
/// copy of our memory; without one the setup helper waits for the byte itself, first thing,
/// and the clone can share our memory until the exec (much cheaper under TCG).
///
/// With `join_pid`, the child starts in that existing pid namespace (a pod member sharing its
/// sandbox's): this thread's pid namespace for children is switched around the clone.
pub fn spawn_container_init(
    spec_path: &Path,
    terminal: bool,
    flags: CloneFlags,
    join_pid: Option<&Path>,
) -> Result<Spawned, Error> {
    let spec = spec_path
        .to_str()
        .ok_or_else(|| Error::Nul(spec_path.display().to_string()))?;
    let args = [crate::CONTAINER_INIT_ARG, spec];
    let gated = gate_before_exec(flags);
    let Some(target) = join_pid else {
        return spawn_helper(&args, flags, terminal, gated);
    };
    let open = |p: &Path| File::open(p).map_err(|e| Error::JoinPid(p.display().to_string(), e));
    // Per thread: other threads of the agent keep spawning into the agent's own namespace.
    let own = open(Path::new("/proc/thread-self/ns/pid_for_children"))?;
    let target_ns = open(target)?;
    nix::sched::setns(&target_ns, CloneFlags::CLONE_NEWPID)
        .map_err(|e| Error::JoinPid(target.display().to_string(), e.into()))?;
    let spawned = spawn_helper(&args, flags - CloneFlags::CLONE_NEWPID, terminal, gated);
    if let Err(e) = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID) {
        // This thread would go on spawning into the sandbox's namespace: unrecoverable.
        log::error!("restoring the agent's pid namespace: {e}");
        std::process::abort();
    }
    spawned
}

/// Whether the init's clone waits for `GO` before exec (else the setup helper waits for it).
pub fn gate_before_exec(flags: CloneFlags) -> bool {
    flags.contains(CloneFlags::CLONE_NEWUSER)
}

/// The byte that lets a container's init proceed once its maps and cgroup are in place.
pub const GO: u8 = b'G';

/// Clones a child that execs `/proc/self/exe __container-exec <init pid> <process_path>`
/// (it joins the container's namespaces itself).
pub fn spawn_container_exec(
    init_pid: i32,
    process_path: &Path,
    terminal: bool,
) -> Result<Spawned, Error> {
    let path = process_path
        .to_str()
        .ok_or_else(|| Error::Nul(process_path.display().to_string()))?;
    spawn_helper(
        &[crate::CONTAINER_EXEC_ARG, &init_pid.to_string(), path],
        CloneFlags::empty(),
        terminal,
        false,
    )
}

/// The agent's and the child's ends of the process's stdio. With a terminal the child starts
/// on /dev/null: it opens a pty inside the container (so the terminal belongs to the
/// container's devpts, as with runc) and hands the master back over the console channel; the
/// agent's pipe ends then just read EOF.
struct Stdio {
    parent_in: OwnedFd,
    parent_out: OwnedFd,
    parent_err: OwnedFd,
    child: [OwnedFd; 3],
}

fn stdio(terminal: bool) -> Result<Stdio, Error> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child = if terminal {
        let null = |_| {
            nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            // SAFETY: open returned a new fd that nothing else owns.
            .map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
            .map_err(Error::Pipe)
        };
        [null(0)?, null(1)?, null(2)?]
    } else {
        [in_r, out_w, err_w]
    };
    Ok(Stdio {
        parent_in: in_w,
        parent_out: out_r,
        parent_err: err_r,
        child,
    })
}

fn spawn_helper(
    args: &[&str],
    flags: CloneFlags,
    terminal: bool,
    gated: bool,
) -> Result<Spawned, Error> {
    let io = stdio(terminal)?;
    let [stdin_r, stdout_w, stderr_w] = io.child;
    let (status_r, status_w) = pipe()?;
    let (start_r, start_w) = pipe()?;
    let (console_agent, console_child) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Error::Pipe(nix::Error::from_raw(e.raw_os_error().unwrap_or(0))))?;

    let user_ns = flags.contains(CloneFlags::CLONE_NEWUSER);
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
        (console_child.as_raw_fd(), CONSOLE_FD),
    ];
    // Sources may sit at the target numbers of others (fds 0-4 are free in the agent only by
    // luck), so first move everything above the target range.
    let child = move || -> isize {
        // SAFETY: only async-signal-safe libc calls between clone and execve.
        unsafe {
            let mut high = [0i32; 6];
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
            if gated {
                let mut go = 0u8;
                if libc::read(START_FD, (&mut go as *mut u8).cast(), 1) != 1 {
                    libc::_exit(1);
                }
            }
            if user_ns {
                // Writing the maps does not change our credentials: we are still the host's
                // root, unmapped (nobody) in the new namespace, and an exec would drop every
                // capability. Become the namespace's root first (clone gave us the
                // capabilities to). Raw syscalls: glibc's setxid wrappers would try to signal
                // the parent's other threads.
                if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresgid, 0u32, 0u32, 0u32) != 0
                    || libc::syscall(libc::SYS_setresuid, 0u32, 0u32, 0u32) != 0
                {
                    libc::_exit(125);
                }
            }
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
    };
    let mut stack = vec![0u8; 256 * 1024];
    // An ungated child execs right away: share our memory until it does (vfork, as
    // posix_spawn does) instead of copying the agent's page tables, which costs tens of
    // milliseconds under TCG. A gated child waits for us, so it needs its own copy.
    let flags = if gated {
        flags
    } else {
        flags | CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK
    };
    // SAFETY: the child runs only the closure above (async-signal-safe calls on its own stack
    // and fd table, no allocation), then execs; with CLONE_VM we are suspended until then.
    let pid = unsafe { nix::sched::clone(Box::new(child), &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(Error::Clone)?;
    // Our copies of the child's ends close here, so EOFs propagate.
    drop((
        stdin_r,
        stdout_w,
        stderr_w,
        status_w,
        start_r,
        console_child,
    ));
    Ok(Spawned {
        pid,
        stdin: File::from(io.parent_in),
        stdout: File::from(io.parent_out),
        stderr: File::from(io.parent_err),
        status: File::from(status_r),
        start: File::from(start_w),
        console: console_agent,
    })
}

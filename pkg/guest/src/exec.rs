//! The exec helper: `kata-agent __container-exec <init pid> <process.json>`. Joins the
//! container's ipc, uts, pid and mount namespaces, then forks the workload with CLONE_PARENT so
//! that the agent, not this short-lived helper, is its parent (and its reaper collects its exit
//! status). Reports `P<pid>` on STATUS_FD, then exits; the workload's copy of STATUS_FD is
//! close-on-exec, so the agent reads EOF once the exec succeeded, or `E<message>`.

use crate::setup::{self, Error, START_FD, STATUS_FD};
use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::Process;
use std::fs::File;
use std::io::Read;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::Path;

/// Namespaces an exec joins, those the container shares with the agent excepted: user first
/// (it grants the capabilities the others need), mnt last since it changes what /proc shows.
const NAMESPACES: [&str; 6] = ["user", "ipc", "uts", "cgroup", "pid", "mnt"];

/// Whether `/proc/<pid>/ns/<ns>` is a namespace other than the agent's own.
fn is_own_namespace(init_pid: &str, ns: &str) -> bool {
    let theirs = std::fs::read_link(format!("/proc/{init_pid}/ns/{ns}")).ok();
    let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
    theirs.is_some() && theirs != ours
}

pub fn container_exec_main(init_pid: &str, process_path: &Path) -> ! {
    // SAFETY: the spawner placed the status pipe at this number for us.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    let code = match run(init_pid, process_path, &mut status) {
        Ok(()) => 0,
        Err(e) => {
            let _ = status.write_all(format!("E{e}").as_bytes());
            1
        }
    };
    std::process::exit(code)
}

fn sys<T>(what: impl Into<String>, r: nix::Result<T>) -> Result<T, Error> {
    r.map_err(|errno| Error::Sys {
        what: what.into(),
        errno,
    })
}

fn run(init_pid: &str, process_path: &Path, status: &mut File) -> Result<(), Error> {
    sys(
        "fcntl FD_CLOEXEC",
        nix::fcntl::fcntl(
            STATUS_FD,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        ),
    )?;
    let bytes = std::fs::read(process_path).map_err(|e| Error::Sys {
        what: format!("reading {}: {e}", process_path.display()),
        errno: nix::Error::EIO,
    })?;
    let process: Process = serde_json::from_slice(&bytes).map_err(|e| Error::Sys {
        what: format!("invalid process {}: {e}", process_path.display()),
        errno: nix::Error::EINVAL,
    })?;
    // The container's own spec sits beside the exec's process file: its seccomp profile
    // applies to every exec too.
    let seccomp = container_seccomp(process_path)?;
    let mut fds = Vec::with_capacity(NAMESPACES.len());
    for ns in NAMESPACES
        .into_iter()
        .filter(|ns| is_own_namespace(init_pid, ns))
    {
        let path = format!("/proc/{init_pid}/ns/{ns}");
        let f = File::open(&path).map_err(|e| Error::Sys {
            what: format!("opening {path}: {e}"),
            errno: nix::Error::ESRCH,
        })?;
        fds.push((ns, f));
    }
    for (ns, f) in &fds {
        sys(format!("setns {ns}"), setns(f, CloneFlags::empty()))?;
    }
    drop(fds);
    // Wait until the agent has put us in the container's cgroup, so the workload forked below
    // starts there too.
    // SAFETY: the spawner placed the start pipe at this number for us.
    let mut start = unsafe { File::from_raw_fd(START_FD) };
    if !matches!(start.read(&mut [0u8; 1]), Ok(1)) {
        return Err(Error::Sys {
            what: "waiting for the agent's go-ahead".into(),
            errno: nix::Error::EPIPE,
        });
    }
    drop(start);
    // SAFETY: this helper is single-threaded; the child only sets up and execs.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(Error::Sys {
            what: "clone of the exec process".into(),
            errno: nix::Error::last(),
        });
    }
    if pid == 0 {
        let args = process.args().clone().unwrap_or_default();
        match crate::relay::requested_port(&args) {
            Some(Ok(port)) => {
                // What an exec's close-on-exec does: the agent reads EOF, the exec has started.
                // SAFETY: closing our copy of the status pipe; nothing uses it after this.
                unsafe { libc::close(STATUS_FD) };
                let code = crate::relay::run(port);
                // SAFETY: leaving the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            Some(Err(e)) => {
                let _ = status.write_all(format!("E{e}\n").as_bytes());
                // SAFETY: as above.
                unsafe { libc::_exit(127) }
            }
            None => {}
        }
        let err = match setup::prepare_process(&process, seccomp.as_ref()) {
            Ok(prepared) => prepared.exec(),
            Err(e) => e,
        };
        // One line, so it cannot interleave with the helper's `P` line.
        let line = format!("E{}\n", err.to_string().replace('\n', " "));
        let _ = status.write_all(line.as_bytes());
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(127) }
    }
    let _ = status.write_all(format!("P{pid}\n").as_bytes());
    Ok(())
}

/// The container's seccomp profile, saved beside its spec at create (parsing the whole spec
/// here would cost tens of milliseconds per exec under TCG).
fn container_seccomp(
    process_path: &Path,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, Error> {
    let path = process_path
        .parent()
        .unwrap_or(Path::new("/"))
        .join(crate::container::SECCOMP_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Sys {
                what: format!("reading {}: {e}", path.display()),
                errno: nix::Error::EIO,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Sys {
            what: format!("invalid seccomp profile {}: {e}", path.display()),
            errno: nix::Error::EINVAL,
        })
}

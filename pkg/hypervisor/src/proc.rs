//! Processes we did not necessarily fork: identified by pid + start time, watched via /proc.
//!
//! QEMU and virtiofsd outlive the short-lived CLI that started it, so a
//! later process cannot `waitpid` them. A bare pid is not enough either: after the
//! process dies the pid can be handed to an unrelated process, and signalling that
//! one would be a disaster. The start time (field 22 of /proc/<pid>/stat, in clock
//! ticks since boot) tells the two apart.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often liveness is re-checked while waiting. Reading one small /proc file is
/// cheap, and 10 ms is well below anything a human or a timeout would notice.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot signal pid {pid} (start time {start_time}): {source}")]
    Signal {
        pid: i32,
        start_time: u64,
        source: std::io::Error,
    },
}

/// A command for a long-lived helper (QEMU, virtiofsd): stdio on /dev/null (the
/// caller's terminal or pipes must not be held open by a VM that outlives it) and a
/// session of its own, so a Ctrl-C or a kill of the caller's process group does not
/// reach the VM. Callers may still redirect stderr to a log file.
pub fn detached_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the hook runs between fork and exec and only calls setsid, which is
    // async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The last `max` bytes of a log file, for error messages (empty if unreadable).
pub fn log_tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The fields of /proc/<pid>/stat we care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

/// Parses the content of /proc/<pid>/stat.
pub fn parse_stat(content: &str) -> Option<ProcStat> {
    // Field 2 (comm) is in parentheses and may itself contain spaces and ')', so
    // split after the *last* ')'; the rest is whitespace-separated from field 3.
    let rest = &content[content.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 is at index 22 - 3 in `rest`.
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Reads /proc/<pid>/stat; `None` if the process does not exist (or is unreadable).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let content = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&content)
}

/// One specific process: a pid plus the start time that pins it to one incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies the process currently running as `pid`, if any.
    pub fn of(pid: i32) -> Option<Self> {
        let stat = read_stat(pid)?;
        if is_dead_state(stat.state) {
            return None;
        }
        Some(ProcessId {
            pid,
            start_time: stat.start_time,
        })
    }

    /// True while this very process exists and has not exited. A zombie counts as
    /// exited: it no longer runs, and if it happens to be our child (virtiofsd in the
    /// process that started it) we reap it here so it does not linger.
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            None => false,
            Some(stat) if stat.start_time != self.start_time => false,
            Some(stat) if is_dead_state(stat.state) => {
                reap_if_child(self.pid);
                false
            }
            Some(_) => true,
        }
    }

    /// Waits until the process is gone; returns whether it is gone.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_alive() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL.min(deadline - now));
        }
    }

    /// Sends `signal` to this process and no other. Returns Ok(false) if the process
    /// was already gone (which callers stopping a VM treat as success).
    ///
    /// Race-free against pid reuse: we take a pidfd first, then check the start time;
    /// if the identity matches, the pidfd refers to our process whatever happens to
    /// the pid afterwards. Kernels without pidfd (< 5.3) fall back to check-then-kill.
    pub fn signal(&self, signal: i32) -> Result<bool, ProcError> {
        // SAFETY: plain syscall with integer arguments.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if pidfd < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ESRCH) => Ok(false),
                Some(libc::ENOSYS) => self.signal_by_pid(signal),
                _ => Err(self.signal_error(err)),
            };
        }
        let pidfd = pidfd as i32;
        let result = if !self.is_alive() {
            Ok(false)
        } else {
            // SAFETY: pidfd is a descriptor we own; a null siginfo is allowed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd,
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if rc == 0 {
                Ok(true)
            } else {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ESRCH) {
                    Ok(false)
                } else {
                    Err(self.signal_error(err))
                }
            }
        };
        // SAFETY: closing the descriptor opened above, exactly once.
        unsafe { libc::close(pidfd) };
        result
    }

    fn signal_by_pid(&self, signal: i32) -> Result<bool, ProcError> {
        if !self.is_alive() {
            return Ok(false);
        }
        // SAFETY: plain syscall; the identity was checked just above.
        if unsafe { libc::kill(self.pid, signal) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(self.signal_error(err))
        }
    }

    fn signal_error(&self, source: std::io::Error) -> ProcError {
        ProcError::Signal {
            pid: self.pid,
            start_time: self.start_time,
            source,
        }
    }
}

fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Reaps `pid` if it is a zombie child of ours; harmless (ECHILD) otherwise.
fn reap_if_child(pid: i32) {
    let mut status = 0;
    // SAFETY: WNOHANG waitpid on one specific pid never blocks and only reaps that pid.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_handles_parens_and_spaces_in_comm() {
        let line =
            "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 123 45";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        // SAFETY: getpid has no preconditions.
        let me = ProcessId::of(unsafe { libc::getpid() }).unwrap();
        assert!(me.is_alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.is_alive());
        // Signal 0 only checks; on the "reused" identity it must not touch us.
        assert!(!reused.signal(0).unwrap());
        assert!(me.signal(0).unwrap());
    }

    #[test]
    fn killed_child_is_noticed_and_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id() as i32).unwrap();
        assert!(id.is_alive());
        assert!(!id.wait_gone(Duration::from_millis(50)));
        assert!(id.signal(libc::SIGKILL).unwrap());
        assert!(id.wait_gone(Duration::from_secs(5)));
        // Reaped by is_alive: the pid is gone from /proc, not a zombie.
        assert!(read_stat(id.pid).is_none());
        assert!(!id.signal(libc::SIGKILL).unwrap());
        // Already reaped above, so std's wait reports ECHILD.
        assert!(child.wait().is_err());
    }
}

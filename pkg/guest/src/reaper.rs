//! PID 1 must reap every child, and orphans too. One thread waits for SIGCHLD and collects exit
//! statuses with `waitpid(-1)`; code that needs a process's status waits on this registry instead
//! of calling `waitpid` itself (which would race with the reaper).
//!
//! SIGCHLD must be blocked in every thread (call `block_sigchld` before spawning any thread) so
//! that only the reaper's `sigwait` receives it.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Exit statuses by pid, in the shell's convention: the code, or 128+N after signal N.
#[derive(Default)]
pub struct Reaper {
    exits: Mutex<HashMap<i32, Exit>>,
    changed: Condvar,
}

/// A recorded exit; `forgotten` once its owner is done with it. A forgotten status lingers for
/// `FORGET_GRACE` so that waiters woken by the same exit still find it (a remove that waits
/// and forgets must not strand a shim's WaitProcess), then goes so the pid can be reused.
#[derive(Clone, Copy)]
struct Exit {
    code: i32,
    forgotten: Option<Instant>,
}

const FORGET_GRACE: Duration = Duration::from_secs(10);

/// How many unclaimed statuses (orphans nobody waits for) to keep before pruning.
const MAX_UNCLAIMED: usize = 4096;

pub fn block_sigchld() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block()
}

pub fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Reaper {
    /// Starts the reaper thread. `block_sigchld` must have been called by the caller first.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        let reaper = Arc::new(Reaper::default());
        let worker = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || worker.run())?;
        Ok(reaper)
    }

    fn run(&self) {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        loop {
            // Reap first: children may have exited before the reaper started.
            self.reap_all();
            if let Err(e) = set.wait() {
                log::warn!("sigwait for SIGCHLD failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(status) => {
                    if let Some((pid, code)) = exit_code(status) {
                        self.record(pid, code);
                    }
                }
                Err(_) => return, // ECHILD: nothing left to reap
            }
        }
    }

    pub fn record(&self, pid: i32, code: i32) {
        log::debug!("reaped pid {pid}: status {code}");
        if let Ok(mut exits) = self.exits.lock() {
            prune(&mut exits);
            if exits.len() >= MAX_UNCLAIMED {
                exits.clear();
            }
            exits.insert(
                pid,
                Exit {
                    code,
                    forgotten: None,
                },
            );
        }
        self.changed.notify_all();
    }

    /// The exit status of `pid` if it has exited, without waiting.
    pub fn try_status(&self, pid: i32) -> Option<i32> {
        self.exits.lock().ok()?.get(&pid).map(|e| e.code)
    }

    /// Waits until `pid` has exited; `None` when `timeout` passed first.
    pub fn wait(&self, pid: i32, timeout: Option<Duration>) -> Option<i32> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut exits = self.exits.lock().ok()?;
        loop {
            if let Some(exit) = exits.get(&pid) {
                return Some(exit.code);
            }
            exits = match deadline {
                None => self.changed.wait(exits).ok()?,
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.changed.wait_timeout(exits, left).ok()?.0
                }
            };
        }
    }

    /// Forgets a status once its process record is gone, so the pid can be reused (after a
    /// grace period: see `Exit`).
    pub fn forget(&self, pid: i32) {
        if let Ok(mut exits) = self.exits.lock() {
            if let Some(e) = exits.get_mut(&pid) {
                e.forgotten.get_or_insert_with(Instant::now);
            }
            prune(&mut exits);
        }
    }
}

fn prune(exits: &mut HashMap<i32, Exit>) {
    exits.retain(|_, e| e.forgotten.is_none_or(|t| t.elapsed() < FORGET_GRACE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_recorded_status_and_times_out_otherwise() {
        let reaper = Arc::new(Reaper::default());
        assert_eq!(reaper.wait(42, Some(Duration::from_millis(10))), None);
        let r2 = reaper.clone();
        let t = std::thread::spawn(move || r2.wait(42, Some(Duration::from_secs(5))));
        std::thread::sleep(Duration::from_millis(20));
        reaper.record(42, 137);
        assert_eq!(t.join().unwrap(), Some(137));
        // A waiter racing with the owner's forget still gets the status.
        reaper.forget(42);
        assert_eq!(reaper.wait(42, Some(Duration::from_millis(10))), Some(137));
    }
}

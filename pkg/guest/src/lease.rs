//! A process lives no longer than its stand-in on the host.
//!
//! Each process of a container is represented on the host by its kata-shim (the pid the caller
//! holds, reaps and kills). For the process's whole life the shim keeps a connection with a
//! blocking call for it open: ReadStdout/ReadStderr while output flows, then WaitProcess. When
//! such a connection ends while the process still runs, its stand-in is gone (SIGKILLed by a
//! caller's timeout, crashed, or the proxy with it): the process is killed here too, with its
//! descendants, so nothing in the guest outlives what stands for it on the host.
//!
//! ttrpc's server drops a connection's cancel channel when the connection ends; one watcher
//! thread per (process, call kind, connection) waits for that.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::Containers;
use crate::reaper::Reaper;

/// Which blocking call holds the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    Stdout,
    Stderr,
    Wait,
}

type Key = (String, String, Holder);

pub struct Leases {
    containers: Arc<Containers>,
    reaper: Arc<Reaper>,
    watched: Arc<Mutex<HashSet<Key>>>,
}

/// Watcher threads only block on a channel and send a signal.
const WATCHER_STACK: usize = 64 * 1024;

impl Leases {
    pub fn new(containers: Arc<Containers>, reaper: Arc<Reaper>) -> Self {
        Leases {
            containers,
            reaper,
            watched: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Ties process (`container`, `exec_id`) to the connection a `holder` call came in on.
    /// Repeated calls of the same kind (a ReadStdout per chunk) add nothing.
    pub fn hold(&self, ctx: &ttrpc::TtrpcContext, container: &str, exec_id: &str, holder: Holder) {
        let Ok(pid) = self.containers.pid_of(container, exec_id) else {
            return;
        };
        let key: Key = (container.to_string(), exec_id.to_string(), holder);
        let first = self
            .watched
            .lock()
            .map(|mut w| w.insert(key.clone()))
            .unwrap_or(false);
        if !first {
            return;
        }
        let cancel = ctx.cancel_rx.clone();
        let (containers, reaper, watched) = (
            self.containers.clone(),
            self.reaper.clone(),
            self.watched.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("lease".into())
            .stack_size(WATCHER_STACK)
            .spawn(move || {
                // Nothing is ever sent: recv returns when the connection's reader drops the
                // sender, i.e. when the connection has ended.
                let _ = cancel.recv();
                if let Ok(mut w) = watched.lock() {
                    w.remove(&key);
                }
                let (container, exec_id, holder) = key;
                // Only the very process that was tied (a pid is reused once reaped).
                let same = containers.pid_of(&container, &exec_id).ok() == Some(pid);
                if !same || reaper.try_status(pid).is_some() {
                    return;
                }
                log::warn!(
                    "container {container} exec {exec_id:?}: the host's stand-in closed its \
                     {holder:?} connection while pid {pid} runs: killing it"
                );
                containers.kill_tree(&container, &exec_id, pid);
                if reaper.wait(pid, Some(Duration::from_secs(5))).is_none() {
                    log::warn!("container {container}: pid {pid} did not exit after SIGKILL");
                }
                containers.forget_exec(&container, &exec_id, &reaper);
            });
        if let Err(e) = spawned {
            log::warn!("container {container}: cannot watch the connection of {holder:?}: {e}");
        }
    }
}

/// `pid` and every process below it (children of children...), read from /proc.
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The command may hold spaces and parentheses: fields start after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// SIGKILL to each pid; a pid already gone is fine.
pub(crate) fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

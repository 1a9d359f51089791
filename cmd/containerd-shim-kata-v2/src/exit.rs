//! A process's exit as containerd's task API reports it: a status and a time, once known;
//! Wait calls block until then.

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use std::sync::{Condvar, Mutex};

/// A process's exit, once known; waiters block on it.
#[derive(Default)]
pub struct Exit {
    status: Mutex<Option<(u32, Timestamp)>>,
    known: Condvar,
}

impl Exit {
    pub fn set(&self, code: u32) -> Timestamp {
        let at = now();
        if let Ok(mut s) = self.status.lock() {
            if s.is_none() {
                *s = Some((code, at.clone()));
            }
        }
        self.known.notify_all();
        at
    }

    pub fn get(&self) -> Option<(u32, Timestamp)> {
        self.status.lock().ok().and_then(|s| s.clone())
    }

    pub fn wait(&self) -> (u32, Timestamp) {
        let Ok(mut s) = self.status.lock() else {
            return (255, now());
        };
        loop {
            if let Some(done) = s.clone() {
                return done;
            }
            s = match self.known.wait(s) {
                Ok(s) => s,
                Err(_) => return (255, now()),
            };
        }
    }
}

pub fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

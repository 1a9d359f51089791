//! The runc-compatible CLI's verbs (kata-runtime, Kata 1.x's front end): each loads the
//! sandbox from its records under the sandbox's lock, calls one method, saves. What is the
//! CLI's own: the kata-proxy link, a kata-shim standing for every process, pid files and
//! console sockets.

pub mod create;
pub mod exec;
pub mod lifecycle;
pub mod member;

use crate::{Result, Runtime};
use create::{CreateOptions, Created};
use std::time::Instant;

/// `create`: a container with a VM of its own, or a member joining its sandbox's.
pub fn create(rt: &Runtime, opts: &CreateOptions) -> Result<Created> {
    let started = Instant::now();
    let plan = crate::plan::plan(rt, opts.id, opts.bundle)?;
    let process = plan.bundle.spec.process().as_ref();
    let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
    crate::console::check(terminal, opts.console_socket, opts.foreground)?;
    match &plan.joins {
        // A member's namespace paths name its sandbox's (they become the guest's shared ones).
        Some(sandbox_id) => member::create(&plan.rt, opts, &plan.bundle, sandbox_id, started),
        None => create::create_sandbox(&plan.rt, opts, &plan.bundle, started),
    }
}

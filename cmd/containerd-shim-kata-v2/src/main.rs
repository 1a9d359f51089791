//! containerd-shim-kata-v2: containerd's shim v2 for kata-rs, one process per pod (Kata 1.5's
//! design). containerd runs it three ways:
//! - `start` (cwd: the task's bundle): finds or starts the pod's shim and prints its address;
//! - no action (`-socket`): the shim itself, serving the task API until the pod is gone;
//! - `delete` (cwd: the bundle): cleans up after a shim that is gone.
//!
//! The sandbox library does the work (the same `Sandbox`/`Container`/`Process` the v1 CLI
//! uses); the agent is reached through a yamux session inside this process.

mod cleanup;
mod daemon;
mod events;
mod exit;
mod failure;
mod link;
mod metrics;
mod pod;
mod rootfs;
mod service;
mod start;
mod stdio;

use std::path::PathBuf;
use std::process::ExitCode;

/// The runtime type containerd is configured with (`io.containerd.kata.v2`).
pub const RUNTIME_ID: &str = "io.containerd.kata.v2";

/// The sandbox library's runtime for containerd namespace `namespace`: the configuration
/// from `KATA_CONF_FILE` (Kata's variable), else the default places; the records under
/// `<runtime.vm_dir>/.shim-v2/<namespace>` (containerd keeps ids unique per namespace).
pub fn runtime(namespace: &str) -> anyhow::Result<sandbox::Runtime> {
    let explicit = std::env::var_os("KATA_CONF_FILE").map(PathBuf::from);
    let config = config::Config::load(explicit.as_deref())?;
    let root = config.shim_v2_dir().join(namespace);
    Ok(sandbox::Runtime::new(root, config))
}

fn main() -> ExitCode {
    // One malloc arena: the shim lives as long as its pod and runs a few dozen mostly idle
    // threads, each of which would otherwise touch an arena of its own.
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread exists.
    // Output buffers (32 KiB reads) are mapped and unmapped rather than left in the heap.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024);
    }
    let args: Vec<_> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("containerd-shim-kata-v2 {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if flags.namespace.is_empty() {
        eprintln!("{RUNTIME_ID}: -namespace is required");
        return ExitCode::from(2);
    }
    let result = match flags.action.as_str() {
        "start" => start::run(&flags),
        "delete" => cleanup::run(&flags),
        "" => daemon::run(&flags),
        other => Err(anyhow::anyhow!("unknown action {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // containerd shows what the shim printed when `start` or `delete` fails.
            eprintln!("{RUNTIME_ID}: {e:#}");
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

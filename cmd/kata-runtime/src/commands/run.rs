//! `run`: create + start, then (unless detached) wait for the container's shim, delete, and
//! exit with the container's status.

use anyhow::Context;
use sandbox::{CreateOptions, Runtime};
use std::os::unix::process::ExitStatusExt;

pub fn run(rt: &Runtime, r: &liboci_cli::Run) -> anyhow::Result<u8> {
    let mut created = sandbox::create(
        rt,
        &CreateOptions {
            id: &r.container_id,
            bundle: &r.bundle,
            pid_file: r.pid_file.as_deref(),
            console_socket: r.console_socket.as_deref(),
            foreground: !r.detach,
        },
    )?;
    if let Err(e) = sandbox::start(rt, &r.container_id) {
        let _ = sandbox::delete(rt, &r.container_id, true);
        return Err(e.into());
    }
    if r.detach {
        return Ok(0);
    }
    // A terminal's ^C/^\ reach the whole foreground group, the shim included, which forwards
    // them into the VM; this process must outlive them to clean up.
    // SAFETY: setting signal dispositions to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = created
        .shim
        .wait()
        .context("waiting for the container's shim")?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if !r.keep {
        sandbox::delete(rt, &r.container_id, true)?;
    }
    Ok(u8::try_from(code).unwrap_or(1))
}

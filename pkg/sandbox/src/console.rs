//! Terminals on the host side. With `--console-socket S`, as runc does: a new pty whose master
//! is sent over S (SCM_RIGHTS, the payload being the master's name) to the caller, and whose
//! slave becomes the shim's stdio and controlling terminal, so window changes reach the shim as
//! SIGWINCH. Without a socket, a foreground `run -t` hands the caller's own terminal to the shim.

use crate::{Error, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// What the shim of a terminal process gets as stdio.
pub enum ShimTerminal {
    /// The caller's own stdio (an interactive `run -t`).
    Inherit,
    /// The slave of a pty whose master went to the console socket.
    Slave(OwnedFd),
}

/// Checks the terminal options before anything is started: a detached process with a
/// terminal needs a console socket, and the socket must exist.
pub fn check(terminal: bool, console_socket: Option<&Path>, foreground: bool) -> Result<()> {
    match console_socket {
        Some(socket) if !terminal => {
            log::warn!("--console-socket {} ignored: the process has no terminal", socket.display());
            Ok(())
        }
        Some(socket) if !socket.exists() => Err(Error::Unsupported(format!(
            "console socket {} does not exist",
            socket.display()
        ))),
        None if terminal && !foreground => Err(Error::Unsupported(
            "the process has a terminal: --console-socket is required unless the caller stays attached".into(),
        )),
        _ => Ok(()),
    }
}

/// Decides and prepares the shim's terminal. `foreground`: the caller stays attached (run
/// without -d, exec without -d), so its own stdio may serve when no socket is given.
pub fn prepare(console_socket: Option<&Path>, foreground: bool) -> Result<ShimTerminal> {
    let Some(socket) = console_socket else {
        if foreground {
            return Ok(ShimTerminal::Inherit);
        }
        return Err(Error::Unsupported(
            "the process has a terminal: --console-socket is required unless the caller stays attached".into(),
        ));
    };
    let pty = nix::pty::openpty(None, None).map_err(|errno| Error::Mount {
        what: "opening a pty",
        path: "/dev/ptmx".into(),
        errno,
    })?;
    send_master(socket, &pty.master)?;
    Ok(ShimTerminal::Slave(pty.slave))
}

fn send_master(socket: &Path, master: &OwnedFd) -> Result<()> {
    let stream = UnixStream::connect(socket)
        .map_err(crate::io_err("connecting to the console socket", socket))?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|errno| Error::Mount {
        what: "sending the pty master over the console socket",
        path: socket.to_path_buf(),
        errno,
    })?;
    Ok(())
}

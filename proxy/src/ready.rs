//! Telling the runtime that the proxy serves: one byte on an inherited pipe.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};

use anyhow::{bail, Context, Result};

/// Writes one byte to `fd` and closes it. The runtime waits on the pipe's other end; if the
/// proxy dies before this, the runtime reads EOF instead and knows startup failed.
pub fn notify(fd: RawFd) -> Result<()> {
    // Taking ownership of a number that is not an open fd would later close some unrelated
    // descriptor that happens to get that number; check first.
    // SAFETY: F_GETFD only reads the descriptor flags; any integer is acceptable.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("--ready-fd {fd} is not an open file descriptor");
    }
    // SAFETY: the fd is open, and nothing else in this process uses it: it was inherited for
    // this sole purpose (the command line rejects 0-2) and is closed right here.
    let mut pipe = unsafe { File::from_raw_fd(fd) };
    pipe.write_all(b"R")
        .with_context(|| format!("writing to --ready-fd {fd}"))?;
    Ok(())
}

//! Copies the process's stdio between our file descriptors and the agent.
//!
//! Each direction runs on its own thread with its own agent connection: ReadStdout blocks until
//! the process writes, WriteStdin blocks while its pipe is full, and neither may hold up the
//! other or a signal.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use agent_client::{messages, AgentClient, Error};

/// Largest chunk per WriteStdin/ReadStdout call: big enough to keep the call rate low on bulk
/// copies, far below ttrpc's 4 MiB message limit.
pub const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub enum Output {
    Stdout,
    Stderr,
}

impl Output {
    fn fd(self) -> RawFd {
        match self {
            Output::Stdout => libc::STDOUT_FILENO,
            Output::Stderr => libc::STDERR_FILENO,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Output::Stdout => "stdout",
            Output::Stderr => "stderr",
        }
    }
}

/// Pulls one output stream of the process and writes it to our fd 1 or 2, until the agent
/// reports its end. A failing write does not stop the loop: if the process's output is not
/// drained it eventually blocks, so once our reader is gone the data is read and dropped.
pub fn output(
    client: &AgentClient,
    container: &str,
    exec_id: &str,
    which: Output,
) -> Result<(), Error> {
    let mut req = messages::ReadStreamRequest::new();
    req.container_id = container.to_string();
    req.exec_id = exec_id.to_string();
    req.len = CHUNK as u32;
    let mut discarding = false;
    loop {
        let resp = match which {
            Output::Stdout => client.read_stdout(&req),
            Output::Stderr => client.read_stderr(&req),
        };
        let data = match resp {
            Ok(r) => r.data,
            Err(Error::Eof) => {
                log::debug!("{} of the process ended", which.name());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if discarding {
            continue;
        }
        if let Err(e) = write_all(which.fd(), &data) {
            log::info!(
                "cannot write the process's {} ({e}); discarding the rest of it",
                which.name()
            );
            discarding = true;
        }
    }
}

/// Copies our stdin to the process's stdin, then closes the process's stdin when ours ends.
/// Failures only end the copy: the process may well have closed its stdin on purpose, and its
/// output and exit status are still worth relaying.
pub fn input(client: &AgentClient, container: &str, exec_id: &str, exited: &Arc<AtomicBool>) {
    let quiet = |msg: String| {
        if exited.load(Ordering::SeqCst) {
            log::debug!("{msg}");
        } else {
            log::info!("{msg}");
        }
    };
    // Read straight into the request's buffer: no second 64 KiB copy per chunk.
    let mut req = messages::WriteStreamRequest::new();
    req.container_id = container.to_string();
    req.exec_id = exec_id.to_string();
    loop {
        req.data.resize(CHUNK, 0);
        let n = match read(libc::STDIN_FILENO, &mut req.data) {
            Ok(0) => break,
            Ok(n) => n,
            // EIO is how a terminal reports a hang-up; a closed or unusable stdin is treated as
            // its end, so the process still sees EOF.
            Err(e) => {
                log::debug!("reading stdin failed ({e}); treating it as its end");
                break;
            }
        };
        req.data.truncate(n);
        if let Err(e) = write_stdin(client, &mut req) {
            quiet(format!("stopped copying stdin to the process: {e}"));
            return;
        }
    }
    let mut req = messages::CloseStdinRequest::new();
    req.container_id = container.to_string();
    req.exec_id = exec_id.to_string();
    match client.close_stdin(&req) {
        Ok(_) => log::debug!("stdin closed"),
        Err(e) => quiet(format!("cannot close the process's stdin: {e}")),
    }
}

/// WriteStdin until the agent took all of `req.data`; it may take less than offered.
fn write_stdin(client: &AgentClient, req: &mut messages::WriteStreamRequest) -> Result<(), String> {
    while !req.data.is_empty() {
        let offered = req.data.len();
        let taken = client.write_stdin(req).map_err(|e| e.to_string())?.len as usize;
        // Zero would loop forever; more than offered means we and the agent disagree on what the
        // process got. Either way the stream can no longer be trusted.
        if taken == 0 || taken > offered {
            return Err(format!(
                "agent took {taken} of {offered} bytes offered to WriteStdin"
            ));
        }
        req.data.drain(..taken);
    }
    Ok(())
}

/// read(2) that retries on EINTR and waits out EAGAIN, since a caller may hand us a non-blocking
/// descriptor.
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_for(fd, libc::POLLIN)?,
            _ => return Err(err),
        }
    }
}

/// write(2) of the whole buffer, with the same retries as `read`.
fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for reads of buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            buf = &buf[n as usize..];
            continue;
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_for(fd, libc::POLLOUT)?,
            _ => return Err(err),
        }
    }
    Ok(())
}

fn wait_for(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd; infinite timeout.
    if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_reports_a_gone_reader() -> io::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: closing descriptors we just created.
        unsafe { libc::close(fds[0]) };
        // The test harness, like the shim, runs with SIGPIPE ignored.
        let err = write_all(fds[1], b"x").err();
        unsafe { libc::close(fds[1]) };
        assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::EPIPE));
        Ok(())
    }

    #[test]
    fn read_and_write_through_a_pipe() -> io::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        write_all(fds[1], b"hello")?;
        let mut buf = [0u8; 16];
        let n = read(fds[0], &mut buf)?;
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!(&buf[..n], b"hello");
        Ok(())
    }
}

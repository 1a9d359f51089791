//! A process's stdio as containerd hands it over: FIFO paths (empty when a stream is not
//! wanted). Output is copied from the agent (ReadStdout/ReadStderr on the process's own
//! connection) into the FIFOs, input from the stdin FIFO to WriteStdin until containerd's
//! CloseIO. A reader that went away does not stall the process: its output is then dropped.

use sandbox::Process;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The copies running for one process.
pub struct Relays {
    /// Closed by CloseIO (or the process's end): the stdin copy, which polls its read end,
    /// stops and closes the process's stdin.
    stdin_closed: Mutex<Option<OwnedFd>>,
    /// One message per output copy when it ends.
    outputs_done: Mutex<mpsc::Receiver<()>>,
    outputs: usize,
}

impl Relays {
    pub fn start(process: &Process, stdio: &Stdio) -> Relays {
        let (done_tx, outputs_done) = mpsc::channel();
        let mut outputs = 0;
        let streams = [(false, &stdio.stdout), (true, &stdio.stderr)];
        for (stderr, path) in streams {
            if path.is_empty() || (stderr && stdio.terminal) {
                continue;
            }
            outputs += 1;
            let (p, path, done) = (process.clone(), path.clone(), done_tx.clone());
            spawn("stdio-out", move || {
                copy_output(&p, &path, stderr);
                let _ = done.send(());
            });
        }
        let mut stdin_closed = None;
        if !stdio.stdin.is_empty() {
            match nix::unistd::pipe() {
                Ok((closed, close)) => {
                    stdin_closed = Some(close);
                    let (p, path) = (process.clone(), stdio.stdin.clone());
                    spawn("stdio-in", move || copy_input(&p, &path, closed));
                }
                Err(e) => log::warn!("{}: no stdin: {e}", process.exec_id()),
            }
        }
        Relays {
            stdin_closed: Mutex::new(stdin_closed),
            outputs_done: Mutex::new(outputs_done),
            outputs,
        }
    }

    pub fn close_stdin(&self) {
        if let Ok(mut close) = self.stdin_closed.lock() {
            close.take();
        }
    }

    /// Waits, up to `limit`, for the output copies to reach the end of their streams (a
    /// process's exit is reported after its output; a child that keeps the stream open past
    /// its parent's exit does not hold the report back for longer than `limit`).
    pub fn drain(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let Ok(outputs_done) = self.outputs_done.lock() else {
            return;
        };
        for _ in 0..self.outputs {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if outputs_done.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(f)
    {
        log::error!("cannot start a {name} thread: {e}");
    }
}

fn copy_output(process: &Process, path: &str, stderr: bool) {
    // containerd holds the read end open: this open does not wait.
    let mut sink = OpenOptions::new().write(true).open(path).ok();
    if sink.is_none() {
        log::warn!("{}: cannot open {path}: output dropped", process.exec_id());
    }
    loop {
        let chunk = match stderr {
            true => process.read_stderr(),
            false => process.read_stdout(),
        };
        match chunk {
            Ok(Some(data)) => {
                if let Some(f) = sink.as_mut() {
                    if f.write_all(&data).is_err() {
                        // The reader is gone (EPIPE): keep draining so the process runs on.
                        sink = None;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                log::debug!("{}: output ends: {e}", process.exec_id());
                break;
            }
        }
    }
}

/// Copies the stdin FIFO to the process. The FIFO is opened read-write, so that containerd's
/// writer opening late or closing early is never taken for the end of input: the end is
/// containerd's CloseIO, checked between polls.
fn copy_input(process: &Process, path: &str, closed: OwnedFd) {
    let mut fifo: File = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{}: cannot open {path}: {e}", process.exec_id());
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(closed.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        // The write end is gone: CloseIO.
        if fds[1].any().unwrap_or(true) {
            break;
        }
        match fifo.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => {
                if process.write_stdin(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    // What containerd wrote before closing is still in the FIFO: pass it on first.
    while let Ok(n) = fifo.read(&mut buf) {
        if n == 0 || process.write_stdin(&buf[..n]).is_err() {
            break;
        }
    }
    if let Err(e) = process.close_stdin() {
        log::debug!("{}: close stdin: {e}", process.exec_id());
    }
}

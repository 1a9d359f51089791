//! The guest's virtio-serial port as tokio I/O.
//!
//! A virtio port (`/dev/vportNpM`) is a character device that behaves differently from a
//! socket while the host side of the chardev (kata-proxy on QEMU's `kata.sock`) is not
//! connected (Linux `drivers/char/virtio_console.c`):
//! * `read` returns 0 (which looks like EOF, but is not: the host may connect later),
//! * `write` fails with EAGAIN (non-blocking fd),
//! * `poll` reports POLLHUP, and POLLIN because a read would not block.
//!
//! tokio keeps "closed" readiness (from POLLHUP) forever once seen on a registration, so after
//! one disconnected period the fd would look permanently ready and every wait would spin.
//!
//! What [`PortIo`] does about it: a 0-byte read, or EAGAIN while tokio reports the fd closed,
//! means "no host right now" (or possibly a stale HUP). It then sleeps [`RETRY_DELAY`],
//! re-registers the fd with the reactor (which drops the stale readiness) and tries again.
//! While no host is connected this polls every 10 ms; once one is, the first retry finds a
//! healthy fd and from then on it is purely readiness-driven again. It never reports EOF:
//! the session on a port ends only by the yamux protocol (GoAway) or an I/O error.
//!
//! `PortIo` is meant to be driven by one task (as a yamux `Connection` is): a re-registration
//! wakes only the task that performed it.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Retry period while the host side of the port is not connected.
pub const RETRY_DELAY: Duration = Duration::from_millis(10);

/// Where the kernel lists virtio ports, one directory per port with a `name` file.
const SYS_VIRTIO_PORTS: &str = "/sys/class/virtio-ports";

/// Errors finding or opening a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("cannot list {dir}")]
    ListPorts {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no virtio port named {name:?} under {dir}")]
    NotFound { name: String, dir: PathBuf },
    #[error("cannot open port {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot register the port with the tokio reactor")]
    Register(#[source] io::Error),
}

/// Finds the device of the virtio port called `name` (e.g. `agent.channel.0`) by scanning
/// `/sys/class/virtio-ports/*/name`; returns `/dev/<entry>` (e.g. `/dev/vport1p1`).
pub fn find_port_by_name(name: &str) -> Result<PathBuf, PortError> {
    find_port_in(Path::new(SYS_VIRTIO_PORTS), Path::new("/dev"), name)
}

/// [`find_port_by_name`] with the sysfs and /dev directories given (for tests and for
/// callers that mount them elsewhere).
pub fn find_port_in(sys_dir: &Path, dev_dir: &Path, name: &str) -> Result<PathBuf, PortError> {
    let entries = std::fs::read_dir(sys_dir).map_err(|source| PortError::ListPorts {
        dir: sys_dir.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| PortError::ListPorts {
            dir: sys_dir.to_owned(),
            source,
        })?;
        // Ports without a name (a plain console) have an empty or missing file: skip them.
        let Ok(port_name) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end_matches('\n') == name {
            return Ok(dev_dir.join(entry.file_name()));
        }
    }
    Err(PortError::NotFound {
        name: name.to_owned(),
        dir: sys_dir.to_owned(),
    })
}

/// Opens a virtio port read-write, non-blocking, close-on-exec. Needs a tokio runtime with
/// I/O enabled (the fd is registered with it).
pub fn open_port(path: impl AsRef<Path>) -> Result<PortIo, PortError> {
    let path = path.as_ref();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        // std adds O_CLOEXEC itself.
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| PortError::Open {
            path: path.to_owned(),
            source,
        })?;
    PortIo::new(file.into()).map_err(PortError::Register)
}

/// A non-blocking character device (the virtio port) as tokio `AsyncRead + AsyncWrite`.
/// See the module documentation for how a disconnected host is handled.
#[derive(Debug)]
pub struct PortIo {
    /// `None` only if re-registering failed; every later operation then reports an error.
    fd: Option<AsyncFd<File>>,
    read_retry: Option<Pin<Box<Sleep>>>,
    write_retry: Option<Pin<Box<Sleep>>>,
}

impl PortIo {
    /// Wraps an fd that is already in non-blocking mode. Needs a tokio runtime with I/O.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        Ok(Self {
            fd: Some(register(File::from(fd))?),
            read_retry: None,
            write_retry: None,
        })
    }

    fn fd(&self) -> io::Result<&AsyncFd<File>> {
        self.fd
            .as_ref()
            .ok_or_else(|| io::Error::other("port lost its reactor registration"))
    }

    /// Registers the fd afresh, which forgets the sticky "closed" readiness. The task is
    /// woken so that the other direction, whose waker sat on the old registration, gets
    /// polled again too.
    fn reregister(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(old) = self.fd.take() {
            self.fd = Some(register(old.into_inner())?);
        }
        cx.waker().wake_by_ref();
        Ok(())
    }
}

fn register(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: the `File` owns its fd, so the fd stays open and unchanged for as long as the
    // `AsyncFd` holds the `File`; nothing here ever swaps the inner `File` (no `get_mut`).
    Ok(unsafe { AsyncFd::register(file) }?)
}

/// Polls an armed retry timer; once it fires, disarms it and re-registers the fd.
macro_rules! wait_retry {
    ($self:ident, $timer:ident, $cx:ident) => {
        if let Some(timer) = $self.$timer.as_mut() {
            ready!(timer.as_mut().poll($cx));
            $self.$timer = None;
            $self.reregister($cx)?;
        }
    };
}

impl AsyncRead for PortIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        loop {
            wait_retry!(this, read_retry, cx);
            let (hup, attempt) = {
                let mut guard = ready!(this.fd()?.poll_read_ready(cx))?;
                let hup = guard.ready().is_read_closed();
                let attempt = guard.try_io(|fd| {
                    let mut file: &File = fd.get_ref();
                    file.read(buf.initialize_unfilled())
                });
                (hup, attempt)
            };
            match attempt {
                Ok(Ok(0)) => {
                    // No host connected: not an end of stream on a virtio port.
                    this.read_retry = Some(Box::pin(tokio::time::sleep(RETRY_DELAY)));
                }
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // EAGAIN: try_io has cleared the readiness, so normally the next poll waits
                // for an edge; with a sticky HUP it would return at once, hence the timer.
                Err(_would_block) => {
                    if hup {
                        this.read_retry = Some(Box::pin(tokio::time::sleep(RETRY_DELAY)));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for PortIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        loop {
            wait_retry!(this, write_retry, cx);
            let (hup, attempt) = {
                let mut guard = ready!(this.fd()?.poll_write_ready(cx))?;
                let hup = guard.ready().is_write_closed();
                let attempt = guard.try_io(|fd| {
                    let mut file: &File = fd.get_ref();
                    file.write(buf)
                });
                (hup, attempt)
            };
            match attempt {
                // A 0-byte write of a non-empty buffer is treated like "not connected".
                Ok(Ok(0)) => this.write_retry = Some(Box::pin(tokio::time::sleep(RETRY_DELAY))),
                Ok(Ok(n)) => return Poll::Ready(Ok(n)),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // EAGAIN while disconnected comes with HUP: retry on a timer (see poll_read).
                Err(_would_block) => {
                    if hup {
                        this.write_retry = Some(Box::pin(tokio::time::sleep(RETRY_DELAY)));
                    }
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the device; nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A serial port has no half-close; the yamux GoAway already told the host.
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        for (entry, name) in [
            ("vport1p0", ""),
            ("vport1p1", "agent.channel.0\n"),
            ("vport1p2", "x\n"),
        ] {
            std::fs::create_dir_all(sys.join(entry)).expect("mkdir");
            std::fs::write(sys.join(entry).join("name"), name).expect("write name");
        }
        // A port directory without a name file is skipped, not an error.
        std::fs::create_dir_all(sys.join("vport2p0")).expect("mkdir");

        let dev = Path::new("/dev");
        let found = find_port_in(&sys, dev, "agent.channel.0").expect("port found");
        assert_eq!(found, Path::new("/dev/vport1p1"));
        assert!(matches!(
            find_port_in(&sys, dev, "agent.channel.1"),
            Err(PortError::NotFound { .. })
        ));
        assert!(matches!(
            find_port_in(&dir.path().join("missing"), dev, "agent.channel.0"),
            Err(PortError::ListPorts { .. })
        ));
    }
}

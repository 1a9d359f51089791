//! Host end: yamux client on QEMU's chardev socket, one outbound stream per accepted client.
//!
//! yamux 0.13 is poll-based and its `Connection` is not shareable, so one driver future owns
//! it: it keeps polling `poll_next_inbound` (which moves all bytes of all streams) and serves
//! requests for new outbound streams that client tasks send it over a channel.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::{session_config, splice::splice, Error};

/// Most client connections served at once; further clients wait in the listen backlog.
///
/// Well below [`crate::MAX_STREAMS`] because yamux drops the entire session (not just the
/// new stream) when a peer exceeds the stream limit, and a stream lingers in yamux's table
/// briefly after the client task that used it has finished.
pub const MAX_HOST_STREAMS: usize = 256;

/// How long a graceful close (GoAway + flush) may take before we give up on the peer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a transient accept failure (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type StreamResult = Result<yamux::Stream, yamux::ConnectionError>;
type Reply = oneshot::Sender<StreamResult>;

/// Runs the host end until the session ends (the VM went away): returns `Ok(())` then.
///
/// Each connection accepted on `listener` gets its own yamux stream to the guest; bytes are
/// copied both ways with half-close propagated. Client connections still open when the
/// session ends are closed.
pub async fn run_host<S>(mux: S, listener: UnixListener) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    run_host_until(mux, listener, std::future::pending::<()>()).await
}

/// Like [`run_host`], but also stops when `shutdown` completes. The session is then closed
/// gracefully (a yamux GoAway is sent), which ends the guest's [`crate::serve_guest`] so that
/// the guest can serve a fresh session to whoever connects next.
pub async fn run_host_until<S, F>(mux: S, listener: UnixListener, shutdown: F) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = ()>,
{
    let conn = yamux::Connection::new(mux.compat(), session_config(), yamux::Mode::Client);
    let (requests_tx, requests_rx) = mpsc::channel(16);
    let driver = Driver {
        conn,
        requests: requests_rx,
        pending: None,
    };
    // Dropped on return, which aborts every client task still running.
    let mut clients = JoinSet::new();
    tokio::select! {
        ended = driver.run(shutdown) => ended,
        err = accept_loop(&listener, requests_tx, &mut clients) => Err(err),
    }
}

struct Driver<S> {
    conn: yamux::Connection<Compat<S>>,
    requests: mpsc::Receiver<Reply>,
    /// A request `poll_new_outbound` could not satisfy yet (too many unacknowledged streams).
    pending: Option<Reply>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    async fn run<F: Future<Output = ()>>(mut self, shutdown: F) -> Result<(), Error> {
        let mut shutdown = pin!(shutdown);
        let ended = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            self.poll_drive(cx).map(Some)
        })
        .await;
        if let Some(ended) = ended {
            return ended;
        }

        log::info!("host: closing the yamux session");
        match tokio::time::timeout(CLOSE_TIMEOUT, poll_fn(|cx| self.conn.poll_close(cx))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("host: closing the yamux session failed: {e}"),
            Err(_) => log::warn!("host: the guest did not take the yamux GoAway in time"),
        }
        Ok(())
    }

    /// Makes as much progress as possible; `Ready` only when the session is over.
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            let mut progressed = false;

            if let Some(reply) = self.pending.take() {
                if reply.is_closed() {
                    // The client gave up (its task was aborted); do not open a stream for it.
                    progressed = true;
                } else {
                    match self.conn.poll_new_outbound(cx) {
                        Poll::Ready(result) => {
                            if let Err(e) = &result {
                                // yamux has torn the session down by now; the inbound poll
                                // below reports the end.
                                log::warn!("host: cannot open a stream: {e}");
                            }
                            // If the client is gone the stream is dropped, which yamux
                            // handles like any closed stream.
                            let _ = reply.send(result);
                            progressed = true;
                        }
                        Poll::Pending => self.pending = Some(reply),
                    }
                }
            }

            if self.pending.is_none() {
                if let Poll::Ready(Some(reply)) = self.requests.poll_recv(cx) {
                    self.pending = Some(reply);
                    progressed = true;
                }
                // `Ready(None)`: the accept loop is gone, which only happens when
                // run_host_until returns; nothing to do.
            }

            match self.conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    // The guest is a server and never opens streams; dropping it resets it.
                    log::warn!(
                        "host: ignoring unexpected stream {} from the guest",
                        stream.id()
                    );
                    progressed = true;
                }
                Poll::Ready(Some(Err(e))) => {
                    log::warn!("host: yamux session failed: {e}");
                    return Poll::Ready(Err(Error::Session(e)));
                }
                Poll::Ready(None) => {
                    log::info!("host: yamux session ended (the guest side closed)");
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {}
            }

            if !progressed {
                // Every source above that returned Pending has registered our waker.
                return Poll::Pending;
            }
        }
    }
}

/// Accepts clients forever; returns only on a permanent accept failure.
async fn accept_loop(
    listener: &UnixListener,
    requests: mpsc::Sender<Reply>,
    clients: &mut JoinSet<()>,
) -> Error {
    let limit = Arc::new(Semaphore::new(MAX_HOST_STREAMS));
    loop {
        // Taken before accept() so that surplus clients wait in the kernel's backlog.
        let Ok(permit) = limit.clone().acquire_owned().await else {
            // Unreachable: the semaphore is never closed.
            return Error::Accept(io::Error::other("client limit semaphore closed"));
        };
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) if is_transient(&e) => {
                log::warn!("host: accept failed, retrying: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => return Error::Accept(e),
        };
        while clients.try_join_next().is_some() {}
        let requests = requests.clone();
        clients.spawn(async move {
            serve_client(client, requests).await;
            drop(permit);
        });
    }
}

async fn serve_client(client: UnixStream, requests: mpsc::Sender<Reply>) {
    let (reply_tx, reply_rx) = oneshot::channel();
    if requests.send(reply_tx).await.is_err() {
        return; // the session is over; dropping `client` closes it
    }
    // An error was already logged by the driver; a dropped reply means the session is over.
    if let Ok(Ok(stream)) = reply_rx.await {
        splice(stream, client, "host").await;
    }
}

/// Accept errors that say nothing about the listener itself.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
                | libc::EPERM
        )
    )
}

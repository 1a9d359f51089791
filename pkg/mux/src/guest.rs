//! Guest end: yamux server on the agent channel, one backend connection per stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::poll_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::task::JoinSet;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::{session_config, splice::splice, Error};

/// Serves one yamux session on `port` (the agent channel) as the yamux server.
///
/// Every stream the host opens is connected to a fresh `UnixStream` to `backend` (the
/// agent's ttrpc socket) and bytes are copied both ways with half-close propagated.
///
/// Returns `Ok(())` when the session ends cleanly: the host sent GoAway (kata-proxy does so
/// when it is stopped) or the port reported end-of-file. Call it again to accept the next
/// host session. Note that [`crate::PortIo`] never reports end-of-file: on a virtio port,
/// "no host connected" looks like EOF and it waits instead.
///
/// Streams still open when the session ends are dropped (their backend connections close).
pub async fn serve_guest<P>(port: P, backend: PathBuf) -> Result<(), Error>
where
    P: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let backend: Arc<Path> = backend.into();
    let mut conn = yamux::Connection::new(port.compat(), session_config(), yamux::Mode::Server);
    // Owned here so that every bridge task is aborted when the session is over.
    let mut bridges = JoinSet::new();
    log::debug!(
        "guest: yamux session started, backend {}",
        backend.display()
    );

    loop {
        // Polling for inbound streams is also what drives the whole connection (reads,
        // writes, window updates of all streams), so this loop must keep running.
        let next = poll_fn(|cx| conn.poll_next_inbound(cx)).await;
        // Reap finished bridges so the set does not grow with every stream ever opened.
        while bridges.try_join_next().is_some() {}
        match next {
            Some(Ok(stream)) => {
                bridges.spawn(bridge(stream, backend.clone()));
            }
            Some(Err(e)) => {
                log::warn!("guest: yamux session failed: {e}");
                return Err(Error::Session(e));
            }
            None => {
                log::info!("guest: yamux session closed by the host");
                return Ok(());
            }
        }
    }
}

async fn bridge(stream: yamux::Stream, backend: Arc<Path>) {
    match UnixStream::connect(&*backend).await {
        Ok(local) => splice(stream, local, "guest").await,
        // Dropping the still-open stream resets it: the host client sees its connection
        // closed instead of hanging.
        Err(e) => log::warn!(
            "guest: stream {}: cannot connect to {}: {e}",
            stream.id(),
            backend.display()
        ),
    }
}

//! Copying bytes between a yamux stream and a local Unix socket.

use tokio::net::UnixStream;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// Per-direction copy buffer. RPC messages are small; 8 KiB matches tokio's default and keeps
/// an idle-but-open connection (a shim waiting on WaitProcess) cheap.
const COPY_BUF: usize = 8 * 1024;

/// Copies both ways until both directions have seen EOF (or one fails).
///
/// Half-close is propagated: EOF read from one side becomes a shutdown of the other side's
/// write half (a yamux FIN, or `shutdown(SHUT_WR)` on the socket), and the opposite direction
/// keeps flowing. That matters for clients that send a request, half-close, and then read.
pub(crate) async fn splice(stream: yamux::Stream, mut local: UnixStream, what: &str) {
    let id = stream.id();
    let mut stream = stream.compat();
    match tokio::io::copy_bidirectional_with_sizes(&mut stream, &mut local, COPY_BUF, COPY_BUF)
        .await
    {
        Ok((to_local, to_stream)) => log::debug!(
            "{what} stream {id} done: {to_stream} bytes to the channel, {to_local} bytes back"
        ),
        // Typical cause: the session ended while the client was still writing. Dropping the
        // stream (still open) makes yamux reset it, so the peer gives up too.
        Err(e) => log::debug!("{what} stream {id} aborted: {e}"),
    }
}

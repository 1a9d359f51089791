//! Helpers shared by the mux integration tests.
#![allow(dead_code)] // not every test file uses every helper

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Deterministic pseudo-random bytes (xorshift64*), so a mismatch is reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Starts an echo server on `path`. Every connection's bytes are sent back; when the client
/// half-closes, the server reports how many bytes it received on the returned channel and
/// then closes its own write half.
pub fn spawn_echo(path: &Path) -> mpsc::UnboundedReceiver<u64> {
    let listener = UnixListener::bind(path).expect("bind echo socket");
    let (eof_tx, eof_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let eof_tx = eof_tx.clone();
            tokio::spawn(async move {
                let (mut rd, mut wr) = conn.into_split();
                let n = tokio::io::copy(&mut rd, &mut wr).await.unwrap_or(u64::MAX);
                let _ = eof_tx.send(n);
                let _ = wr.shutdown().await;
            });
        }
    });
    eof_rx
}

/// Sends `data` on `conn` while reading the echo, half-closes after the last byte, and
/// returns everything read until EOF.
pub async fn round_trip(conn: UnixStream, data: &[u8]) -> Vec<u8> {
    let (mut rd, mut wr) = conn.into_split();
    let send = async {
        // Small, uneven writes so frames of many sizes cross the session.
        for chunk in data.chunks(7919) {
            wr.write_all(chunk).await.expect("write to proxy");
        }
        wr.shutdown().await.expect("half-close");
    };
    let recv = async {
        let mut back = Vec::with_capacity(data.len());
        rd.read_to_end(&mut back).await.expect("read echo");
        back
    };
    let ((), back) = tokio::join!(send, recv);
    back
}

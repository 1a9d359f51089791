//! Host and guest ends connected back to back through a socket pair, with an echo backend.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{pseudo_random, round_trip, spawn_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

const CLIENTS: u64 = 8;
const PER_CLIENT: usize = 1024 * 1024;

/// Starts the guest end on one half of a socket pair and returns the other half (the
/// "QEMU socket" the host end runs on) plus the guest task.
fn start_guest(echo: &Path) -> (UnixStream, tokio::task::JoinHandle<Result<(), mux::Error>>) {
    let (host_end, guest_end) = UnixStream::pair().expect("socketpair");
    let guest = tokio::spawn(mux::serve_guest(guest_end, echo.to_owned()));
    (host_end, guest)
}

fn paths(dir: &tempfile::TempDir) -> (PathBuf, PathBuf) {
    (dir.path().join("echo.sock"), dir.path().join("proxy.sock"))
}

#[tokio::test]
async fn concurrent_clients_get_their_bytes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (echo, proxy) = paths(&dir);
    let _eofs = spawn_echo(&echo);
    let (host_end, _guest) = start_guest(&echo);
    let listener = UnixListener::bind(&proxy).expect("bind proxy socket");
    let host = tokio::spawn(mux::run_host(host_end, listener));

    let mut clients = tokio::task::JoinSet::new();
    for seed in 0..CLIENTS {
        let proxy = proxy.clone();
        clients.spawn(async move {
            let data = pseudo_random(seed + 1, PER_CLIENT);
            let conn = UnixStream::connect(&proxy).await.expect("connect proxy");
            let back = round_trip(conn, &data).await;
            (seed, data == back, back.len())
        });
    }
    let all = timeout(Duration::from_secs(120), async {
        let mut done = Vec::new();
        while let Some(r) = clients.join_next().await {
            done.push(r.expect("client task panicked"));
        }
        done
    })
    .await
    .expect("clients did not finish in time");

    assert_eq!(all.len() as u64, CLIENTS);
    for (seed, same, len) in all {
        assert_eq!(len, PER_CLIENT, "client {seed}: wrong length echoed");
        assert!(same, "client {seed}: echoed bytes differ");
    }
    assert!(
        !host.is_finished(),
        "run_host ended while the guest is alive"
    );
}

#[tokio::test]
async fn client_half_close_reaches_backend_as_eof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (echo, proxy) = paths(&dir);
    let mut eofs = spawn_echo(&echo);
    let (host_end, _guest) = start_guest(&echo);
    let listener = UnixListener::bind(&proxy).expect("bind proxy socket");
    let _host = tokio::spawn(mux::run_host(host_end, listener));

    let mut conn = UnixStream::connect(&proxy).await.expect("connect proxy");
    conn.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 5];
    timeout(Duration::from_secs(10), conn.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .expect("read echo");
    assert_eq!(&buf, b"hello");
    // The connection is up end to end and still open: the backend must not have seen EOF.
    assert!(
        eofs.try_recv().is_err(),
        "backend saw EOF before the half-close"
    );

    conn.shutdown().await.expect("half-close");
    let seen = timeout(Duration::from_secs(10), eofs.recv())
        .await
        .expect("backend never saw EOF")
        .expect("echo server gone");
    assert_eq!(seen, 5, "backend saw EOF after the wrong number of bytes");

    // The backend then closes its side, which must come back to us as EOF too.
    let mut rest = Vec::new();
    timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("no EOF back from the backend")
        .expect("read after half-close");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn dropping_the_guest_ends_run_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (echo, proxy) = paths(&dir);
    let _eofs = spawn_echo(&echo);
    let (host_end, guest) = start_guest(&echo);
    let listener = UnixListener::bind(&proxy).expect("bind proxy socket");
    let host = tokio::spawn(mux::run_host(host_end, listener));

    // A client in the middle of a conversation when the VM disappears.
    let mut conn = UnixStream::connect(&proxy).await.expect("connect proxy");
    conn.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    timeout(Duration::from_secs(10), conn.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .expect("read echo");

    guest.abort(); // drops the guest's end of the socket pair
    let ended = timeout(Duration::from_secs(10), host)
        .await
        .expect("run_host did not return after the guest went away")
        .expect("run_host panicked");
    assert!(ended.is_ok(), "run_host failed: {ended:?}");

    // The client is not left hanging: it sees EOF (or a reset).
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("client left hanging");
    assert!(read.is_err() || rest.is_empty());
}

#[tokio::test]
async fn host_shutdown_ends_the_guest_session_through_a_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (echo, proxy) = paths(&dir);
    let _eofs = spawn_echo(&echo);
    // The guest end runs on PortIo (as on the real virtio port) over a socket pair.
    let (host_end, guest_end) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    guest_end.set_nonblocking(true).expect("nonblocking");
    let port = mux::PortIo::new(guest_end.into()).expect("PortIo");
    let guest = tokio::spawn(mux::serve_guest(port, echo.clone()));
    host_end.set_nonblocking(true).expect("nonblocking");
    let host_end = UnixStream::from_std(host_end).expect("tokio socket");
    let listener = UnixListener::bind(&proxy).expect("bind proxy socket");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let host = tokio::spawn(mux::run_host_until(host_end, listener, async move {
        let _ = stop_rx.await;
    }));

    let data = pseudo_random(99, 300 * 1024);
    let conn = UnixStream::connect(&proxy).await.expect("connect proxy");
    let back = timeout(Duration::from_secs(60), round_trip(conn, &data))
        .await
        .expect("round trip through PortIo timed out");
    assert!(back == data, "bytes differ through PortIo");

    let _ = stop_tx.send(());
    let host_ended = timeout(Duration::from_secs(10), host)
        .await
        .expect("run_host_until did not stop")
        .expect("run_host_until panicked");
    assert!(host_ended.is_ok(), "run_host_until failed: {host_ended:?}");
    let guest_ended = timeout(Duration::from_secs(10), guest)
        .await
        .expect("the guest session did not end on GoAway")
        .expect("serve_guest panicked");
    assert!(guest_ended.is_ok(), "serve_guest failed: {guest_ended:?}");
}

//! PortIo against a FIFO, which mimics a virtio port whose host side comes and goes:
//! with no writer, a read returns 0; after a writer has left, poll reports POLLHUP.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

fn open_writer(path: &Path) -> File {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open FIFO for writing")
}

/// Reads one byte at a time from the port and forwards each read's bytes; a 0-byte read
/// (EOF) is forwarded as an empty vector, which the tests treat as a failure.
fn spawn_reader(mut port: mux::PortIo) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match port.read(&mut buf).await {
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() || n == 0 {
                        return;
                    }
                }
                Err(e) => panic!("port read failed: {e}"),
            }
        }
    });
    rx
}

#[tokio::test]
async fn port_waits_for_a_peer_instead_of_reporting_eof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("port");
    mkfifo(&fifo);
    let rd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open FIFO for reading");
    let mut got = spawn_reader(mux::PortIo::new(rd.into()).expect("PortIo"));

    // No peer yet: reads return 0, which must not surface as EOF.
    sleep(Duration::from_millis(100)).await;
    assert!(
        got.try_recv().is_err(),
        "read completed with no peer connected"
    );

    // A peer connects late and sends.
    let mut peer = open_writer(&fifo);
    peer.write_all(b"hello").expect("write");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let chunk = timeout(Duration::from_secs(5), got.recv())
            .await
            .expect("data from the late peer never arrived")
            .expect("reader gone");
        assert!(!chunk.is_empty(), "EOF reported");
        seen.extend(chunk);
    }
    assert_eq!(seen, b"hello");

    // The peer goes away (POLLHUP from now on) and another one connects.
    drop(peer);
    sleep(Duration::from_millis(100)).await;
    assert!(
        got.try_recv().is_err(),
        "read completed after the peer left"
    );
    let mut peer = open_writer(&fifo);

    // Ping-pong: each byte is written only after the previous one was read, so the reader is
    // always waiting when data arrives. If the stale HUP had left the port on its 10 ms
    // retry timer, 50 rounds would take >= 500 ms; readiness-driven they take a few ms.
    let rounds = 50;
    let start = Instant::now();
    for i in 0..rounds {
        peer.write_all(&[i as u8]).expect("write");
        let chunk = timeout(Duration::from_secs(5), got.recv())
            .await
            .expect("byte never arrived")
            .expect("reader gone");
        assert_eq!(chunk, vec![i as u8]);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(250),
        "{rounds} round trips took {took:?}: still polling on the retry timer?"
    );
}

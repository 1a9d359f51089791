//! The port-forward relay (CRI PortForward): an exec whose program is
//! `protocols::PORT_FORWARD_PROGRAM PORT` connects to 127.0.0.1:PORT in the VM's network
//! namespace, where the pod's servers listen, and copies bytes both ways between that
//! connection and its own stdin/stdout, which the host's kata-shim relays to the connection
//! the host accepted in the pod's namespace. Runs in the exec helper's child, which has joined
//! the container's namespaces; no program of the container is needed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::FromRawFd;

/// The port an exec's args ask to relay to, when they name the relay.
pub fn requested_port(args: &[String]) -> Option<Result<u16, String>> {
    match args {
        [program, port] if program == protocols::PORT_FORWARD_PROGRAM => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{program}: bad port {port:?}")),
        ),
        [program, ..] if program == protocols::PORT_FORWARD_PROGRAM => {
            Some(Err(format!("usage: {program} PORT")))
        }
        _ => None,
    }
}

/// Relays stdin/stdout to 127.0.0.1:`port`; returns the exit code.
pub fn run(port: u16) -> i32 {
    let conn = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("port-forward: connecting to 127.0.0.1:{port} in the pod: {e}");
            return 1;
        }
    };
    let Ok(to_server) = conn.try_clone() else {
        return 1;
    };
    // stdin → server; EOF from the client becomes a half-close towards the server.
    let upstream = std::thread::spawn(move || {
        // SAFETY: fd 0 is this process's stdin, owned by nobody else here.
        let mut stdin = unsafe { std::fs::File::from_raw_fd(0) };
        let mut to_server = to_server;
        let _ = std::io::copy(&mut stdin, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
        std::mem::forget(stdin);
    });
    // server → stdout, until the server closes.
    // SAFETY: fd 1 is this process's stdout.
    let mut stdout = unsafe { std::fs::File::from_raw_fd(1) };
    let mut conn = conn;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stdout.flush();
    drop(stdout);
    // The client's side may still be open (it is waiting for us): we are done.
    drop(upstream);
    0
}

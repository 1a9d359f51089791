//! Following the guest console: the agent's lines are logged with `source=agent`, the kernel's with
//! `source=agent stream=console`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::logger::{AGENT, GUEST};

/// QEMU creates the console socket when it starts; the proxy may be a little early.
const CONNECT_ATTEMPTS: u32 = 10;
const CONNECT_DELAY: Duration = Duration::from_millis(100);

/// Longest line kept; a guest writing without newlines is logged in pieces of this size
/// instead of growing the buffer without bound.
const MAX_LINE: usize = 4096;

/// Logs the console's lines until it closes. Failures are logged, never fatal: the console
/// is a debugging aid and the agent channel does not depend on it.
pub async fn follow(path: PathBuf) {
    let mut console = None;
    for attempt in 1..=CONNECT_ATTEMPTS {
        match UnixStream::connect(&path).await {
            Ok(stream) => {
                console = Some(stream);
                break;
            }
            Err(e) if attempt == CONNECT_ATTEMPTS => {
                log::warn!(
                    "cannot connect to the guest console {}: {e}",
                    path.display()
                );
            }
            Err(_) => tokio::time::sleep(CONNECT_DELAY).await,
        }
    }
    let Some(mut console) = console else { return };
    log::debug!("following the guest console {}", path.display());

    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let n = match console.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                log::warn!("reading the guest console failed: {e}");
                break;
            }
        };
        for &byte in &buf[..n] {
            if byte == b'\n' {
                emit(&mut line);
            } else {
                line.push(byte);
                if line.len() >= MAX_LINE {
                    emit(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
    log::debug!("the guest console closed");
}

fn emit(line: &mut Vec<u8>) {
    // Console lines end in "\r\n"; the guest's output is not necessarily UTF-8.
    let text = String::from_utf8_lossy(line);
    let mut text = text.trim_end_matches('\r');
    // The agent's first line may follow firmware output that ended without a newline.
    if let Some(at) = text.find("kata-agent ").filter(|&at| at > 0) {
        if agent_record(&text[at..]).is_some() {
            log::info!(target: GUEST, "{}", &text[..at]);
            text = &text[at..];
        }
    }
    match agent_record(text) {
        Some((level, msg)) => log::log!(target: AGENT, level, "{msg}"),
        None => log::info!(target: GUEST, "{text}"),
    }
    line.clear();
}

/// The agent writes `kata-agent LEVEL: message` lines (cmd/kata-agent's logger).
fn agent_record(text: &str) -> Option<(log::Level, &str)> {
    let rest = text.strip_prefix("kata-agent ")?;
    let (level, msg) = rest.split_once(": ")?;
    let level = match level {
        "error" => log::Level::Error,
        "warn" => log::Level::Warn,
        "info" => log::Level::Info,
        "debug" => log::Level::Debug,
        "trace" => log::Level::Trace,
        _ => return None,
    };
    Some((level, msg))
}

#[cfg(test)]
mod tests {
    use super::agent_record;

    #[test]
    fn agent_lines_are_told_from_kernel_lines() {
        assert_eq!(
            agent_record("kata-agent warn: container c1: exited"),
            Some((log::Level::Warn, "container c1: exited"))
        );
        assert_eq!(agent_record("[    1.234] virtio_net: eth0 up"), None);
        assert_eq!(agent_record("kata-agent loud: x"), None);
    }
}

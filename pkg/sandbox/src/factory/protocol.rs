//! The factory daemon's socket protocol: one JSON request line, one JSON answer line, then
//! the connection closes. Only root reaches the socket (its folder is 0700).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hypervisor::QemuState;
use serde::{Deserialize, Serialize};
use store::ProcessRef;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Status,
    /// A VM for a new sandbox whose VM settings give `key` ([`super::cache_key`]).
    Take {
        key: String,
    },
    /// Stop every cached VM, remove the template, exit.
    Destroy,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub vm: Option<CachedVm>,
    /// Why `take` gave no VM.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `factory status` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub endpoint: PathBuf,
    pub vm_cache_number: u32,
    /// Booted VMs waiting for a sandbox.
    pub ready: Vec<ReadyVm>,
    /// A replacement is being booted.
    pub booting: bool,
    /// The template folder when templating is on and the template is saved.
    pub template: Option<PathBuf>,
    /// Milliseconds it took to make the template (boot, pause, save).
    pub template_ms: Option<u64>,
    /// VMs handed to sandboxes since the daemon started.
    pub handed_out: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyVm {
    pub name: String,
    pub qemu_pid: i32,
    pub proxy_pid: i32,
    /// From QEMU's start to the agent answering, in milliseconds.
    pub boot_ms: u64,
    pub from_template: bool,
}

/// A booted VM with its proxy, agent ready, as handed to a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedVm {
    pub name: String,
    pub qemu: QemuState,
    pub proxy: ProcessRef,
    pub vm_dir: PathBuf,
    pub shared_dir: PathBuf,
    pub boot_ms: u64,
    pub from_template: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("factory socket {}: {source}", .endpoint.display())]
    Io {
        endpoint: PathBuf,
        source: std::io::Error,
    },
    #[error("factory socket {}: bad answer: {source}", .endpoint.display())]
    Decode {
        endpoint: PathBuf,
        source: serde_json::Error,
    },
}

/// Sends `req` to the daemon at `endpoint`, waits at most `timeout` for its answer.
pub(crate) fn call(
    endpoint: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let io = |source| CallError::Io {
        endpoint: endpoint.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(endpoint).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|source| CallError::Decode {
        endpoint: endpoint.to_path_buf(),
        source,
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|source| CallError::Decode {
        endpoint: endpoint.to_path_buf(),
        source,
    })
}

/// Reads one request from a client of the daemon.
pub(crate) fn read_request(stream: &UnixStream) -> Result<Request, String> {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("reading a request: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"))
}

pub(crate) fn write_response(mut stream: &UnixStream, r: &Response) {
    let Ok(mut line) = serde_json::to_vec(r) else {
        return;
    };
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        log::warn!("factory: answering a client: {e}");
    }
}

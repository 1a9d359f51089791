//! A small synchronous QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! QMP is newline-delimited JSON. After connecting, QEMU sends a greeting; the
//! client must send `qmp_capabilities` before any other command. Asynchronous
//! events (`{"event": ...}`) can arrive at any time, including *before* the reply
//! to the command that caused them (QEMU 7.2 sends SHUTDOWN before `quit`'s
//! return), so events seen while waiting for a reply are queued for
//! [`QmpClient::wait_event`] instead of being dropped.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Upper bound on one QMP message. The largest real reply (query-qmp-schema) is a
/// few hundred KiB; anything far beyond that means we are not talking to QEMU.
const MAX_MESSAGE: usize = 16 << 20;
/// Events kept for `wait_event`; older ones are dropped so a chatty guest cannot
/// grow the queue without bound.
const MAX_QUEUED_EVENTS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP: cannot connect to {}: {source} (is QEMU running?)", .path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QMP {}: timed out after {timeout:?} waiting for {waiting_for}; check that QEMU is alive and not stuck, and that no other QMP client holds the socket (QEMU serves one at a time)", .path.display())]
    Timeout {
        path: PathBuf,
        waiting_for: String,
        timeout: Duration,
    },
    #[error("QMP {}: QEMU closed the connection while waiting for {waiting_for}", .path.display())]
    Closed { path: PathBuf, waiting_for: String },
    #[error("QMP {}: I/O error while {doing}: {source}", .path.display())]
    Io {
        path: PathBuf,
        doing: String,
        source: std::io::Error,
    },
    #[error("QMP {}: protocol error: {detail}", .path.display())]
    Protocol { path: PathBuf, detail: String },
    #[error("QMP {}: command {command} failed: {class}: {desc}", .path.display())]
    Command {
        path: PathBuf,
        command: String,
        class: String,
        desc: String,
    },
}

pub struct QmpClient {
    path: PathBuf,
    stream: UnixStream,
    /// Bytes received but not yet split into lines (a timeout can strike mid-line).
    buf: Vec<u8>,
    events: VecDeque<Value>,
    greeting: Value,
    next_id: u64,
    timeout: Duration,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl QmpClient {
    /// Connects, reads the greeting and negotiates capabilities. `timeout` bounds
    /// each later [`execute`](Self::execute) as well as this handshake.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut client = QmpClient {
            path: path.to_path_buf(),
            stream,
            buf: Vec::new(),
            events: VecDeque::new(),
            greeting: Value::Null,
            next_id: 1,
            timeout,
        };
        let deadline = Instant::now() + timeout;
        let greeting = client.read_message(deadline, "the QMP greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(client.protocol(format!("expected the greeting, got {greeting}")));
        }
        client.greeting = greeting;
        client.execute("qmp_capabilities", None)?;
        Ok(client)
    }

    /// The greeting (`{"QMP": {"version": ..., "capabilities": [...]}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs one command and returns its `return` value. Events that arrive meanwhile
    /// are queued for [`wait_event`](Self::wait_event).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_passing(command, arguments, None)
    }

    /// Passes the open descriptor `fd` to QEMU under `name` (QMP `getfd`, the descriptor
    /// travelling as SCM_RIGHTS with the command), for a later `netdev_add ... fd=name`.
    pub fn pass_fd(&mut self, name: &str, fd: std::os::fd::BorrowedFd) -> Result<(), QmpError> {
        self.execute_passing("getfd", Some(json!({ "fdname": name })), Some(fd))
            .map(|_| ())
    }

    fn execute_passing(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<std::os::fd::BorrowedFd>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            request["arguments"] = args;
        }
        let mut line = request.to_string();
        line.push('\n');
        log::debug!("QMP {} -> {}", self.path.display(), line.trim_end());

        let deadline = Instant::now() + self.timeout;
        self.stream
            .set_write_timeout(Some(self.timeout.max(Duration::from_millis(1))))
            .map_err(|e| self.io("setting the write timeout", e))?;
        let sent = match fd {
            None => self.stream.write_all(line.as_bytes()),
            Some(fd) => send_with_fd(&self.stream, line.as_bytes(), fd),
        };
        if let Err(e) = sent {
            return Err(match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    self.timeout_error(format!("sending `{command}`"))
                }
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => {
                    self.closed(format!("sending `{command}`"))
                }
                _ => self.io(&format!("sending `{command}`"), e),
            });
        }

        let waiting_for = format!("the reply to `{command}`");
        loop {
            let msg = self.read_message(deadline, &waiting_for)?;
            if msg.get("event").is_some() {
                self.queue_event(msg);
                continue;
            }
            // A reply carrying another id belongs to an earlier command that timed out.
            if let Some(other) = msg.get("id") {
                if other.as_u64() != Some(id) {
                    log::debug!("QMP {}: dropping stale reply {msg}", self.path.display());
                    continue;
                }
            }
            if let Some(ret) = msg.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = msg.get("error") {
                let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                return Err(QmpError::Command {
                    path: self.path.clone(),
                    command: command.to_string(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            log::warn!(
                "QMP {}: ignoring unexpected message {msg}",
                self.path.display()
            );
        }
    }

    /// Waits for an event named `name` whose whole message satisfies `predicate`
    /// (e.g. `|e| e["data"]["device"] == "virtio-blk1"` for DEVICE_DELETED) and
    /// returns that message. Queued events are searched first; non-matching ones
    /// stay queued.
    pub fn wait_event(
        &mut self,
        name: &str,
        mut predicate: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let matches = |e: &Value, predicate: &mut dyn FnMut(&Value) -> bool| {
            e.get("event").and_then(Value::as_str) == Some(name) && predicate(e)
        };
        if let Some(pos) = self.events.iter().position(|e| matches(e, &mut predicate)) {
            if let Some(event) = self.events.remove(pos) {
                return Ok(event);
            }
        }
        let deadline = Instant::now() + timeout;
        let waiting_for = format!("event {name}");
        loop {
            let msg = self.read_message(deadline, &waiting_for)?;
            if msg.get("event").is_none() {
                log::debug!(
                    "QMP {}: ignoring non-event {msg} while waiting for {name}",
                    self.path.display()
                );
                continue;
            }
            if matches(&msg, &mut predicate) {
                return Ok(msg);
            }
            self.queue_event(msg);
        }
    }

    /// Takes all queued events, oldest first.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    fn queue_event(&mut self, event: Value) {
        log::debug!("QMP {}: event {event}", self.path.display());
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Reads the next non-empty JSON line, waiting at most until `deadline`.
    fn read_message(&mut self, deadline: Instant, waiting_for: &str) -> Result<Value, QmpError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text)
                    .map_err(|e| self.protocol(format!("invalid JSON {text:?}: {e}")));
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(self.protocol(format!("message longer than {MAX_MESSAGE} bytes")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_error(waiting_for.to_string()));
            }
            // A zero read timeout means "block forever" to the kernel: never pass it.
            let remaining = (deadline - now).max(Duration::from_millis(1));
            self.stream
                .set_read_timeout(Some(remaining))
                .map_err(|e| self.io("setting the read timeout", e))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.closed(waiting_for.to_string())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.timeout_error(waiting_for.to_string()))
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Err(self.closed(waiting_for.to_string()))
                }
                Err(e) => return Err(self.io(&format!("waiting for {waiting_for}"), e)),
            }
        }
    }

    fn timeout_error(&self, waiting_for: String) -> QmpError {
        QmpError::Timeout {
            path: self.path.clone(),
            waiting_for,
            timeout: self.timeout,
        }
    }
    fn closed(&self, waiting_for: String) -> QmpError {
        QmpError::Closed {
            path: self.path.clone(),
            waiting_for,
        }
    }
    fn io(&self, doing: &str, source: std::io::Error) -> QmpError {
        QmpError::Io {
            path: self.path.clone(),
            doing: doing.to_string(),
            source,
        }
    }
    fn protocol(&self, detail: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }
}

/// Writes `data` with `fd` attached (SCM_RIGHTS) to the first byte; the rest as usual.
fn send_with_fd(
    stream: &UnixStream,
    data: &[u8],
    fd: std::os::fd::BorrowedFd,
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(std::io::Error::from)?;
    let mut s = stream;
    s.write_all(&data[sent.min(data.len())..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A fake QEMU: sends the greeting, then answers each request with `reply(request)`,
    /// a list of raw lines to write back (so tests can interleave events, split lines...).
    fn fake_server(
        dir: &Path,
        reply: impl Fn(&Value) -> Vec<String> + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<Vec<Value>>) {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}, \"capabilities\": [\"oob\"]}}\r\n")
                .unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let req: Value = serde_json::from_str(&line).unwrap();
                for out in reply(&req) {
                    if w.write_all(out.as_bytes()).is_err() {
                        break;
                    }
                }
                let quit = req["execute"] == "quit";
                seen.push(req);
                if quit {
                    break;
                }
            }
            seen
        });
        (path, handle)
    }

    fn ok(req: &Value) -> String {
        format!("{}\r\n", json!({"return": {}, "id": req["id"]}))
    }

    #[test]
    fn handshake_execute_and_events_before_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake_server(dir.path(), |req| {
            match req["execute"].as_str() {
            Some("query-status") => {
                // Reply split across two writes: the client must reassemble it.
                let full = json!({"return": {"status": "running", "running": true}, "id": req["id"]}).to_string();
                let (a, b) = full.split_at(10);
                vec![a.to_string(), format!("{b}\r\n")]
            }
            Some("quit") => vec![
                "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n".into(),
                ok(req),
            ],
            _ => vec![ok(req)],
        }
        });
        let mut qmp = QmpClient::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.greeting()["QMP"]["version"]["qemu"]["major"], 7);
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        assert_eq!(qmp.execute("quit", None).unwrap(), json!({}));
        // The SHUTDOWN that came before quit's return was kept.
        let ev = qmp
            .wait_event("SHUTDOWN", |_| true, Duration::from_millis(10))
            .unwrap();
        assert_eq!(ev["data"]["reason"], "host-qmp-quit");
        let seen = server.join().unwrap();
        let names: Vec<_> = seen
            .iter()
            .map(|r| r["execute"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["qmp_capabilities", "query-status", "quit"]);
    }

    #[test]
    fn command_errors_and_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake_server(dir.path(), |req| {
            if req["execute"] == "device_del" {
                vec![format!(
                    "{}\n",
                    json!({"error": {"class": "DeviceNotFound", "desc": format!("Device '{}' not found", req["arguments"]["id"].as_str().unwrap())}, "id": req["id"]})
                )]
            } else {
                vec![ok(req)]
            }
        });
        let mut qmp = QmpClient::connect(&path, Duration::from_secs(5)).unwrap();
        let err = qmp
            .execute("device_del", Some(json!({"id": "nope"})))
            .unwrap_err();
        match err {
            QmpError::Command {
                command,
                class,
                desc,
                ..
            } => {
                assert_eq!(command, "device_del");
                assert_eq!(class, "DeviceNotFound");
                assert_eq!(desc, "Device 'nope' not found");
            }
            other => panic!("unexpected {other}"),
        }
        qmp.execute("quit", None).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn wait_event_filters_by_predicate_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake_server(dir.path(), |req| {
            if req["execute"] == "device_del" {
                vec![
                    ok(req),
                    // The backend's event comes first; only the second one is the device.
                    "{\"event\": \"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/virtio-blk1/virtio-backend\"}}\n".into(),
                    "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"virtio-blk1\", \"path\": \"/machine/peripheral/virtio-blk1\"}}\n".into(),
                ]
            } else {
                vec![ok(req)]
            }
        });
        let mut qmp = QmpClient::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.execute("device_del", Some(json!({"id": "virtio-blk1"})))
            .unwrap();
        let ev = qmp
            .wait_event(
                "DEVICE_DELETED",
                |e| e["data"]["device"] == "virtio-blk1",
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(ev["data"]["path"], "/machine/peripheral/virtio-blk1");
        let rest = qmp.take_events();
        assert_eq!(rest.len(), 1);
        assert!(rest[0]["data"].get("device").is_none());
        qmp.execute("quit", None).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn silent_server_times_out_with_a_helpful_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Accepts but never greets, like a QEMU whose monitor is busy with another client.
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let start = Instant::now();
        let err = QmpClient::connect(&path, Duration::from_millis(150)).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(450));
        assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("greeting") && msg.contains("qmp.sock") && msg.contains("check"),
            "{msg}"
        );
        server.join().unwrap();
    }

    #[test]
    fn closed_connection_and_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let err = QmpClient::connect(&dir.path().join("none.sock"), Duration::from_millis(100))
            .unwrap_err();
        assert!(matches!(err, QmpError::Connect { .. }));

        let (path, server) = fake_server(dir.path(), |req| {
            if req["execute"] == "quit" {
                vec![] // QEMU may exit before replying to quit
            } else {
                vec![ok(req)]
            }
        });
        let mut qmp = QmpClient::connect(&path, Duration::from_secs(5)).unwrap();
        let err = qmp.execute("quit", None).unwrap_err();
        assert!(matches!(err, QmpError::Closed { .. }), "{err}");
        server.join().unwrap();
    }
}

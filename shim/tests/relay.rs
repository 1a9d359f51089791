//! Runs the real kata-shim binary against a fake agent: a ttrpc server on a unix socket that
//! emulates one `cat` process in memory (what goes into its stdin comes out of its stdout).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use protocols::agent::{
    CloseStdinRequest, Empty, ReadStreamRequest, ReadStreamResponse, SignalProcessRequest,
    TtyWinResizeRequest, WaitProcessRequest, WaitProcessResponse, WriteStreamRequest,
    WriteStreamResponse,
};
use protocols::agent_ttrpc::{create_agent_service, AgentService};
use protocols::health::{health_check_response::ServingStatus, CheckRequest, HealthCheckResponse};
use protocols::health_ttrpc::{create_health, Health};
use ttrpc::{Code, TtrpcContext};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The shim under test; KATA_SHIM_BIN lets the RSS measurement use a release build.
fn shim_bin() -> PathBuf {
    std::env::var_os("KATA_SHIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kata-shim")))
}

// ---------------------------------------------------------------------------------------------
// The fake agent

#[derive(Default)]
struct Cat {
    /// Bytes written to the process's stdin and not yet read back from its stdout.
    pipe: VecDeque<u8>,
    stdin_closed: bool,
    /// Set when a signal killed the process.
    killed: Option<i32>,
    signals: Vec<u32>,
    write_calls: usize,
    short_writes: usize,
    close_calls: usize,
    read_stdout_calls: usize,
    read_stderr_calls: usize,
    resizes: Vec<(u32, u32)>,
    /// Bad requests (wrong ids, reads past EOF...), reported by the tests.
    errors: Vec<String>,
}

impl Cat {
    /// `cat` exits once its stdin ended and everything it read was written out.
    fn exit_status(&self) -> Option<i32> {
        self.killed
            .or((self.stdin_closed && self.pipe.is_empty()).then_some(0))
    }
}

struct FakeAgent {
    container: String,
    exec_id: String,
    /// At most this many bytes taken per WriteStdin, so the shim must handle short writes.
    max_take: usize,
    /// Like a pipe's capacity: WriteStdin blocks while this much is unread.
    capacity: usize,
    cat: Mutex<Cat>,
    changed: Condvar,
}

fn status(code: Code, msg: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn eof() -> ttrpc::Error {
    status(Code::UNKNOWN, "EOF")
}

impl FakeAgent {
    fn lock(&self) -> MutexGuard<'_, Cat> {
        self.cat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the ids a request names; a shim talking about another process is a bug.
    fn check(&self, what: &str, cid: &str, eid: &str) -> ttrpc::Result<()> {
        if cid == self.container && eid == self.exec_id {
            return Ok(());
        }
        let msg = format!("{what} for container={cid:?} exec={eid:?}");
        self.lock().errors.push(msg.clone());
        Err(status(Code::NOT_FOUND, &msg))
    }

    fn wait_while<'a>(
        &self,
        guard: MutexGuard<'a, Cat>,
        cond: impl FnMut(&mut Cat) -> bool,
    ) -> MutexGuard<'a, Cat> {
        self.changed
            .wait_while(guard, cond)
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl AgentService for FakeAgent {
    fn write_stdin(
        &self,
        _: &TtrpcContext,
        req: WriteStreamRequest,
    ) -> ttrpc::Result<WriteStreamResponse> {
        self.check("WriteStdin", &req.container_id, &req.exec_id)?;
        let cat = self.lock();
        let mut cat = self.wait_while(cat, |c| c.pipe.len() >= self.capacity && c.killed.is_none());
        cat.write_calls += 1;
        if cat.killed.is_some() || cat.stdin_closed {
            return Err(status(Code::FAILED_PRECONDITION, "write to a closed stdin"));
        }
        let take = req
            .data
            .len()
            .min(self.max_take)
            .min(self.capacity - cat.pipe.len());
        if take < req.data.len() {
            cat.short_writes += 1;
        }
        cat.pipe.extend(&req.data[..take]);
        self.changed.notify_all();
        Ok(WriteStreamResponse {
            len: take as u32,
            ..Default::default()
        })
    }

    fn read_stdout(
        &self,
        _: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.check("ReadStdout", &req.container_id, &req.exec_id)?;
        let mut cat = self.lock();
        cat.read_stdout_calls += 1;
        self.changed.notify_all();
        let mut cat = self.wait_while(cat, |c| c.pipe.is_empty() && c.exit_status().is_none());
        if cat.killed.is_some() || cat.pipe.is_empty() {
            return Err(eof());
        }
        let n = (req.len as usize).min(cat.pipe.len());
        let data: Vec<u8> = cat.pipe.drain(..n).collect();
        self.changed.notify_all();
        Ok(ReadStreamResponse {
            data,
            ..Default::default()
        })
    }

    fn read_stderr(
        &self,
        _: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.check("ReadStderr", &req.container_id, &req.exec_id)?;
        let mut cat = self.lock();
        cat.read_stderr_calls += 1;
        // cat writes nothing to stderr: it just ends when the process does.
        let _cat = self.wait_while(cat, |c| c.exit_status().is_none());
        Err(eof())
    }

    fn close_stdin(&self, _: &TtrpcContext, req: CloseStdinRequest) -> ttrpc::Result<Empty> {
        self.check("CloseStdin", &req.container_id, &req.exec_id)?;
        let mut cat = self.lock();
        cat.close_calls += 1;
        cat.stdin_closed = true;
        self.changed.notify_all();
        Ok(Empty::new())
    }

    fn signal_process(&self, _: &TtrpcContext, req: SignalProcessRequest) -> ttrpc::Result<Empty> {
        self.check("SignalProcess", &req.container_id, &req.exec_id)?;
        let mut cat = self.lock();
        cat.signals.push(req.signal);
        // SIGHUP and the rest are only recorded, so a test can see them arrive and go on.
        if req.signal == libc::SIGTERM as u32 || req.signal == libc::SIGKILL as u32 {
            cat.killed = Some(128 + req.signal as i32);
            cat.pipe.clear();
        }
        self.changed.notify_all();
        Ok(Empty::new())
    }

    fn wait_process(
        &self,
        _: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        self.check("WaitProcess", &req.container_id, &req.exec_id)?;
        let cat = self.lock();
        let cat = self.wait_while(cat, |c| c.exit_status().is_none());
        let status = cat.exit_status().unwrap_or(-1);
        Ok(WaitProcessResponse {
            status,
            ..Default::default()
        })
    }

    fn tty_win_resize(&self, _: &TtrpcContext, req: TtyWinResizeRequest) -> ttrpc::Result<Empty> {
        self.check("TtyWinResize", &req.container_id, &req.exec_id)?;
        let mut cat = self.lock();
        cat.resizes.push((req.row, req.column));
        self.changed.notify_all();
        Ok(Empty::new())
    }
}

impl Health for FakeAgent {
    fn check(&self, _: &TtrpcContext, _: CheckRequest) -> ttrpc::Result<HealthCheckResponse> {
        Ok(HealthCheckResponse {
            status: ServingStatus::SERVING.into(),
            ..Default::default()
        })
    }
}

struct Fixture {
    agent: Arc<FakeAgent>,
    _server: ttrpc::Server,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start(container: &str, exec_id: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Arc::new(FakeAgent {
            container: container.into(),
            exec_id: exec_id.into(),
            max_take: 10_000,
            capacity: 256 * 1024,
            cat: Mutex::new(Cat::default()),
            changed: Condvar::new(),
        });
        let url = format!("unix://{}", dir.path().join("proxy.sock").display());
        let mut server = ttrpc::Server::new()
            .bind(&url)
            .expect("bind the fake agent")
            .register_service(create_agent_service(agent.clone()))
            .register_service(create_health(agent.clone()));
        server.start().expect("start the fake agent");
        Fixture {
            agent,
            _server: server,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("proxy.sock").display())
    }

    fn cat(&self) -> MutexGuard<'_, Cat> {
        self.agent.lock()
    }

    /// Waits until `cond` holds on the fake's state; false on timeout.
    fn wait_for(&self, mut cond: impl FnMut(&Cat) -> bool) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        let mut cat = self.agent.lock();
        while !cond(&cat) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            cat = self
                .agent
                .changed
                .wait_timeout(cat, left.min(Duration::from_millis(50)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    fn assert_no_errors(&self) {
        let errors = self.cat().errors.clone();
        assert!(errors.is_empty(), "fake agent saw bad requests: {errors:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn shim(args: &[&str]) -> Command {
    let mut cmd = Command::new(shim_bin());
    cmd.args(args).stderr(Stdio::piped());
    cmd
}

/// Collects a child's stderr in the background so it can neither block nor be lost.
fn drain_stderr(err: Option<ChildStderr>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = err {
            let _ = e.read_to_string(&mut s);
        }
        s
    })
}

/// Waits for the child, killing it and failing the test if it outlives TIMEOUT.
fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kata-shim did not exit within {TIMEOUT:?}");
            }
            Err(e) => panic!("waiting for kata-shim: {e}"),
        }
    }
}

fn kill(child: &Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({}, {sig}): {}",
        child.id(),
        std::io::Error::last_os_error()
    );
}

/// Deterministic noise (xorshift64*): incompressible enough to catch reordering or loss.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn feed(mut stdin: std::process::ChildStdin, data: Vec<u8>) -> JoinHandle<()> {
    thread::spawn(move || {
        // An error means the shim went away early; the exit status assertions will say why.
        let _ = stdin.write_all(&data);
    })
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn one_mib_round_trip_exits_zero_and_logs_to_file() {
    let fx = Fixture::start("c1", "c1");
    let log = fx.dir.path().join("shim.log");
    let log_arg = log.display().to_string();
    let url = fx.url();
    let mut child = shim(&[
        "--agent",
        &url,
        "--container",
        "c1",
        "--exec-id",
        "c1",
        "--log",
        &log_arg,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    let data = noise(1 << 20);
    let feeder = feed(child.stdin.take().expect("stdin"), data.clone());
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read stdout");
    let st = wait(&mut child);
    let _ = feeder.join();
    let stderr = err.join().unwrap_or_default();

    assert_eq!(st.code(), Some(0), "exit status {st}; stderr: {stderr}");
    assert_eq!(out.len(), data.len(), "stdout length");
    assert!(out == data, "stdout differs from stdin");
    assert_eq!(
        stderr, "",
        "the shim must be quiet on the container's stderr"
    );
    fx.assert_no_errors();
    let cat = fx.cat();
    assert!(cat.short_writes > 0, "the fake never took a partial write");
    assert_eq!(cat.close_calls, 1, "CloseStdin calls");
    assert!(
        cat.signals.is_empty(),
        "unexpected signals {:?}",
        cat.signals
    );
    assert!(cat.read_stderr_calls > 0, "stderr was not relayed");

    let text = std::fs::read_to_string(&log).expect("read the log file");
    assert!(
        text.lines()
            .all(|l| l.starts_with("time=") && l.contains(" source=shim container=c1 msg=")),
        "log:\n{text}"
    );
    assert!(
        text.contains("process exited with status 0"),
        "log:\n{text}"
    );
}

#[test]
fn sighup_is_forwarded_and_sigwinch_without_terminal_is_not() {
    let fx = Fixture::start("c2", "e2");
    let url = fx.url();
    // Kata 1.x's single-dash spelling.
    let mut child = shim(&["-agent", &url, "-container", "c2", "-exec-id=e2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    // A ReadStdout call means the shim is past start-up, with its signals blocked and collected.
    assert!(
        fx.wait_for(|c| c.read_stdout_calls > 0),
        "shim never read stdout"
    );

    kill(&child, libc::SIGWINCH);
    kill(&child, libc::SIGHUP);
    assert!(
        fx.wait_for(|c| c.signals.contains(&1)),
        "SIGHUP never reached the agent"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGHUP killed the shim"
    );

    drop(child.stdin.take());
    let st = wait(&mut child);
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(0), "exit status {st}; stderr: {stderr}");
    fx.assert_no_errors();
    assert_eq!(fx.cat().signals, vec![1], "signals seen by the agent");
}

#[test]
fn sigterm_ends_the_process_and_the_shim_exits_143() {
    let fx = Fixture::start("c3", "c3");
    let url = fx.url();
    let mut child = shim(&["--agent", &url, "--container", "c3", "--exec-id", "c3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    assert!(
        fx.wait_for(|c| c.read_stdout_calls > 0),
        "shim never read stdout"
    );

    kill(&child, libc::SIGTERM);
    // Our end of its stdin stays open: the shim must not wait for it.
    let st = wait(&mut child);
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(143), "exit status {st}; stderr: {stderr}");
    fx.assert_no_errors();
    assert_eq!(fx.cat().signals, vec![libc::SIGTERM as u32]);
}

#[test]
fn unreachable_agent_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("no-proxy.sock");
    let url = format!("unix://{}", sock.display());
    let mut child = shim(&["--agent", &url, "--container", "c4", "--exec-id", "c4"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    let st = wait(&mut child);
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(1), "exit status {st}; stderr: {stderr}");
    assert!(
        stderr.contains("cannot reach the agent"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(&sock.display().to_string()),
        "stderr lacks the path: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
}

#[test]
fn gone_stdout_reader_does_not_stop_the_relay() {
    let fx = Fixture::start("c5", "c5");
    let url = fx.url();
    let mut child = shim(&["--agent", &url, "--container", "c5", "--exec-id", "c5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    drop(child.stdout.take());
    // Far more than the fake's pipe capacity: if the shim stopped draining after EPIPE, cat
    // would block and the shim would never exit.
    let feeder = feed(child.stdin.take().expect("stdin"), noise(4 << 20));
    let st = wait(&mut child);
    let _ = feeder.join();
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(0), "exit status {st}; stderr: {stderr}");
    assert_eq!(stderr, "", "quiet by default");
    fx.assert_no_errors();
    assert!(fx.cat().pipe.is_empty());
}

#[test]
fn closed_stdin_counts_as_empty() {
    use std::os::unix::process::CommandExt;
    let fx = Fixture::start("c8", "c8");
    let url = fx.url();
    let mut cmd = shim(&["--agent", &url, "--container", "c8", "--exec-id", "c8"]);
    cmd.stdout(Stdio::piped());
    // SAFETY: close(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(libc::STDIN_FILENO);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    // If an agent socket took fd 0, the shim would "read stdin" from it and never close the
    // process's stdin: cat would never exit.
    let st = wait(&mut child);
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(0), "exit status {st}; stderr: {stderr}");
    fx.assert_no_errors();
    assert_eq!(fx.cat().close_calls, 1);
}

#[test]
fn terminal_goes_raw_resizes_and_is_restored() {
    let fx = Fixture::start("c6", "e6");
    let url = fx.url();
    let (master, slave) = openpty();
    set_winsize(master.as_raw_fd(), 30, 100);
    assert!(
        lflag(slave.as_raw_fd()) & libc::ICANON != 0,
        "a new pty should be canonical"
    );

    let mut child = shim(&[
        "--agent",
        &url,
        "--container",
        "c6",
        "--exec-id",
        "e6",
        "--terminal",
    ])
    .stdin(Stdio::from(slave.try_clone().expect("dup pty")))
    .stdout(Stdio::piped())
    .spawn()
    .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    assert!(
        fx.wait_for(|c| c.resizes.contains(&(30, 100))),
        "initial size not sent"
    );
    assert!(
        fx.wait_for(|c| c.read_stdout_calls > 0),
        "shim never read stdout"
    );
    assert_eq!(
        lflag(slave.as_raw_fd()) & (libc::ICANON | libc::ECHO),
        0,
        "stdin not raw"
    );

    // Raw mode: bytes go through at once, without a newline.
    let mut m = std::fs::File::from(master.try_clone().expect("dup master"));
    m.write_all(b"hi").expect("type into the pty");
    let mut out = [0u8; 2];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut out)
        .expect("read relayed bytes");
    assert_eq!(&out, b"hi");

    set_winsize(master.as_raw_fd(), 40, 120);
    kill(&child, libc::SIGWINCH);
    assert!(
        fx.wait_for(|c| c.resizes.contains(&(40, 120))),
        "resize not forwarded"
    );

    kill(&child, libc::SIGTERM);
    let st = wait(&mut child);
    let stderr = err.join().unwrap_or_default();
    assert_eq!(st.code(), Some(143), "exit status {st}; stderr: {stderr}");
    assert!(
        lflag(slave.as_raw_fd()) & libc::ICANON != 0,
        "terminal not restored"
    );
    fx.assert_no_errors();
    let cat = fx.cat();
    assert_eq!(
        cat.read_stderr_calls, 0,
        "with a terminal there is no separate stderr"
    );
    assert_eq!(
        cat.signals,
        vec![libc::SIGTERM as u32],
        "SIGWINCH must not be forwarded"
    );
}

/// Not a check but a measurement: `KATA_SHIM_BIN=target/release/kata-shim cargo test -p kata-shim
/// --test relay -- --ignored --nocapture rss`.
#[test]
#[ignore]
fn rss_while_relaying() {
    let fx = Fixture::start("c7", "c7");
    let url = fx.url();
    let mut child = shim(&["--agent", &url, "--container", "c7", "--exec-id", "c7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn kata-shim");
    let err = drain_stderr(child.stderr.take());
    let pid = child.id();
    assert!(
        fx.wait_for(|c| c.read_stdout_calls > 0),
        "shim never read stdout"
    );
    thread::sleep(Duration::from_millis(200));
    println!("idle VmRSS: {:?} kB", proc_status_kb(pid, "VmRSS:"));
    let before = context_switches(pid);
    thread::sleep(Duration::from_secs(1));
    println!(
        "idle wake-ups per second: {}",
        context_switches(pid) - before
    );
    let total = 64 << 20;
    let data = noise(total);
    let started = Instant::now();
    let feeder = feed(child.stdin.take().expect("stdin"), data);
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut peak_rss) = (0usize, 0u64);
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
        if let Some(rss) = proc_status_kb(pid, "VmRSS:") {
            peak_rss = peak_rss.max(rss);
        }
        if got > total / 2 && got - n <= total / 2 {
            println!("mid-relay threads: {:?}", proc_status_kb(pid, "Threads:"));
            println!("mid-relay VmHWM: {:?} kB", proc_status_kb(pid, "VmHWM:"));
            print_smaps(pid);
        }
    }
    let elapsed = started.elapsed();
    let st = wait(&mut child);
    let _ = feeder.join();
    println!(
        "throughput: {:.0} MiB/s",
        (got >> 20) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "shim {:?}: relayed {got} bytes, peak sampled VmRSS {peak_rss} kB, exit {st}",
        shim_bin()
    );
    println!("stderr: {}", err.join().unwrap_or_default());
    assert_eq!(got, total);
}

/// Resident memory per mapping, to see where it goes.
fn print_smaps(pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let kb = |l: &str| {
        l.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (mut name, mut rss, mut anon) = (String::new(), 0u64, 0u64);
    let mut lines = Vec::new();
    for l in text.lines().chain(std::iter::once("0-0 end")) {
        let head = l.split_whitespace().next().unwrap_or("");
        if head.contains('-') && !head.ends_with(':') {
            if rss > 0 {
                lines.push(format!("{rss:6} kB rss {anon:6} kB anon  {name}"));
            }
            name = l.to_string();
            (rss, anon) = (0, 0);
        } else if l.starts_with("Rss:") {
            rss = kb(l);
        } else if l.starts_with("Anonymous:") {
            anon = kb(l);
        }
    }
    println!("smaps:\n{}", lines.join("\n"));
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    for l in rollup.lines().skip(1).filter(|l| !l.ends_with(" 0 kB")) {
        println!("{l}");
    }
}

/// Voluntary context switches of all the threads of `pid`: how often an idle shim wakes up.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            let l = s
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s): (RawFd, RawFd) = (-1, -1);
    // SAFETY: out pointers are valid; name/termios/winsize may be NULL.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just returned these descriptors to us.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

fn lflag(fd: RawFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::tcgetattr(fd, &mut t) };
    assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
    t.c_lflag
}

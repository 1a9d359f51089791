//! kata-shim: host-side stand-in for one process running in a kata VM.
//!
//! The runtime records this process's PID as the container's (or the exec's), so the caller
//! (containerd-shim, conmon) reaps us as "the container", hands us its stdio and reads our exit
//! status as the container's. We relay stdio and signals to the real process through the agent
//! and exit with the status WaitProcess reports.

mod args;
mod logger;
mod relay;
mod signals;
mod tty;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use agent_client::{messages, AgentClient};
use anyhow::{anyhow, Context, Result};

use crate::relay::Output;

/// Stack for our threads: they only shuffle 64 KiB heap buffers and make ttrpc calls, and every
/// container has one shim, so the default 2 MiB each would be waste.
pub const THREAD_STACK: usize = 64 * 1024;

/// Deadline of the agent calls that should answer at once (Check, SignalProcess, CloseStdin,
/// TtyWinResize). Reads, writes and WaitProcess wait on the workload and have none.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    // For kata-env; no other argument goes with it.
    if matches!(
        std::env::args().nth(1).as_deref(),
        Some("--version" | "-version")
    ) {
        println!("kata-shim {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            // The log may be a file; the caller, though, only sees our stderr.
            if !LOG_ON_STDERR.load(Ordering::SeqCst) {
                eprintln!("kata-shim: error: {e:#}");
            }
            1
        }
    };
    tty::restore();
    std::process::exit(code);
}

/// Whether log lines already reach stderr (so fatal errors must not be printed twice).
static LOG_ON_STDERR: AtomicBool = AtomicBool::new(false);

fn run() -> Result<i32> {
    // Before anything can start a thread: threads inherit the mask, and a signal delivered to a
    // thread with it unblocked would take its default action (mostly: kill the shim).
    let caught = signals::block_all().context("cannot block signals")?;
    tune_malloc();
    // A closed fd 0-2 would be taken by an agent socket, which we would then relay into itself;
    // Rust's runtime already opened /dev/null on any of them before main (test:
    // closed_stdin_counts_as_empty).

    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(args::Command::Run(a)) => a,
        Ok(args::Command::Help) => {
            println!("{}", args::USAGE);
            return Ok(0);
        }
        Err(e) => {
            LOG_ON_STDERR.store(true, Ordering::SeqCst);
            eprintln!("kata-shim: {e:#}\n\n{}", args::USAGE);
            return Ok(1);
        }
    };
    let ids = logger::Ids {
        sandbox: &args.sandbox,
        container: &args.container,
        exec_id: &args.exec_id,
    };
    if let Err(e) = logger::init(args.log.as_deref(), args.debug, &ids) {
        // Not fatal: losing the log is better than failing the container.
        eprintln!(
            "kata-shim: cannot open log file {}: {e}; logging to stderr",
            args.log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        logger::init(None, args.debug, &ids).ok();
    }
    LOG_ON_STDERR.store(args.log.is_none(), Ordering::SeqCst);
    log::info!(
        "started: agent={} terminal={} pid={}",
        args.agent.display(),
        args.terminal,
        std::process::id()
    );

    let connect = || {
        AgentClient::connect(&args.agent, CALL_TIMEOUT)
            .map_err(flat)
            .context("cannot reach the agent")
    };
    // All connections up front: if the proxy is not there we fail now, with one clear message,
    // instead of some thread failing later.
    let control = connect()?;
    control
        .check()
        .map_err(flat)
        .context("the agent does not answer")?;
    let stdin_client = connect()?;
    let stdout_client = connect()?;
    let stderr_client = if args.terminal {
        None
    } else {
        Some(connect()?)
    };

    let exited = Arc::new(AtomicBool::new(false));
    let fwd = signals::Forwarder {
        client: control,
        container: args.container.clone(),
        exec_id: args.exec_id.clone(),
        terminal: args.terminal,
        exited: exited.clone(),
    };
    if args.terminal {
        if tty::is_tty(libc::STDIN_FILENO) {
            if let Err(e) = tty::make_raw(libc::STDIN_FILENO) {
                log::warn!("cannot put stdin in raw mode: {e}");
            }
        }
        // The guest pty starts at a default size; give it ours before the process draws.
        fwd.resize();
    }
    signals::spawn(caught, fwd).context("cannot start the signal thread")?;

    {
        let (cid, eid, exited) = (args.container.clone(), args.exec_id.clone(), exited.clone());
        // Not joined: a read on our stdin can block forever, and must not keep us alive once
        // the process has exited.
        spawn("stdin", move || {
            relay::input(&stdin_client, &cid, &eid, &exited)
        })?;
    }
    let out = spawn_output(&stdout_client, &args, Output::Stdout)?;
    let err = match &stderr_client {
        Some(c) => Some(spawn_output(c, &args, Output::Stderr)?),
        None => None,
    };
    let mut relay_failure = join_output(out, Output::Stdout);
    if let Some(err) = err {
        relay_failure = relay_failure.or(join_output(err, Output::Stderr));
    }

    // WaitProcess only after the output ended: the agent may drop the process (and its streams)
    // once it was waited for, and output written just before exit would be lost.
    let waiter = match &relay_failure {
        None => stdout_client,
        // That connection may be what broke; if the agent is still there, the process's exit
        // status is still the right thing to report.
        Some(_) => connect()?,
    };
    let mut req = messages::WaitProcessRequest::new();
    req.container_id = args.container.clone();
    req.exec_id = args.exec_id.clone();
    let status = match waiter.wait_process(&req) {
        Ok(r) => r.status,
        Err(e) => {
            return Err(match relay_failure {
                Some(r) => anyhow!("{r}; then WaitProcess failed too: {e}"),
                None => flat(e).context("cannot learn the process's exit status"),
            })
        }
    };
    // From here on, failing calls on the other threads are expected (the process is gone).
    exited.store(true, Ordering::SeqCst);
    log::info!("process exited with status {status}");
    Ok(exit_code(status))
}

/// agent-client errors print their cause in their own message and also return it as `source()`,
/// so `{:#}` would print the cause twice; keep the message only.
fn flat(e: agent_client::Error) -> anyhow::Error {
    anyhow!("{e}")
}

fn exit_code(status: i32) -> i32 {
    if (0..=255).contains(&status) {
        status
    } else {
        // An exit status is 8 bits; keep the low ones as the kernel would.
        log::warn!("agent reported exit status {status}, outside 0-255");
        status & 0xff
    }
}

fn spawn_output(
    client: &AgentClient,
    args: &args::Args,
    which: Output,
) -> Result<JoinHandle<Result<(), agent_client::Error>>> {
    let (client, cid, eid) = (client.clone(), args.container.clone(), args.exec_id.clone());
    spawn(which.name(), move || {
        relay::output(&client, &cid, &eid, which)
    })
}

/// Waits for an output relay; returns why it failed, if it did.
fn join_output(h: JoinHandle<Result<(), agent_client::Error>>, which: Output) -> Option<String> {
    let why = match h.join() {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => format!("lost the process's {}: {e}", which.name()),
        Err(_) => format!("the {} relay thread panicked", which.name()),
    };
    log::error!("{why}");
    Some(why)
}

fn spawn<T, F>(name: &str, f: F) -> Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name(name.to_string())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Keeps glibc malloc from holding memory per thread: by default each relay thread (and each of
/// ttrpc's) gets its own arena that keeps its freed 64 KiB chunks, and chunks that size stay on
/// the heap after being freed. One arena, and mmap for anything from 32 KiB, bring a relaying
/// shim's private memory down from about 950 KiB to about 500 KiB; the price is an mmap/munmap
/// pair per chunk, small next to an agent round trip.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024);
    }
}

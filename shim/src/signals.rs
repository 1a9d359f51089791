//! Signals sent to the shim are meant for the process it stands in for.
//!
//! Every catchable signal is blocked in all threads (the mask is set before any thread exists, and
//! threads inherit it) and collected by one thread with sigwait. That thread may then make
//! blocking agent calls, which a signal handler could not.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use agent_client::{messages, AgentClient};

use crate::tty;

/// Signals left to their disposition rather than forwarded: SIGPIPE (ignored, so a vanished
/// reader shows up as EPIPE on write), SIGCHLD (we have no children; the default ignores it).
/// SIGKILL and SIGSTOP cannot be caught at all.
const NOT_FORWARDED: [libc::c_int; 4] =
    [libc::SIGPIPE, libc::SIGCHLD, libc::SIGKILL, libc::SIGSTOP];

/// The set of signals the shim collects.
#[derive(Clone, Copy)]
pub struct Caught(libc::sigset_t);

/// Blocks every signal we forward in the calling thread (so in every thread it spawns later) and
/// ignores SIGPIPE. Call first thing in main, before anything starts a thread.
pub fn block_all() -> io::Result<Caught> {
    // SAFETY: sigset_t is plain data, initialised by sigfillset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::sigfillset(&mut set) };
    for sig in NOT_FORWARDED {
        // SAFETY: valid set and signal number.
        unsafe { libc::sigdelset(&mut set, sig) };
    }
    // SIG_SETMASK rather than SIG_BLOCK: a caller may have left signals blocked across exec, and
    // a blocked SIGPIPE/SIGCHLD would just queue up.
    // SAFETY: valid set; no old mask wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // Rust's runtime already ignores SIGPIPE, but that is an implementation default; a write to
    // a closed stdout must never kill the shim (its exit status is the container's).
    // SAFETY: SIG_IGN is a valid disposition for SIGPIPE.
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(Caught(set))
}

/// Where caught signals go.
pub struct Forwarder {
    pub client: AgentClient,
    pub container: String,
    pub exec_id: String,
    pub terminal: bool,
    /// Set once WaitProcess returned: failures after that are expected (the process, maybe the
    /// whole sandbox, is gone) and not worth a warning on the container's stderr.
    pub exited: Arc<AtomicBool>,
}

impl Forwarder {
    /// Sends our terminal's size to the process's terminal.
    pub fn resize(&self) {
        let Some((rows, cols)) = tty::our_window_size() else {
            log::debug!("no window size to forward");
            return;
        };
        let mut req = messages::TtyWinResizeRequest::new();
        req.container_id = self.container.clone();
        req.exec_id = self.exec_id.clone();
        req.row = u32::from(rows);
        req.column = u32::from(cols);
        match self.client.tty_win_resize(&req) {
            Ok(_) => log::debug!("window resized to {rows}x{cols}"),
            Err(e) => self.failed(format_args!("cannot resize the process's terminal: {e}")),
        }
    }

    fn forward(&self, sig: libc::c_int) {
        let Ok(signal) = u32::try_from(sig) else {
            return;
        };
        let mut req = messages::SignalProcessRequest::new();
        req.container_id = self.container.clone();
        req.exec_id = self.exec_id.clone();
        req.signal = signal;
        match self.client.signal_process(&req) {
            Ok(_) => log::debug!("forwarded signal {sig} ({})", name(sig)),
            Err(e) => self.failed(format_args!(
                "cannot forward signal {sig} ({}): {e}",
                name(sig)
            )),
        }
    }

    fn failed(&self, msg: std::fmt::Arguments) {
        if self.exited.load(Ordering::SeqCst) {
            log::debug!("{msg} (the process has exited)");
        } else {
            log::warn!("{msg}");
        }
    }

    fn handle(&self, sig: libc::c_int) {
        match sig {
            libc::SIGWINCH if self.terminal => self.resize(),
            // Without a terminal there is nothing to resize, and forwarding SIGWINCH would
            // surprise a process that never asked for a tty.
            libc::SIGWINCH => log::debug!("SIGWINCH ignored: no terminal"),
            _ => self.forward(sig),
        }
    }
}

/// Starts the thread that waits for signals and hands them to `fwd`.
pub fn spawn(caught: Caught, fwd: Forwarder) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("signals".into())
        .stack_size(crate::THREAD_STACK)
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: the set is initialised and `sig` is a valid out pointer.
            let rc = unsafe { libc::sigwait(&caught.0, &mut sig) };
            if rc != 0 {
                // Only EINVAL is possible, which would repeat forever: give up forwarding.
                log::error!("sigwait failed: {}", io::Error::from_raw_os_error(rc));
                return;
            }
            fwd.handle(sig);
        })
}

/// A readable name for log lines.
fn name(sig: libc::c_int) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string (or NULL); it is
    // copied out at once, and only this thread calls it.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return format!("signal {sig}");
    }
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

//! Running one OCI hook as runc does: its args (argv[0] included) and env only, the
//! container's state JSON on stdin, a non-zero exit or its timeout (default 60 s) is a failure.
//! Used on the host (prestart, createRuntime, createContainer, poststart, poststop) and by the
//! agent inside the container (startContainer).

use oci_spec::runtime::Hook;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} exited with {status}")]
    Failed {
        path: String,
        status: std::process::ExitStatus,
    },
    #[error("{path} timed out after {timeout:?}")]
    Timeout { path: String, timeout: Duration },
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes the state to the hook's stdin on a thread of its own, with SIGPIPE blocked there: a
/// hook that exits without reading it (or never reads it) must neither kill the caller (whose
/// SIGPIPE may be the default action, as in kata-runtime) nor block it past the timeout. A
/// SIGPIPE raised by that write is directed at the writing thread and dropped with it.
fn feed_state(mut stdin: std::process::ChildStdin, state: &[u8]) {
    let state = state.to_vec();
    let spawned = std::thread::Builder::new()
        .name("hook-stdin".into())
        .spawn(move || {
            let mut pipe_only = nix::sys::signal::SigSet::empty();
            pipe_only.add(nix::sys::signal::Signal::SIGPIPE);
            if nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_BLOCK,
                Some(&pipe_only),
                None,
            )
            .is_err()
            {
                return;
            }
            // A hook that does not read its stdin is fine.
            let _ = stdin.write_all(&state);
        });
    if let Err(e) = spawned {
        log::warn!("hook: cannot start the thread that writes its state: {e}");
    }
}

pub fn run_hook(hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(argv0) = args.first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(argv0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        path: path.clone(),
        source,
    })?;
    if let Some(stdin) = child.stdin.take() {
        feed_state(stdin, state);
    }
    let timeout = hook
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(HookError::Failed { path, status }),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { path, timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(HookError::Spawn { path, source }),
        }
    }
}

//! The agent link of a pod served inside the shim: the yamux session on QEMU's agent channel
//! runs on a thread of this process (no kata-proxy), and every connection to `agent.sock` in
//! the VM folder becomes one stream to the agent, as with the proxy. The guest console is
//! copied to `console.log` beside it.

use sandbox::{AgentLink, LinkEnd, Runtime, VmChannel};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket callers dial, in the VM folder.
pub const AGENT_SOCKET: &str = "agent.sock";
/// The guest console's copy, in the VM folder.
pub const CONSOLE_LOG: &str = "console.log";

pub struct InProcessLink;

fn link_err(what: &str, path: &Path, e: impl std::fmt::Display) -> sandbox::Error {
    sandbox::Error::Spawn {
        component: "agent link",
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

impl AgentLink for InProcessLink {
    fn serve(&self, _rt: &Runtime, channel: &VmChannel) -> sandbox::Result<LinkEnd> {
        let socket = channel.vm_dir.join(AGENT_SOCKET);
        // Bound and connected here, so that callers can dial as soon as this returns.
        let listener = UnixListener::bind(&socket).map_err(|e| link_err("binding", &socket, e))?;
        let mux = UnixStream::connect(channel.agent_channel)
            .map_err(|e| link_err("connecting to", channel.agent_channel, e))?;
        for (what, fd) in [
            ("listener", listener.set_nonblocking(true)),
            ("channel", mux.set_nonblocking(true)),
        ] {
            fd.map_err(|e| link_err(what, &socket, e))?;
        }
        let label = channel.sandbox_id.to_string();
        std::thread::Builder::new()
            .name("agent-link".into())
            .spawn(move || run_session(&label, mux, listener))
            .map_err(|e| link_err("starting the session thread", &socket, e))?;
        let (console, log) = (
            channel.console.to_path_buf(),
            channel.vm_dir.join(CONSOLE_LOG),
        );
        let _ = std::thread::Builder::new()
            .name("guest-console".into())
            .spawn(move || copy_console(&console, &log));
        Ok(LinkEnd {
            socket,
            process: None,
        })
    }
}

/// Runs the host end of the yamux session until the VM goes away.
fn run_session(label: &str, mux: UnixStream, listener: UnixListener) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("sandbox {label}: agent link: {e}");
            return;
        }
    };
    let result = runtime.block_on(async move {
        let mux = tokio::net::UnixStream::from_std(mux)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        mux::run_host(mux, listener)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    });
    match result {
        Ok(()) => log::info!("sandbox {label}: agent session ended (the VM is gone)"),
        Err(e) => log::warn!("sandbox {label}: agent session: {e}"),
    }
}

/// Copies the guest console (QEMU creates its socket at start) to `log` until it closes.
fn copy_console(console: &Path, log: &PathBuf) {
    let mut stream = None;
    for _ in 0..50 {
        match UnixStream::connect(console) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let Some(mut stream) = stream else { return };
    let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    else {
        return;
    };
    let _ = std::io::copy(&mut stream, &mut file);
    let _ = file.flush();
}

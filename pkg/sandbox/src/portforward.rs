//! CRI port-forward (what `kubectl port-forward` uses): containerd and CRI-O enter the pod's
//! network namespace and dial `127.0.0.1:PORT`. The pod's servers listen inside the VM, so
//! nothing answers there. Kata 1.x left it so; here each sandbox gets a forwarder:
//!
//! - `kata-runtime port-forward --sandbox ID --vm-dir DIR`, started by `create` inside the
//!   pod's network namespace, listens on 127.0.0.1:<free port> there, and installs one
//!   iptables rule in that namespace (nat OUTPUT, tagged with the sandbox) that redirects every
//!   other TCP connection to 127.0.0.1 to its port. Nothing is opened outside the pod's
//!   namespace.
//! - Each accepted connection's original port (SO_ORIGINAL_DST) is carried into the VM by an
//!   exec in the sandbox container, `kata-runtime exec ID kata-agent-port-forward PORT`, whose
//!   stdio is the accepted connection: the agent's exec helper connects to 127.0.0.1:PORT in
//!   the VM and relays (pkg/guest relay.rs); the exec's kata-shim carries the bytes.
//! - `delete` stops the forwarder and removes the rule (also after the forwarder died).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use store::ProcessRef;

use crate::{Error, Result, Runtime};

/// The forwarder's log in the VM folder.
const LOG: &str = "port-forward.log";

fn rule_tag(sandbox_id: &str) -> String {
    format!("kata-pf:{}", crate::short_name(sandbox_id))
}

fn spawn_err(reason: impl std::fmt::Display) -> Error {
    Error::Spawn {
        component: "port forwarder",
        path: PathBuf::from("kata-runtime"),
        reason: reason.to_string(),
    }
}

/// Starts the sandbox's forwarder in `netns`; returns it once it listens and its rule is in.
pub(crate) fn start(
    rt: &Runtime,
    sandbox_id: &str,
    netns: &Path,
    vm_dir: &Path,
) -> Result<ProcessRef> {
    let exe = std::env::current_exe().map_err(spawn_err)?;
    let ready = crate::procs::ReadyPipe::new().map_err(spawn_err)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(vm_dir.join(LOG))
        .map_err(crate::io_err("opening", vm_dir.join(LOG)))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--root").arg(rt.store.root());
    if let Some(config) = &rt.config.source {
        cmd.arg("--kata-config").arg(config);
    }
    cmd.arg("port-forward")
        .arg("--sandbox")
        .arg(sandbox_id)
        // With its trailing slash: `delete --force` finds orphans by "<vm dir>/".
        .arg("--vm-dir")
        .arg(vm_dir.join(""))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    ready.hand_to(&mut cmd);
    // Spawned from a thread inside the pod's namespace: the forwarder lives there.
    let mut child = network::netns::run_in(netns, move || cmd.spawn())
        .map_err(spawn_err)?
        .map_err(spawn_err)?;
    let proc_ref = ProcessRef::of(child.id() as i32).ok_or_else(|| spawn_err("exited at once"))?;
    if !ready.wait(Duration::from_secs(10)) {
        let _ = child.kill();
        let _ = child.wait();
        remove_rules(sandbox_id, netns);
        return Err(spawn_err(format!(
            "did not become ready (see {})",
            vm_dir.join(LOG).display()
        )));
    }
    Ok(proc_ref)
}

/// Stops the forwarder (if any) and removes its rule from `netns`.
pub(crate) fn stop(sandbox_id: &str, forwarder: Option<&ProcessRef>, netns: Option<&Path>) {
    if let Some(p) = forwarder {
        crate::procs::stop_process(p, Duration::from_secs(2));
    }
    if let Some(ns) = netns {
        remove_rules(sandbox_id, ns);
    }
}

fn iptables(args: &[String]) -> std::result::Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn redirect_rule(sandbox_id: &str, port: u16) -> Vec<String> {
    format!(
        "-t nat -A OUTPUT -p tcp -d 127.0.0.1/32 ! --dport {port} -m comment --comment {} \
         -j REDIRECT --to-ports {port}",
        rule_tag(sandbox_id)
    )
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// Deletes every rule of the sandbox's tag from the nat table of `netns` (run from there).
fn remove_rules(sandbox_id: &str, netns: &Path) {
    let tag = rule_tag(sandbox_id);
    let removed = network::netns::run_in(netns, || -> std::result::Result<(), String> {
        let listing = iptables(&["-t".into(), "nat".into(), "-S".into(), "OUTPUT".into()])?;
        for line in listing.lines().filter(|l| l.contains(&tag)) {
            let Some(rest) = line.strip_prefix("-A ") else {
                continue;
            };
            let mut args = vec!["-t".to_string(), "nat".into(), "-D".into()];
            // -S quotes the comment ("kata-pf:x"); iptables wants it bare.
            args.extend(
                rest.split_whitespace()
                    .map(|a| a.trim_matches('"').to_string()),
            );
            iptables(&args)?;
        }
        Ok(())
    });
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("port forwarder of {sandbox_id}: {e}"),
        // The namespace is gone (a fresh one removed with the sandbox): so is the rule.
        Err(e) => log::debug!("port forwarder of {sandbox_id}: {e}"),
    }
}

/// The forwarder itself (`kata-runtime port-forward`), already in the pod's namespace.
pub fn serve(rt: &Runtime, sandbox_id: &str, vm_dir: &Path) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(crate::io_err("listening on 127.0.0.1 in", vm_dir))?;
    let port = listener
        .local_addr()
        .map_err(crate::io_err("listening on 127.0.0.1 in", vm_dir))?
        .port();
    iptables(&redirect_rule(sandbox_id, port)).map_err(spawn_err)?;
    log::info!("port forwarder of {sandbox_id}: 127.0.0.1 TCP redirected to port {port}");
    // SAFETY: `start` put the ready pipe at this number for us.
    let mut ready = unsafe { std::fs::File::from_raw_fd(crate::procs::READY_FD) };
    let _ = ready.write_all(b"1");
    drop(ready);
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                log::warn!("port forwarder of {sandbox_id}: accept: {e}");
                continue;
            }
        };
        let (rt, id) = (rt.clone(), sandbox_id.to_string());
        let spawned = std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || forward(&rt, &id, conn));
        if let Err(e) = spawned {
            log::warn!("port forwarder of {sandbox_id}: {e}");
        }
    }
    Ok(())
}

/// The destination port a redirected connection was made to (SO_ORIGINAL_DST).
fn original_port(conn: &TcpStream) -> Option<u16> {
    // SAFETY: a zeroed sockaddr_in is a valid value to be filled in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: getsockopt on a valid socket into a sockaddr_in of the length given.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    (r == 0).then(|| u16::from_be(addr.sin_port))
}

/// One connection: an exec in the sandbox container relays it to the same port in the VM.
fn forward(rt: &Runtime, sandbox_id: &str, conn: TcpStream) {
    let Some(port) = original_port(&conn) else {
        log::warn!("port forwarder of {sandbox_id}: a connection without its original port");
        return;
    };
    let (Ok(stdin), Ok(stdout)) = (conn.try_clone(), conn.try_clone()) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(rt.store.root());
    if let Some(config) = &rt.config.source {
        cmd.arg("--kata-config").arg(config);
    }
    cmd.arg("exec")
        .arg(sandbox_id)
        .arg(protocols::PORT_FORWARD_PROGRAM)
        .arg(port.to_string())
        .stdin(Stdio::from(OwnedFd::from(stdin)))
        .stdout(Stdio::from(OwnedFd::from(stdout)));
    drop(conn);
    match cmd.status() {
        Ok(s) => log::info!("port forwarder of {sandbox_id}: connection to {port} done ({s})"),
        Err(e) => log::warn!("port forwarder of {sandbox_id}: exec for port {port}: {e}"),
    }
}

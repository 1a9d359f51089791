//! The shim itself: serves containerd's task API on its socket until the pod is gone.
//!
//! Not the crate's `run()`: containerd 1.6 (Debian's) calls the task service by its v2 name
//! (`/containerd.task.v2.Task/...`) while the crate's generated service is v3, with the same
//! messages; the service is registered under both names, so containerd 2.x works too.

use crate::events::Events;
use crate::pod::Pod;
use crate::service::Service;
use anyhow::Context;
use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Flags};
use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    if flags.socket.is_empty() {
        anyhow::bail!("-socket is required");
    }
    containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
        .context("opening the log FIFO")?;
    let path = flags.socket.trim_start_matches("unix://").to_string();
    let Some(listener) = bind(&path)? else {
        // The pod's shim already serves this address (`start` of a pod member).
        release_start();
        return Ok(());
    };
    start_reaper();
    let rt = crate::runtime(&flags.namespace)?;
    let publisher = RemotePublisher::new(std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS")?)
        .context("connecting to containerd's event service")?;
    let pod = Arc::new(Pod::new(
        rt,
        Events::start(publisher, flags.namespace.clone()),
    ));
    let exit = Arc::new(ExitSignal::default());
    let service: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(Service {
        pod: pod.clone(),
        exit: exit.clone(),
    });
    let v3 = create_task(service.clone());
    let v2: HashMap<_, _> = create_task(service)
        .into_iter()
        .map(|(name, method)| {
            (
                name.replace("/containerd.task.v3.Task/", "/containerd.task.v2.Task/"),
                method,
            )
        })
        .collect();
    // containerd opens one connection per task and blocks a worker in each with Wait; one
    // or two idle workers per connection are enough (more start while all are busy).
    let mut server = ttrpc::Server::new()
        .set_thread_count_default(2)
        .set_thread_count_min(1)
        .add_listener(listener.into_raw_fd())?
        .register_service(v2)
        .register_service(v3);
    server.start()?;
    release_start();
    stop_on_signals(exit.clone());
    log::info!("serving {}", flags.socket);
    exit.wait();
    log::info!("shutting down");
    pod.teardown();
    // The server waits for its handlers; one stuck on a dead peer must not keep the shim (and
    // its socket) around: the process ends in any case.
    let socket = path.clone();
    let _ = std::thread::Builder::new().spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(5));
        log::warn!("the task server did not stop within 5 s; exiting");
        let _ = std::fs::remove_file(&socket);
        std::process::exit(0);
    });
    server.shutdown();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// The listener on `path`, or `None` when a live shim already serves it.
fn bind(path: &str) -> anyhow::Result<Option<UnixListener>> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A dead shim's socket.
            std::fs::remove_file(path).with_context(|| format!("removing {path}"))?;
            Ok(Some(
                UnixListener::bind(path).with_context(|| format!("binding {path}"))?,
            ))
        }
        Err(e) => Err(e).with_context(|| format!("binding {path}")),
    }
}

/// `start` waits for our stdout to close: point it at stderr (/dev/null) once we serve.
fn release_start() {
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
}

/// Reaps every child (QEMU, virtiofsd, the crate's mount helper) and tells the crate's
/// monitor, which `mount_rootfs` waits on. Processes are watched by pid and start time
/// elsewhere, never by waiting on them.
fn start_reaper() {
    use nix::sys::wait::{waitpid, WaitStatus};
    let _ = std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(128 * 1024)
        .spawn(|| loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    let _ = containerd_shim::monitor::monitor_notify_by_pid(pid.as_raw(), code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    let _ = containerd_shim::monitor::monitor_notify_by_pid(
                        pid.as_raw(),
                        128 + sig as i32,
                    );
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        });
}

/// SIGTERM or SIGINT: leave as after the last task, tearing the pod down.
fn stop_on_signals(exit: Arc<ExitSignal>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    let Ok(runtime) = runtime else { return };
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => log::info!("SIGTERM"),
                    _ = int.recv() => log::info!("SIGINT"),
                }
            });
            exit.signal();
        });
}

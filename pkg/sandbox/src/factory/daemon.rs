//! The factory daemon (`kata-runtime factory init` starts it as `factory serve`): keeps
//! `[factory] vm_cache_number` VMs booted, hands one to each `create` that asks on its socket,
//! boots a replacement in the background.

use std::collections::VecDeque;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hypervisor::{Hypervisor, Templating};

use super::boot;
use super::protocol::{self, CachedVm, ReadyVm, Request, Response, Status};
use crate::{Error, Result, Runtime};

/// The cache, shared by the accept loop and the thread that boots.
#[derive(Default)]
struct Pool {
    ready: VecDeque<CachedVm>,
    booting: bool,
    shutdown: bool,
    handed_out: u64,
    template_ms: Option<u64>,
    last_error: Option<String>,
    /// Processes of VMs handed to sandboxes: still our children, reaped when they exit.
    handed_pids: Vec<i32>,
    /// When a VM was last handed out.
    last_take: Option<Instant>,
}

struct Shared {
    pool: Mutex<Pool>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A panicking thread leaves the pool usable: its fields are always consistent.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long after the last hand-out the daemon waits before it boots a replacement.
const REFILL_QUIET: Duration = Duration::from_secs(2);

/// Runs the daemon until `factory destroy`.
pub fn serve(rt: &Runtime) -> Result<()> {
    let target = rt.config.factory.vm_cache_number;
    if target == 0 {
        return Err(Error::Factory(
            "[factory] vm_cache_number is 0: nothing to cache".into(),
        ));
    }
    let endpoint = rt.config.factory_endpoint();
    if protocol::call(&endpoint, &Request::Status, Duration::from_secs(2)).is_ok() {
        return Err(Error::Factory(format!(
            "a factory already serves {}",
            endpoint.display()
        )));
    }
    crate::make_dir(&rt.config.factory_dir(), 0o700)?;
    if let Some(parent) = endpoint.parent() {
        crate::make_dir(parent, 0o700)?;
    }
    let leftovers = boot::remove_leftovers(rt);
    if leftovers > 0 {
        log::info!("factory: stopped {leftovers} processes of cached VMs a previous daemon left");
    }
    let _ = std::fs::remove_file(&endpoint);
    let listener =
        UnixListener::bind(&endpoint).map_err(crate::io_err("listening on", &endpoint))?;
    log::info!(
        "factory: serving {} (pid {}), keeping {target} VMs",
        endpoint.display(),
        std::process::id()
    );

    let shared = Arc::new(Shared {
        pool: Mutex::new(Pool::default()),
        changed: Condvar::new(),
    });
    let filler = {
        let (rt, shared) = (rt.clone(), shared.clone());
        std::thread::Builder::new()
            .name("factory-boot".into())
            .spawn(move || fill(&rt, &shared))
            .map_err(crate::io_err("starting the boot thread", &endpoint))?
    };
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("factory-reap".into())
            .spawn(move || reap(&shared))
            .map_err(crate::io_err("starting the reaper thread", &endpoint))?;
    }

    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("factory: accept: {e}");
                continue;
            }
        };
        if answer(rt, &shared, &stream, &endpoint) {
            // Destroy: stop booting, drop the cache, then confirm and exit.
            shared.lock().shutdown = true;
            shared.changed.notify_all();
            let _ = filler.join();
            let ready: Vec<CachedVm> = shared.lock().ready.drain(..).collect();
            for vm in &ready {
                boot::discard(vm);
            }
            if rt.config.factory.enable_template {
                boot::remove_template(&rt.config.factory_template_path());
            }
            let _ = std::fs::remove_file(&endpoint);
            let _ = std::fs::remove_dir(boot::vms_dir(rt));
            let _ = std::fs::remove_dir(boot::shared_root(rt));
            log::info!("factory: destroyed ({} cached VMs stopped)", ready.len());
            protocol::write_response(&stream, &Response::default());
            return Ok(());
        }
    }
    Ok(())
}

/// Answers one client; true when it asked the daemon to destroy the cache.
fn answer(rt: &Runtime, shared: &Shared, stream: &UnixStream, endpoint: &std::path::Path) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = match protocol::read_request(stream) {
        Ok(r) => r,
        Err(e) => {
            protocol::write_response(
                stream,
                &Response {
                    error: Some(e),
                    ..Response::default()
                },
            );
            return false;
        }
    };
    let response = match request {
        Request::Destroy => return true,
        Request::Status => Response {
            status: Some(status(rt, shared, endpoint)),
            ..Response::default()
        },
        Request::Take { key } => take(rt, shared, &key),
    };
    protocol::write_response(stream, &response);
    false
}

fn status(rt: &Runtime, shared: &Shared, endpoint: &std::path::Path) -> Status {
    let pool = shared.lock();
    let template = rt.config.factory_template_path();
    Status {
        pid: std::process::id(),
        endpoint: endpoint.to_path_buf(),
        vm_cache_number: rt.config.factory.vm_cache_number,
        ready: pool
            .ready
            .iter()
            .map(|vm| ReadyVm {
                name: vm.name.clone(),
                qemu_pid: vm.qemu.pid,
                proxy_pid: vm.proxy.pid,
                boot_ms: vm.boot_ms,
                from_template: vm.from_template,
            })
            .collect(),
        booting: pool.booting,
        template: (rt.config.factory.enable_template && Templating::is_saved(&template))
            .then_some(template),
        template_ms: pool.template_ms,
        handed_out: pool.handed_out,
        last_error: pool.last_error.clone(),
    }
}

fn take(rt: &Runtime, shared: &Shared, key: &str) -> Response {
    let no_vm = |reason: String| Response {
        reason: Some(reason),
        ..Response::default()
    };
    match super::daemon_key(rt) {
        Ok(mine) if mine == key => {}
        Ok(_) => {
            return no_vm(
                "the sandbox's VM settings differ from the factory's configuration".into(),
            )
        }
        Err(e) => return no_vm(format!("the factory's own VM settings: {e}")),
    }
    let mut pool = shared.lock();
    while let Some(vm) = pool.ready.pop_front() {
        // A VM that died while waiting (killed, guest crash) is thrown away.
        let qemu_alive = hypervisor::Qemu::from_state(vm.qemu.clone()).is_running();
        if !(qemu_alive && vm.proxy.alive()) {
            log::warn!(
                "factory: cached VM {} died while waiting; discarded",
                vm.name
            );
            boot::discard(&vm);
            continue;
        }
        pool.handed_out += 1;
        pool.last_take = Some(Instant::now());
        pool.handed_pids.extend([vm.qemu.pid, vm.proxy.pid]);
        pool.handed_pids
            .extend(vm.qemu.virtiofsd_pid.as_ref().map(|p| p.pid));
        shared.changed.notify_all();
        log::info!(
            "factory: VM {} handed out ({} left)",
            vm.name,
            pool.ready.len()
        );
        return Response {
            vm: Some(vm),
            ..Response::default()
        };
    }
    shared.changed.notify_all();
    no_vm("no cached VM is ready (a replacement is booting)".into())
}

/// Keeps the cache full: boots one VM at a time (the host's cores are shared with the
/// sandboxes), backing off after failures.
fn fill(rt: &Runtime, shared: &Shared) {
    let target = rt.config.factory.vm_cache_number as usize;
    let template_dir = rt.config.factory_template_path();
    let mut failures: u32 = 0;
    let mut serial: u64 = 0;
    loop {
        {
            let mut pool = shared.lock();
            while !pool.shutdown && pool.ready.len() >= target {
                pool = shared.changed.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
            // A VM was just handed out: its sandbox is being set up now. A replacement booting
            // at the same moment would take a core from it (TCG boots are CPU-bound), so the
            // refill waits until hand-outs have been quiet for a moment.
            while let Some(quiet) = pool
                .last_take
                .map(|t| REFILL_QUIET.saturating_sub(t.elapsed()))
                .filter(|left| !left.is_zero() && !pool.shutdown)
            {
                pool = shared
                    .changed
                    .wait_timeout(pool, quiet)
                    .map(|(p, _)| p)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            if pool.shutdown {
                return;
            }
            pool.booting = true;
        }
        let mut template = None;
        if rt.config.factory.enable_template {
            if !Templating::is_saved(&template_dir) {
                match boot::make_template(rt, &template_dir) {
                    Ok(took) => {
                        log::info!(
                            "factory: template saved in {} ({took:.2?})",
                            template_dir.display()
                        );
                        shared.lock().template_ms = Some(took.as_millis() as u64);
                    }
                    Err(e) => log::error!("factory: making the template: {e}"),
                }
            }
            template = Templating::is_saved(&template_dir).then_some(template_dir.as_path());
        }
        serial += 1;
        let name = format!("cache{}-{serial}", std::process::id());
        let booted = boot::boot_cached(rt, &name, template);
        let mut pool = shared.lock();
        pool.booting = false;
        match booted {
            Ok(vm) => {
                failures = 0;
                log::info!(
                    "factory: VM {} ready in {} ms{}",
                    vm.name,
                    vm.boot_ms,
                    if vm.from_template {
                        " (from the template)"
                    } else {
                        ""
                    }
                );
                if pool.shutdown {
                    drop(pool);
                    boot::discard(&vm);
                    return;
                }
                pool.ready.push_back(vm);
            }
            Err(e) => {
                failures += 1;
                let line = format!("booting VM {name}: {e}");
                log::error!("factory: {line}");
                pool.last_error = Some(line);
                // 1, 2, 4 ... 30 s between attempts while booting fails.
                let pause =
                    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30));
                let (p, _) = shared
                    .changed
                    .wait_timeout_while(pool, pause, |p| !p.shutdown)
                    .unwrap_or_else(|e| e.into_inner());
                if p.shutdown {
                    return;
                }
            }
        }
    }
}

/// The daemon spawned every handed-out VM's processes: it reaps them when they exit, or
/// they would stay zombies for as long as the daemon runs.
fn reap(shared: &Shared) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut pool = shared.lock();
        pool.handed_pids.retain(|&pid| {
            let pid = nix::unistd::Pid::from_raw(pid);
            matches!(
                nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                Ok(nix::sys::wait::WaitStatus::StillAlive)
            )
        });
    }
}

/// The daemon's log file, in its folder.
pub fn log_file(rt: &Runtime) -> PathBuf {
    rt.config.factory_dir().join("factory.log")
}

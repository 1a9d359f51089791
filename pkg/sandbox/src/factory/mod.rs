//! Kata 1.x's VM factory: a daemon keeps VMs booted so that `create` of a new sandbox takes
//! one instead of booting (VMCache), optionally starting them from a template VM.
//!
//! - `kata-runtime factory init` starts the daemon ([`serve`]) and returns once the cache is
//!   full; `factory status` asks it what it holds; `factory destroy` stops it and its VMs.
//! - `create` asks the daemon for a VM ([`take`]) when `[factory] vm_cache_number` > 0 and the
//!   daemon's socket exists, and uses it only when the sandbox's VM settings equal the ones
//!   the daemon boots with ([`cache_key`]). The sandbox adopts it ([`adopt`]): its VM folder
//!   (sockets, logs) moves to the sandbox's, the pod's NICs are hot-plugged, then the usual
//!   CreateSandbox sets the hostname and mounts the shared folder. Anything else (no daemon,
//!   an empty cache, other settings) falls back to booting, with a log line that says why.
//! - A cached VM's QEMU runs in the host's network namespace; the pod's taps are opened in
//!   the pod's namespace and their descriptors handed to QEMU.

mod boot;
mod daemon;
mod protocol;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hypervisor::{Hypervisor, Qemu, VmConfig};
use serde::{Deserialize, Serialize};

pub use daemon::{log_file, serve};
pub use protocol::{ReadyVm, Status};

use crate::network::SandboxNetwork;
use crate::rollback::Rollback;
use crate::vm::{LinkEnd, RunningVm, PROXY_SOCKET};
use crate::{share, Error, Result, Runtime};
use protocol::{CachedVm, Request};

/// How long a client waits for the daemon's answer (it answers from memory).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The VM settings a cached VM must share with the sandbox that takes it: everything but
/// what names or connects one VM (its id, folders, namespace, NICs, templating).
pub(crate) fn cache_key(vm: &VmConfig) -> String {
    let mut v = serde_json::to_value(vm).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        for per_vm in [
            "sandbox_id",
            "vm_dir",
            "shared_dir",
            "netns",
            "net_devices",
            "vhost_net",
            "templating",
            "probe_cache_dir",
        ] {
            map.remove(per_vm);
        }
    }
    v.to_string()
}

/// The key of the VMs this daemon boots.
fn daemon_key(rt: &Runtime) -> Result<String> {
    let vm = crate::vm::vm_config(rt, "key", Path::new("/k"), Path::new("/k"))?;
    Ok(cache_key(&vm))
}

/// A VM from the cache for a new sandbox whose VM would be `want`, if the daemon has one.
pub(crate) fn take(rt: &Runtime, want: &VmConfig) -> Option<CachedVm> {
    if rt.config.factory.vm_cache_number == 0 {
        return None;
    }
    let endpoint = rt.config.factory_endpoint();
    if !endpoint.exists() {
        log::info!("factory: no daemon at {}; booting a VM", endpoint.display());
        return None;
    }
    let request = Request::Take {
        key: cache_key(want),
    };
    match protocol::call(&endpoint, &request, CALL_TIMEOUT) {
        Ok(r) => match (r.vm, r.error) {
            (Some(vm), _) => Some(vm),
            (None, Some(e)) => {
                log::warn!("factory: {e}; booting a VM");
                None
            }
            (None, None) => {
                log::info!(
                    "factory: {}; booting a VM",
                    r.reason.as_deref().unwrap_or("no VM")
                );
                None
            }
        },
        Err(e) => {
            log::warn!("factory: {e}; booting a VM");
            None
        }
    }
}

/// What a sandbox made from a cached VM records in its VM folder, so that `delete --force`
/// without the sandbox's record still finds the VM (its processes name the old folders).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Origin {
    pub factory_vm_dir: PathBuf,
    pub shared_dir: PathBuf,
}

pub(crate) const ORIGIN_FILE: &str = "factory-vm.json";

/// The folders a cached VM's processes name, from the sandbox's VM folder (empty when the
/// sandbox booted its own VM).
pub(crate) fn origin_dirs(vm_dir: &Path) -> Vec<PathBuf> {
    std::fs::read(vm_dir.join(ORIGIN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Origin>(&b).ok())
        .map(|o| vec![o.factory_vm_dir, o.shared_dir])
        .unwrap_or_default()
}

/// Makes `cached` the VM of sandbox `sandbox_id`: its folder's content moves into `vm_dir`,
/// the pod's NICs are hot-plugged. On a later failure `undo` stops it.
pub(crate) fn adopt(
    rt: &Runtime,
    cached: CachedVm,
    sandbox_id: &str,
    vm_dir: &Path,
    net: &mut SandboxNetwork,
    undo: &mut Rollback,
) -> Result<RunningVm> {
    let t0 = Instant::now();
    {
        let (state, proxy) = (cached.qemu.clone(), cached.proxy);
        let dirs = [cached.shared_dir.clone(), cached.vm_dir.clone()];
        undo.push("stop cached VM", move || {
            let _ = Qemu::from_state(state).stop();
            crate::procs::stop_process(&proxy, Duration::from_secs(2));
            for d in &dirs {
                share::unmount_tree(d);
                let _ = std::fs::remove_dir_all(d);
            }
        });
    }
    // The sandbox's own shared folder is not needed: the VM shares its own.
    let own_shared = rt.shared_dir(sandbox_id);
    share::unmount_tree(&own_shared);
    let _ = std::fs::remove_dir_all(&own_shared);

    let origin = Origin {
        factory_vm_dir: cached.vm_dir.clone(),
        shared_dir: cached.shared_dir.clone(),
    };
    let bytes = serde_json::to_vec(&origin)
        .map_err(|e| Error::Factory(format!("recording the VM's origin: {e}")))?;
    store::write_atomic(&vm_dir.join(ORIGIN_FILE), &bytes)?;
    // Sockets keep working under their new names; QEMU and the proxy hold their logs open.
    let entries = std::fs::read_dir(&cached.vm_dir)
        .map_err(crate::io_err("reading", cached.vm_dir.as_path()))?;
    for entry in entries {
        let entry = entry.map_err(crate::io_err("reading", cached.vm_dir.as_path()))?;
        let to = vm_dir.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(crate::io_err("moving into", to.as_path()))?;
    }
    let _ = std::fs::remove_dir(&cached.vm_dir);

    let mut state = cached.qemu;
    state.config.vm_dir = vm_dir.to_path_buf();
    state.config.sandbox_id = crate::short_name(sandbox_id);
    let qemu = Qemu::from_state(state);
    if let Some(netns) = net.netns.clone() {
        let mut qmp = qemu
            .qmp(rt.call_timeout())
            .map_err(hypervisor::Error::from)?;
        let mut used = Vec::new();
        for ep in &mut net.endpoints {
            let bus = crate::blockdev::free_port(qemu.config(), &used)?;
            crate::network::plug(&mut qmp, qemu.config(), &netns, ep, bus.as_deref())?;
            used.extend(bus.clone());
            ep.hotplug_bus = Some(bus.unwrap_or_default());
        }
    }
    log::info!(
        "sandbox {sandbox_id}: took cached VM {} (booted in {} ms{}), adopted in {:.0?}",
        cached.name,
        cached.boot_ms,
        if cached.from_template {
            " from the template"
        } else {
            ""
        },
        t0.elapsed()
    );
    Ok(RunningVm {
        qemu,
        link: LinkEnd {
            socket: vm_dir.join(PROXY_SOCKET),
            process: Some(cached.proxy),
        },
        shared_dir: cached.shared_dir,
        booted: None,
    })
}

/// `factory init`: starts the daemon (`exe` with `args` before `factory serve`) and waits
/// until its cache is full.
pub fn init(rt: &Runtime, exe: &Path, args: &[OsString]) -> Result<Status> {
    let n = rt.config.factory.vm_cache_number;
    if n == 0 {
        return Err(Error::Factory(format!(
            "[factory] vm_cache_number is 0 in {}: set how many VMs to keep",
            rt.config
                .source
                .as_ref()
                .map_or("the built-in configuration".into(), |p| p
                    .display()
                    .to_string())
        )));
    }
    if let Some(s) = status(rt)? {
        return Err(Error::Factory(format!(
            "already running (pid {}, {})",
            s.pid,
            s.endpoint.display()
        )));
    }
    crate::make_dir(&rt.config.factory_dir(), 0o700)?;
    let log = log_file(rt);
    let mut cmd = hypervisor::proc::detached_command(exe);
    cmd.args(args)
        .arg("--log")
        .arg(&log)
        .args(["factory", "serve"])
        .current_dir("/");
    let mut child = cmd.spawn().map_err(|e| Error::Spawn {
        component: "factory daemon",
        path: exe.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Booting takes a few seconds per VM here (TCG), the template once more.
    let budget = Duration::from_secs(60 + 30 * u64::from(n));
    let t0 = Instant::now();
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(Error::Factory(format!(
                "the daemon exited ({exit}): {}",
                hypervisor::proc::log_tail(&log, 400)
            )));
        }
        if let Some(s) = status(rt)? {
            if s.ready.len() as u32 >= n {
                // The daemon outlives us; the kernel reparents it.
                drop(child);
                return Ok(s);
            }
        }
        if t0.elapsed() > budget {
            return Err(Error::Factory(format!(
                "the cache is not full after {budget:?} (see {}); `kata-runtime factory destroy` stops it",
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `factory status`: `None` when no daemon answers.
pub fn status(rt: &Runtime) -> Result<Option<Status>> {
    let endpoint = rt.config.factory_endpoint();
    if !endpoint.exists() {
        return Ok(None);
    }
    match protocol::call(&endpoint, &Request::Status, CALL_TIMEOUT) {
        Ok(r) => match (r.status, r.error) {
            (Some(s), _) => Ok(Some(s)),
            (None, e) => Err(Error::Factory(e.unwrap_or_else(|| "no status".into()))),
        },
        // A socket left by a daemon that died.
        Err(_) => Ok(None),
    }
}

/// `factory destroy`: stops the daemon and every VM still in its cache, removes the template
/// (VMs already handed to sandboxes are theirs and keep running). Also cleans after a daemon
/// that died. Returns whether a daemon was running.
pub fn destroy(rt: &Runtime) -> Result<bool> {
    let endpoint = rt.config.factory_endpoint();
    let running = status(rt)?;
    if let Some(s) = &running {
        // The daemon waits for a boot in progress before it answers.
        protocol::call(&endpoint, &Request::Destroy, Duration::from_secs(120))
            .map_err(|e| Error::Factory(e.to_string()))?;
        let pid = hypervisor::ProcessId::of(s.pid as i32);
        if let Some(p) = pid {
            p.wait_gone(Duration::from_secs(10));
        }
    }
    boot::remove_leftovers(rt);
    boot::remove_template(&rt.config.factory_template_path());
    let _ = std::fs::remove_file(&endpoint);
    let _ = std::fs::remove_dir(boot::shared_root(rt));
    // The daemon's folder goes too, its log with it: nothing of the factory stays.
    let _ = std::fs::remove_dir_all(rt.config.factory_dir());
    Ok(running.is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_ignores_what_names_a_vm_and_keeps_its_shape() {
        let a = VmConfig::new("a", "/v/a", "/k", "/s/a");
        let mut b = VmConfig::new("b", "/v/b", "/k", "/s/b");
        b.netns = Some("/var/run/netns/x".into());
        b.vhost_net = true;
        b.probe_cache_dir = Some("/v".into());
        assert_eq!(cache_key(&a), cache_key(&b));
        b.memory_mib += 64;
        assert_ne!(cache_key(&a), cache_key(&b));
        let mut c = VmConfig::new("c", "/v/c", "/other-kernel", "/s/c");
        assert_ne!(cache_key(&a), cache_key(&c));
        c.kernel = "/k".into();
        c.kernel_params = vec!["debug".into()];
        assert_ne!(cache_key(&a), cache_key(&c));
    }

    #[test]
    fn origin_dirs_of_a_booted_and_an_adopted_vm() {
        let dir = tempfile::tempdir().unwrap();
        assert!(origin_dirs(dir.path()).is_empty());
        let o = Origin {
            factory_vm_dir: "/v/.factory/vms/c1".into(),
            shared_dir: "/s/.factory/c1".into(),
        };
        std::fs::write(
            dir.path().join(ORIGIN_FILE),
            serde_json::to_vec(&o).unwrap(),
        )
        .unwrap();
        assert_eq!(
            origin_dirs(dir.path()),
            vec![
                PathBuf::from("/v/.factory/vms/c1"),
                PathBuf::from("/s/.factory/c1")
            ]
        );
    }
}

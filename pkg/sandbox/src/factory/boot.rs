//! Booting what the factory keeps: cached VMs (each with its proxy, agent answering) and the
//! template VM they may be cloned from; and removing them.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_client::AgentClient;
use hypervisor::{Hypervisor, Qemu, QemuState, TemplateRole, Templating};

use super::protocol::CachedVm;
use crate::rollback::Rollback;
use crate::vm::{boot_vm, vm_config, ProxyLink};
use crate::{share, Error, Result, Runtime};

/// Cached VMs' folders: `<factory dir>/vms/<name>`.
pub(crate) fn vms_dir(rt: &Runtime) -> PathBuf {
    rt.config.factory_dir().join("vms")
}

/// Their shared folders: `<runtime shared_dir>/.factory/<name>` (a VM handed to a sandbox
/// keeps it; its VM folder moves to the sandbox's).
pub(crate) fn shared_root(rt: &Runtime) -> PathBuf {
    rt.config.runtime.shared_dir.join(".factory")
}

/// The folders of a cached VM, made empty and private.
fn make_folders(rt: &Runtime, name: &str, undo: &mut Rollback) -> Result<(PathBuf, PathBuf)> {
    let vm_dir = vms_dir(rt).join(name);
    let shared_dir = shared_root(rt).join(name);
    share::fresh_dir(&vm_dir, 0o700, undo)?;
    share::fresh_dir(&shared_dir, 0o711, undo)?;
    share::prepare_shared_dir(&shared_dir)?;
    Ok((vm_dir, shared_dir))
}

/// Boots one VM for the cache (from the template when `template` is given) and waits until
/// its agent answers through its proxy.
pub(crate) fn boot_cached(rt: &Runtime, name: &str, template: Option<&Path>) -> Result<CachedVm> {
    let mut undo = Rollback::new();
    let (vm_dir, shared_dir) = make_folders(rt, name, &mut undo)?;
    let mut vm = vm_config(rt, name, &vm_dir, &shared_dir)?;
    vm.templating = template.map(|dir| Templating {
        role: TemplateRole::Clone,
        dir: dir.to_path_buf(),
    });
    let t0 = Instant::now();
    // Cached VMs keep Kata 1.x's proxy whoever takes them: they are booted before anyone
    // knows which front end will.
    let running = boot_vm(rt, vm, name, &ProxyLink, &mut undo)?;
    let proxy = running
        .link
        .process
        .ok_or_else(|| Error::Factory(format!("VM {name}: its link has no proxy process")))?;
    AgentClient::wait_ready(&running.link.socket, rt.dial_timeout(), rt.call_timeout())?;
    let boot_ms = t0.elapsed().as_millis() as u64;
    let qemu = running
        .qemu
        .state()
        .cloned()
        .ok_or_else(|| Error::Factory(format!("VM {name}: no state after start")))?;
    undo.disarm();
    Ok(CachedVm {
        name: name.to_string(),
        qemu,
        proxy,
        vm_dir,
        shared_dir,
        boot_ms,
        from_template: template.is_some(),
    })
}

/// Stops a cached VM that no sandbox took, and removes its folders.
pub(crate) fn discard(vm: &CachedVm) {
    if let Err(e) = Qemu::from_state(vm.qemu.clone()).stop() {
        log::warn!("factory: stopping VM {}: {e}", vm.name);
    }
    crate::procs::stop_process(&vm.proxy, Duration::from_secs(2));
    for dir in [&vm.shared_dir, &vm.vm_dir] {
        share::unmount_tree(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes what a daemon that died left: cached VMs still in the factory's folders (a VM
/// handed to a sandbox has left them and is not touched).
pub(crate) fn remove_leftovers(rt: &Runtime) -> usize {
    let Ok(entries) = std::fs::read_dir(vms_dir(rt)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let vm_dir = entry.path();
        let shared_dir = shared_root(rt).join(entry.file_name());
        removed += crate::procs::kill_orphans(&[&vm_dir, &shared_dir]);
        for dir in [&shared_dir, &vm_dir] {
            share::unmount_tree(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    removed
}

/// The agent's console line that says it serves (cmd/kata-agent).
const AGENT_SERVING: &str = "kata-agent info: serving on";

/// Boots the template VM, waits until its agent serves, pauses it and saves its device state
/// next to its memory in `dir`; then stops it. No host client ever talks to the template's
/// agent: each clone's proxy starts a fresh session with it.
pub(crate) fn make_template(rt: &Runtime, dir: &Path) -> Result<Duration> {
    let t0 = Instant::now();
    remove_template(dir);
    crate::make_dir(dir, 0o700)?;
    let mut undo = Rollback::new();
    let name = "template";
    let (vm_dir, shared_dir) = make_folders(rt, name, &mut undo)?;
    let mut vm = vm_config(rt, name, &vm_dir, &shared_dir)?;
    vm.templating = Some(Templating {
        role: TemplateRole::Template,
        dir: dir.to_path_buf(),
    });
    vm.validate()?;
    let mut qemu = Qemu::new(vm);
    qemu.start()?;
    let state: Option<QemuState> = qemu.state().cloned();
    undo.push("stop template VM", move || {
        if let Some(s) = state {
            let _ = Qemu::from_state(s).stop();
        }
    });
    let budget = rt.dial_timeout();
    wait_console_line(&qemu.console_socket(), AGENT_SERVING, budget)?;
    qemu.save_template(rt.call_timeout())
        .map_err(hypervisor::Error::from)?;
    qemu.stop()?;
    // The template VM is done with: its folders go (its memory file stays in `dir`).
    drop(undo);
    if !Templating::is_saved(dir) {
        return Err(Error::Factory(format!(
            "template {}: memory or state file missing after the save",
            dir.display()
        )));
    }
    Ok(t0.elapsed())
}

/// Removes a template's files (and its folder when that leaves it empty).
pub(crate) fn remove_template(dir: &Path) {
    for f in [
        hypervisor::template::MEMORY_FILE,
        hypervisor::template::STATE_FILE,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Reads the guest console until a line contains `needle`.
fn wait_console_line(console: &Path, needle: &str, budget: Duration) -> Result<()> {
    let fail = |why: String| {
        Error::Factory(format!(
            "template VM: waiting for its agent on {}: {why}",
            console.display()
        ))
    };
    let stream = UnixStream::connect(console).map_err(|e| fail(e.to_string()))?;
    let t0 = Instant::now();
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let left = budget.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Err(fail(format!("not serving within {budget:?}")));
        }
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(|e| fail(e.to_string()))?;
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err(fail("the console closed (the VM stopped)".into())),
            Ok(_) if String::from_utf8_lossy(&line).contains(needle) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

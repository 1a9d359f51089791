//! `create` of a pod member: a container whose annotations name an existing sandbox joins that
//! sandbox's VM instead of booting one. Its rootfs is shared into the running VM, the agent
//! creates it next to the sandbox container, sharing the namespaces its spec shares with the
//! sandbox (ipc, uts, pid: rewritten to the guest paths where the agent published them), and
//! the sandbox's record lists it. The whole addition runs under the sandbox's exclusive lock,
//! which no VM boot ever holds (a new sandbox locks only itself).

use crate::cli::create::{publish, resources_of, spawn_shim, CreateOptions, Created};
use crate::rollback::Rollback;
use crate::sandbox::Sandbox;
use crate::{Result, Runtime};
use oci::Bundle;
use std::time::Instant;
use store::{LockMode, ProcessRef};

pub fn create(
    rt: &Runtime,
    opts: &CreateOptions,
    bundle: &Bundle,
    sandbox_id: &str,
    started: Instant,
) -> Result<Created> {
    let id = opts.id;
    let shim_bin = rt.config.shim_path()?;
    let mut undo = Rollback::new();
    rt.store.claim(id)?;
    {
        let store = rt.store.clone();
        let id = id.to_string();
        undo.push("remove state folder", move || {
            let _ = store.remove(&id);
        });
    }
    Sandbox::load_running(rt, id, sandbox_id)?;
    let _lock = rt.store.lock(sandbox_id, LockMode::Exclusive)?;
    // Again under the lock: the sandbox may have been deleted meanwhile.
    let mut sandbox = Sandbox::load_running(rt, id, sandbox_id)?;
    let mut record = sandbox.add_container(
        id,
        bundle,
        &mut undo,
        crate::namespaces::share_sandbox_namespaces,
    )?;
    let shim = spawn_shim(rt, opts, bundle, &sandbox, &shim_bin, &mut undo)?;
    record.shim = ProcessRef::of(shim.id() as i32);
    sandbox.save()?;
    {
        let store = rt.store.clone();
        let (sid, cid) = (sandbox_id.to_string(), id.to_string());
        undo.push("unlist from the sandbox", move || {
            if let Ok(mut sb) = store.load_sandbox(&sid) {
                sb.containers.retain(|c| *c != cid);
                let _ = store.save_sandbox(&sb);
            }
        });
    }
    publish(rt, opts, bundle, record, &shim)?;
    undo.disarm();
    if let Some(resources) = resources_of(bundle) {
        sandbox.grow_for(resources, true);
    }
    log::info!(
        "container {id}: created in sandbox {sandbox_id} in {:?}",
        started.elapsed()
    );
    Ok(Created { shim })
}

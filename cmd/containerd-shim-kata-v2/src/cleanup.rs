//! `delete`: containerd's cleanup after a shim that is gone (crashed, killed, or exited after
//! its last task). Whatever the task's records still name is removed: for a pod's own task
//! the whole sandbox (QEMU, its folders, its network), for a member its part; the rootfs
//! mounted in the bundle is unmounted. The answer says the task died of SIGKILL.

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::Flags;

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    let rt = crate::runtime(&flags.namespace)?;
    let id = flags.id.as_str();
    let is_shim_alive = rt
        .store
        .load_container(id)
        .ok()
        .and_then(|r| r.shim)
        .is_some_and(|p| p.alive());
    if is_shim_alive {
        // The pod's shim still serves other tasks; containerd's own Delete removed this one.
        log::info!("delete {id}: its shim still runs; nothing to clean");
    } else if let Err(e) = sandbox::delete(&rt, id, true) {
        eprintln!("{}: delete {id}: {e}", crate::RUNTIME_ID);
    }
    let bundle = match flags.bundle.is_empty() {
        true => std::env::current_dir()?,
        false => flags.bundle.clone().into(),
    };
    crate::rootfs::unmount(&bundle);
    crate::pod::remove_empty_state_dirs(&rt);
    let resp = DeleteResponse {
        pid: 0,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(crate::exit::now()),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    resp.write_to_writer(&mut out)?;
    Ok(())
}

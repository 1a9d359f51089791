//! The rootfs containerd hands a task: its snapshot's mounts, made on `<bundle>/rootfs` at
//! Create and undone at Delete (or by the cleanup after a dead shim).

use crate::failure::{Failure, Result};
use sandbox::Rollback;
use std::path::Path;

/// Mounts containerd's rootfs (the snapshot's mounts) on `<bundle>/rootfs`; nothing when the
/// list is empty (the bundle brings its rootfs).
pub fn mount(
    bundle: &Path,
    mounts: &[containerd_shim::protos::types::mount::Mount],
    undo: &mut Rollback,
) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| Failure::Other(format!("creating {}: {e}", target.display())))?;
    {
        let b = bundle.to_path_buf();
        undo.push("unmount rootfs", move || unmount(&b));
    }
    for m in mounts {
        let typ = Some(m.type_.as_str()).filter(|t| !t.is_empty());
        let source = Some(m.source.as_str()).filter(|s| !s.is_empty());
        containerd_shim::mount::mount_rootfs(typ, source, &m.options, &target).map_err(|e| {
            Failure::Other(format!(
                "mounting the rootfs ({} {}) on {}: {e}",
                m.type_,
                m.source,
                target.display()
            ))
        })?;
    }
    Ok(true)
}

pub fn unmount(bundle: &Path) {
    let target = bundle.join("rootfs");
    if let Err(e) = containerd_shim::mount::umount_recursive(target.to_str(), 0) {
        log::warn!("unmounting {}: {e}", target.display());
    }
}

//! Storage requests (CreateSandbox/CreateContainer `storages`): filesystems the agent mounts in
//! the guest, e.g. the sandbox's shared folder over 9p or virtio-fs.

use crate::mounts::{self, ensure_dir, parse_options};
use protocols::agent::Storage;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage for {mount_point}: unsupported driver {driver:?}")]
    Driver { driver: String, mount_point: String },
    #[error("storage has no mount point")]
    NoMountPoint,
    #[error(transparent)]
    Mount(#[from] mounts::Error),
}

const LATE_MODULES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Mounts one storage; returns the mount point to unmount later.
pub fn mount_storage(s: &Storage) -> Result<PathBuf, Error> {
    if s.mount_point.is_empty() {
        return Err(Error::NoMountPoint);
    }
    let target = PathBuf::from(&s.mount_point);
    match s.driver.as_str() {
        "9p" | "virtio-fs" | "virtiofs" | "local" | "tmpfs" | "ephemeral" => {}
        other => {
            return Err(Error::Driver {
                driver: other.into(),
                mount_point: s.mount_point.clone(),
            })
        }
    }
    // Everything but the 9p share and tmpfs needs modules that load after the agent is up.
    if !matches!(s.driver.as_str(), "9p" | "tmpfs" | "ephemeral" | "local")
        && !crate::init::wait_late_modules(LATE_MODULES_WAIT)
    {
        log::warn!("late kernel modules still loading after {LATE_MODULES_WAIT:?}");
    }
    ensure_dir(&target)?;
    let opts = parse_options(&s.options);
    let fstype = (!s.fstype.is_empty()).then_some(s.fstype.as_str());
    mounts::mount_with_options(Some(Path::new(&s.source)), &target, fstype, &opts)?;
    log::info!("mounted {} ({}) on {}", s.source, s.fstype, s.mount_point);
    Ok(target)
}

pub fn unmount(path: &Path) {
    if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        log::warn!("unmount {}: {e}", path.display());
    }
}

//! Storage requests (CreateSandbox/CreateContainer `storages`): filesystems the agent mounts in
//! the guest, e.g. the sandbox's shared folder over 9p or virtio-fs.

use crate::mounts::{self, ensure_dir, parse_options};
use protocols::agent::Storage;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("device: {reason}")]
    Device { reason: String },
    #[error("no disk with serial {serial:?} appeared within {waited:?}")]
    NoDisk {
        serial: String,
        waited: std::time::Duration,
    },
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
        "9p" | "virtio-fs" | "virtiofs" | "local" | "tmpfs" | "ephemeral" | "blk" => {}
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
    // An ephemeral volume (emptyDir) is the pod's: the first container mounts it, the others
    // share it.
    if s.driver == "ephemeral" && is_mount_point(&target) {
        return Ok(target);
    }
    let opts = parse_options(&s.options);
    let fstype = (!s.fstype.is_empty()).then_some(s.fstype.as_str());
    // A hot-plugged disk is named by its serial; the guest's name for it (vdX) is found in
    // sysfs once the kernel has probed it.
    let source = match s.driver.as_str() {
        "blk" => disk_by_serial(&s.source, DISK_WAIT)?,
        _ => PathBuf::from(&s.source),
    };
    mounts::mount_with_options(Some(&source), &target, fstype, &opts)?;
    log::info!("mounted {} ({}) on {}", s.source, s.fstype, s.mount_point);
    Ok(target)
}

/// How long a hot-plugged disk may take to show up.
const DISK_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The spec with each hot-plugged block device of `devices` (type "blk", `id` = the disk's
/// serial) given the guest's device numbers in `linux.devices` at its `container_path`: the
/// host's numbers mean nothing in the VM.
pub fn resolve_devices(
    spec_json: &[u8],
    devices: &[protocols::agent::Device],
) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::MetadataExt;
    let bad = |reason: String| Error::Device { reason };
    let mut spec: serde_json::Value =
        serde_json::from_slice(spec_json).map_err(|e| bad(format!("spec: {e}")))?;
    for d in devices.iter().filter(|d| d.type_ == "blk") {
        let dev = disk_by_serial(&d.id, DISK_WAIT)?;
        let rdev = std::fs::metadata(&dev)
            .map_err(|e| bad(format!("{}: {e}", dev.display())))?
            .rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let entry = spec["linux"]["devices"]
            .as_array_mut()
            .and_then(|list| {
                list.iter_mut()
                    .find(|e| e["path"] == d.container_path.as_str())
            })
            .ok_or_else(|| bad(format!("no linux.devices entry for {}", d.container_path)))?;
        entry["major"] = major.into();
        entry["minor"] = minor.into();
        log::info!(
            "device {} is {} ({major}:{minor})",
            d.container_path,
            dev.display()
        );
    }
    serde_json::to_vec(&spec).map_err(|e| bad(format!("spec: {e}")))
}

/// `/dev/vdX` of the virtio disk whose serial is `serial`, waiting up to `wait` for it.
fn disk_by_serial(serial: &str, wait: std::time::Duration) -> Result<PathBuf, Error> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/block") {
            for e in entries.flatten() {
                let found = std::fs::read_to_string(e.path().join("serial"))
                    .is_ok_and(|s| s.trim() == serial);
                if found {
                    let dev = Path::new("/dev").join(e.file_name());
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        if started.elapsed() >= wait {
            return Err(Error::NoDisk {
                serial: serial.to_string(),
                waited: wait,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Where the runtime has the agent mount a container's block rootfs (see the runtime's
/// `blockdev::GUEST_BLOCK_ROOT`).
pub const BLOCK_ROOT: &str = "/run/kata-containers/blk";

/// After a container is removed: its block rootfs (`<id>`) and block volumes (`<id>-vol<N>`)
/// are unmounted so the disks can be unplugged.
pub fn release_container(container_id: &str) {
    let Ok(entries) = std::fs::read_dir(BLOCK_ROOT) else {
        return;
    };
    let volume_prefix = format!("{container_id}-vol");
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name != container_id && !name.starts_with(&volume_prefix) {
            continue;
        }
        let path = e.path();
        if is_mount_point(&path) {
            unmount(&path);
        }
        let _ = std::fs::remove_dir(&path);
    }
}

fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == path)
}

pub fn unmount(path: &Path) {
    if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        log::warn!("unmount {}: {e}", path.display());
    }
}

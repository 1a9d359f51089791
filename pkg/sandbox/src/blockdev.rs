//! Block-device rootfs (Kata 1.x's devicemapper path): when a bundle's rootfs is the mount
//! point of a host block device (loop, device-mapper), the device itself is hot-plugged into
//! the VM as a virtio-blk disk and the agent mounts it as the container's root, instead of the
//! files going through the shared filesystem.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hypervisor::QmpClient;
use store::{BlockDevice, SandboxRecord};

use crate::{Error, Result, Runtime};

/// Where the agent mounts a container's block rootfs (`<dir>/<container id>`).
pub const GUEST_BLOCK_ROOT: &str = "/run/kata-containers/blk";

/// A host block device mounted (whole) at a rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootfsDevice {
    pub path: PathBuf,
    pub fstype: String,
}

/// The block device mounted at `rootfs`, if the rootfs is the top of such a mount.
pub(crate) fn rootfs_device(rootfs: &Path) -> Option<RootfsDevice> {
    let rootfs = rootfs.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    from_mountinfo(&info, &rootfs)
}

/// The last (topmost) mount at `rootfs` in `mountinfo`, when it is a whole filesystem whose
/// source is a block device with the mount's device number.
fn from_mountinfo(mountinfo: &str, rootfs: &Path) -> Option<RootfsDevice> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4).map(Path::new) == Some(rootfs))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let (majmin, root) = (fields.get(2)?, fields.get(3)?);
    let sep = fields.iter().position(|f| *f == "-")?;
    let (fstype, source) = (fields.get(sep + 1)?, fields.get(sep + 2)?);
    if *root != "/" || !source.starts_with("/dev/") {
        return None;
    }
    let meta = std::fs::metadata(source).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    let (major, minor) = majmin.split_once(':')?;
    let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
    if nix::sys::stat::major(rdev) != major || nix::sys::stat::minor(rdev) != minor {
        return None;
    }
    Some(RootfsDevice {
        path: PathBuf::from(source),
        fstype: fstype.to_string(),
    })
}

/// Refuses a device another container of this runtime already has in its VM.
pub(crate) fn check_unused(rt: &Runtime, dev: &Path) -> Result<()> {
    for id in rt.store.list() {
        if let Ok(rec) = rt.store.load_container(&id) {
            let mut disks = rec.block_rootfs.iter().chain(rec.block_volumes.iter());
            if disks.any(|b| b.path == dev) {
                return Err(Error::Unsupported(format!(
                    "block device {} is in use by container {}",
                    dev.display(),
                    rec.id
                )));
            }
        }
    }
    Ok(())
}

/// The PCIe root ports taken in sandbox `sb` (hot-plugged NICs and block devices).
pub(crate) fn used_ports(rt: &Runtime, sb: Option<&SandboxRecord>) -> Vec<String> {
    let Some(sb) = sb else {
        return Vec::new();
    };
    let mut used = crate::network::hotplug_ports(&sb.network);
    for id in &sb.containers {
        if let Ok(rec) = rt.store.load_container(id) {
            let disks = rec.block_rootfs.into_iter().chain(rec.block_volumes);
            used.extend(disks.filter_map(|b| b.bus));
        }
    }
    used
}

/// The first free root port: `Some(rpN)` on q35, `None` (root bus) elsewhere; an error when
/// every port is taken.
pub(crate) fn free_port(vm: &hypervisor::VmConfig, used: &[String]) -> Result<Option<String>> {
    if !vm.machine_type.contains("q35") {
        return Ok(None);
    }
    (1..=vm.hotplug_root_ports)
        .map(|i| format!("rp{i}"))
        .find(|rp| !used.contains(rp))
        .map(Some)
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "sandbox {}: no free PCIe root port left to hot-plug a device into \
                 (hotplug_root_ports = {})",
                vm.sandbox_id, vm.hotplug_root_ports
            ))
        })
}

/// A short serial the guest finds the disk by (virtio-blk keeps 20 characters).
pub(crate) fn serial_for(container_id: &str) -> String {
    format!("kata{:016x}", crate::fnv1a(container_id))
}

fn qmp(vm_dir: &Path, timeout: Duration) -> Result<QmpClient> {
    QmpClient::connect(&hypervisor::config::qmp_socket_in(vm_dir), timeout)
        .map_err(|e| Error::Unsupported(e.to_string()))
}

/// Hot-plugs host block device `path` into the VM of `vm_dir`; `key` names the disk (the
/// container id for its rootfs, `<id>/vol<N>` for a volume).
pub(crate) fn plug(
    vm_dir: &Path,
    key: &str,
    path: &Path,
    bus: Option<String>,
    read_only: bool,
    timeout: Duration,
) -> Result<BlockDevice> {
    let serial = serial_for(key);
    let id = format!("d{}", &serial[4..]);
    let mut q = qmp(vm_dir, timeout)?;
    hypervisor::block::plug(&mut q, &id, path, &serial, bus.as_deref(), read_only)
        .map_err(|e| Error::Unsupported(format!("hot-plugging {}: {e}", path.display())))?;
    log::info!(
        "{key}: {} hot-plugged as disk {id} (serial {serial}) on {}",
        path.display(),
        bus.as_deref().unwrap_or("the root bus")
    );
    Ok(BlockDevice {
        id,
        path: path.to_path_buf(),
        serial,
        bus,
    })
}

/// The host's node of block device `major:minor` (from /sys/dev/block/M:m/uevent); None when
/// the host has no such device, or one with nothing behind it (size 0: an unattached loop
/// device, an empty drive), which a VM could not open either: the container then gets a node
/// with the spec's numbers, as with runc.
pub(crate) fn host_device(major: i64, minor: i64) -> Option<PathBuf> {
    let size = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/size")).ok()?;
    if size.trim() == "0" {
        return None;
    }
    let uevent = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/uevent"));
    let text = std::fs::read_to_string(uevent).ok()?;
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .filter(|n| !n.is_empty() && !n.contains(".."))?;
    Some(Path::new("/dev").join(name))
}

/// At most this many root ports are made at boot (the VM configuration's limit).
pub(crate) const MAX_ROOT_PORTS: u32 = 16;
/// Root ports a sandbox's VM keeps free for its members' disks and NICs.
pub(crate) const ROOT_PORT_HEADROOM: u32 = 2;

/// The block devices of `linux.devices` that are hot-plugged from the host: each one the host
/// has (by major:minor), except for a privileged container whose host block devices stay out
/// of the VM unless `[runtime] privileged_host_devices = true` (they are then removed from
/// `spec`: the container sees the VM's devices, not the host's disks). A device the host does
/// not have stays in `spec` and is made in the container with the spec's type, numbers, mode
/// and owner, as runc does.
pub(crate) fn host_block_devices(
    rt: &Runtime,
    id: &str,
    spec: &mut oci_spec::runtime::Spec,
) -> Vec<(oci_spec::runtime::LinuxDevice, PathBuf)> {
    let Some(mut linux) = spec.linux().clone() else {
        return Vec::new();
    };
    let Some(devices) = linux.devices().clone() else {
        return Vec::new();
    };
    let keep_host_disks = rt.config.runtime.privileged_host_devices || !oci::is_privileged(spec);
    let mut plugged = Vec::new();
    let mut kept = Vec::new();
    let mut withheld = Vec::new();
    for d in devices {
        if d.typ() != oci_spec::runtime::LinuxDeviceType::B {
            kept.push(d);
            continue;
        }
        match host_device(d.major(), d.minor()) {
            None => kept.push(d),
            Some(host) if keep_host_disks => {
                plugged.push((d.clone(), host));
                kept.push(d);
            }
            Some(host) => withheld.push(host.display().to_string()),
        }
    }
    if !withheld.is_empty() {
        log::info!(
            "container {id} is privileged: the host's block devices stay with the host \
             ([runtime] privileged_host_devices = false): {}",
            withheld.join(" ")
        );
        linux.set_devices(Some(kept));
        spec.set_linux(Some(linux));
    }
    plugged
}

/// How many disks adding this container hot-plugs: its block rootfs, block volumes and
/// host block devices.
pub(crate) fn disks_needed(rt: &Runtime, id: &str, bundle: &oci::Bundle) -> u32 {
    let rootfs = u32::from(
        !rt.config.hypervisor.qemu.disable_block_device_use
            && rootfs_device(&bundle.rootfs).is_some(),
    );
    let volumes = bundle
        .spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() != Some("bind"))
        .filter(|m| m.source().as_deref().is_some_and(is_block_device))
        .count();
    let mut spec = bundle.spec.clone();
    let devices = host_block_devices(rt, id, &mut spec).len();
    rootfs + u32::try_from(volumes + devices).unwrap_or(u32::MAX)
}

/// Refuses, before anything is made, a container whose disks do not fit the free root ports.
pub(crate) fn check_capacity(
    id: &str,
    needed: u32,
    vm: &hypervisor::VmConfig,
    used: &[String],
) -> Result<()> {
    if !vm.machine_type.contains("q35") {
        return Ok(());
    }
    let free = (1..=vm.hotplug_root_ports)
        .filter(|i| !used.contains(&format!("rp{i}")))
        .count();
    let free = u32::try_from(free).unwrap_or(0);
    if needed <= free {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "container {id} needs {needed} hot-plugged block devices but sandbox {}'s VM has {free} \
         free PCIe root ports (it was booted with {}): start the pod with those devices in its \
         sandbox container, drop devices from the spec, or for a privileged container keep \
         [runtime] privileged_host_devices = false",
        vm.sandbox_id, vm.hotplug_root_ports
    )))
}

/// Root ports for a new sandbox's VM: what its first container needs plus headroom, at least
/// the configured number; more than a VM can have is refused with one line.
pub(crate) fn root_ports_for(id: &str, needed: u32, configured: u32) -> Result<u32> {
    if needed > MAX_ROOT_PORTS {
        return Err(Error::Unsupported(format!(
            "container {id} needs {needed} hot-plugged block devices; a VM takes at most \
             {MAX_ROOT_PORTS}: drop devices from the spec (a privileged container's host \
             devices stay out with [runtime] privileged_host_devices = false)"
        )));
    }
    Ok(configured.max((needed + ROOT_PORT_HEADROOM).min(MAX_ROOT_PORTS)))
}

/// Is `path` a block device (a mount source to hot-plug rather than share)?
pub(crate) fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Unplugs a container's disk from the running VM (the guest has unmounted it).
pub(crate) fn unplug(vm_dir: &Path, disk: &BlockDevice, timeout: Duration) {
    let result = qmp(vm_dir, timeout).and_then(|mut q| {
        // PCIe hot-unplug waits out the guest's 5 s "attention button" window.
        hypervisor::block::unplug(&mut q, &disk.id, Duration::from_secs(20))
            .map_err(|e| Error::Unsupported(e.to_string()))
    });
    match result {
        Ok(()) => log::info!("disk {} ({}) unplugged", disk.id, disk.path.display()),
        Err(e) => log::warn!("unplugging disk {} ({}): {e}", disk.id, disk.path.display()),
    }
}

/// The storage that makes the agent mount the disk at `mount_point` in the guest.
pub(crate) fn storage(
    mount_point: &Path,
    disk: &BlockDevice,
    fstype: &str,
    options: Vec<String>,
) -> protocols::agent::Storage {
    let mut s = protocols::agent::Storage::new();
    s.driver = "blk".into();
    s.source = disk.serial.clone();
    s.fstype = fstype.into();
    s.options = options;
    s.mount_point = mount_point.display().to_string();
    s
}

/// Where the agent mounts a container's block rootfs.
pub(crate) fn guest_root(container_id: &str) -> PathBuf {
    Path::new(GUEST_BLOCK_ROOT).join(container_id)
}

/// Where the agent mounts a container's block volume number `n` (the agent unmounts
/// `<id>` and `<id>-vol*` when the container is removed).
pub(crate) fn guest_volume(container_id: &str, n: usize) -> PathBuf {
    Path::new(GUEST_BLOCK_ROOT).join(format!("{container_id}-vol{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing_takes_the_top_whole_mount_of_a_block_device() {
        // /dev/null is a character device: never taken, whatever the numbers say.
        let info = "36 35 1:3 / /b/rootfs rw,relatime - ext4 /dev/null rw\n";
        assert_eq!(from_mountinfo(info, Path::new("/b/rootfs")), None);
        // A subtree bind of a filesystem is not its device.
        let info = "36 35 7:0 /sub /b/rootfs rw - ext4 /dev/loop0 rw\n";
        assert_eq!(from_mountinfo(info, Path::new("/b/rootfs")), None);
        // Not a device path (overlay, tmpfs).
        let info = "36 35 0:50 / /b/rootfs rw - overlay overlay rw,lowerdir=/x\n";
        assert_eq!(from_mountinfo(info, Path::new("/b/rootfs")), None);
        // Another mount point.
        let info = "36 35 7:0 / /b/other rw - ext4 /dev/loop0 rw\n";
        assert_eq!(from_mountinfo(info, Path::new("/b/rootfs")), None);
    }

    #[test]
    fn serials_fit_virtio_blk() {
        let s = serial_for(&"x".repeat(200));
        assert!(s.len() <= 20, "{s}");
        assert_ne!(serial_for("a"), serial_for("b"));
    }
}

//! A container's guest side: what it takes to create a container in a running VM (its
//! rootfs shared or its disk hot-plugged, its volumes and devices, the agent's
//! CreateContainer), with every step's undo registered.

use crate::rollback::Rollback;
use crate::share;
use crate::{Error, Result, Runtime};
use agent_client::{messages as msg, AgentClient};
use oci::Bundle;
use std::path::{Path, PathBuf};
use store::BlockDevice;

/// The sandbox a container is being added to.
pub(crate) struct Target<'a> {
    pub vm_dir: &'a Path,
    pub shared_dir: &'a Path,
    pub agent_socket: &'a Path,
    /// The VM, for device hot-plug.
    pub vm: &'a hypervisor::VmConfig,
    /// PCIe root ports already taken by hot-plugged devices.
    pub used_ports: Vec<String>,
}

/// What the host keeps of a container created in the guest.
pub(crate) struct GuestContainer {
    /// Host path of the rootfs bind mount inside the shared folder.
    pub share_base: PathBuf,
    pub block_rootfs: Option<BlockDevice>,
    pub block_volumes: Vec<BlockDevice>,
}

/// Creates container `id` in a running sandbox's VM: its rootfs and bind mounts shared into
/// the VM (or its block devices hot-plugged), then the agent's CreateContainer with
/// `edit_spec` applied to the guest spec first.
pub(crate) fn create(
    rt: &Runtime,
    id: &str,
    bundle: &Bundle,
    target: &Target,
    agent: &AgentClient,
    undo: &mut Rollback,
    edit_spec: impl FnOnce(&mut oci_spec::runtime::Spec),
) -> Result<GuestContainer> {
    crate::blockdev::check_capacity(
        id,
        crate::blockdev::disks_needed(rt, id, bundle),
        target.vm,
        &target.used_ports,
    )?;
    let block_rootfs = if rt.config.hypervisor.qemu.disable_block_device_use {
        None
    } else {
        crate::blockdev::rootfs_device(&bundle.rootfs)
    };
    if let Some(dev) = &block_rootfs {
        crate::blockdev::check_unused(rt, &dev.path)?;
    }
    let shared_rootfs = block_rootfs.is_none().then_some(bundle.rootfs.as_path());
    let (mut guest_spec, share_base, mut storages) =
        share::share_container(target.shared_dir, id, shared_rootfs, &bundle.spec)?;
    {
        let b = share_base.clone();
        undo.push("unshare rootfs", move || share::unshare_container(&b));
    }
    let mut used_ports = target.used_ports.clone();
    let mut plug = |key: &str, path: &Path, read_only: bool, undo: &mut Rollback| {
        let bus = crate::blockdev::free_port(target.vm, &used_ports)?;
        let disk =
            crate::blockdev::plug(target.vm_dir, key, path, bus, read_only, rt.call_timeout())?;
        used_ports.extend(disk.bus.clone());
        let (vm_dir, d, t) = (target.vm_dir.to_path_buf(), disk.clone(), rt.call_timeout());
        undo.push("unplug disk", move || {
            crate::blockdev::unplug(&vm_dir, &d, t)
        });
        Ok::<_, Error>(disk)
    };
    let disk = match &block_rootfs {
        Some(dev) => {
            let disk = plug(id, &dev.path, false, undo)?;
            let at = crate::blockdev::guest_root(id);
            storages.push(crate::blockdev::storage(
                &at,
                &disk,
                &dev.fstype,
                Vec::new(),
            ));
            if let Some(mut root) = guest_spec.root().clone() {
                root.set_path(at);
                guest_spec.set_root(Some(root));
            }
            Some(disk)
        }
        None => None,
    };
    // Block volumes: a mount whose source is a block device gets the device itself, mounted
    // by the agent and bind-mounted into the container.
    let mut volumes = Vec::new();
    let mut guest_mounts = guest_spec.mounts().clone().unwrap_or_default();
    for (n, m) in guest_mounts.iter_mut().enumerate() {
        let Some(source) = m.source().clone() else {
            continue;
        };
        if m.typ().as_deref() == Some("bind") || !crate::blockdev::is_block_device(&source) {
            continue;
        }
        crate::blockdev::check_unused(rt, &source)?;
        let options = m.options().clone().unwrap_or_default();
        let read_only = options.iter().any(|o| o == "ro");
        let disk = plug(&format!("{id}/vol{n}"), &source, read_only, undo)?;
        let at = crate::blockdev::guest_volume(id, n);
        let fstype = m.typ().clone().unwrap_or_else(|| "ext4".into());
        storages.push(crate::blockdev::storage(&at, &disk, &fstype, options));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(at));
        m.set_options(Some(vec![
            "rbind".into(),
            if read_only { "ro" } else { "rw" }.into(),
        ]));
        volumes.push(disk);
    }
    if !volumes.is_empty() {
        guest_spec.set_mounts(Some(guest_mounts));
    }
    // Block devices of `linux.devices`: the host device with those numbers is hot-plugged; the
    // agent gives the container's node the guest's numbers.
    let mut devices = Vec::new();
    let host_devices = crate::blockdev::host_block_devices(rt, id, &mut guest_spec);
    for (n, (d, host)) in host_devices.iter().enumerate() {
        crate::blockdev::check_unused(rt, host)?;
        let disk = plug(&format!("{id}/dev{n}"), host, false, undo)?;
        let mut dev = msg::Device::new();
        dev.id = disk.serial.clone();
        dev.type_ = "blk".into();
        dev.container_path = d.path().display().to_string();
        devices.push(dev);
        volumes.push(disk);
    }
    edit_spec(&mut guest_spec);
    let spec_json = serde_json::to_vec(&guest_spec)
        .map_err(|e| Error::Unsupported(format!("serialising the spec: {e}")))?;
    let mut req = msg::CreateContainerRequest::new();
    req.container_id = id.into();
    req.exec_id = id.into();
    req.oci_spec_json = spec_json;
    req.storages = storages;
    req.devices = devices;
    agent.create_container(&req)?;
    {
        let socket = target.agent_socket.to_path_buf();
        let timeout = rt.call_timeout();
        let cid = id.to_string();
        undo.push("remove container in the guest", move || {
            if let Ok(a) = AgentClient::connect(&socket, timeout) {
                let mut req = msg::RemoveContainerRequest::new();
                req.container_id = cid;
                req.timeout = 5;
                let _ = a.remove_container(&req);
            }
        });
    }

    Ok(GuestContainer {
        share_base,
        block_rootfs: disk,
        block_volumes: volumes,
    })
}

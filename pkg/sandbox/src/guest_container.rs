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
    let (spec, share_base, storages) =
        share::share_container(target.shared_dir, id, shared_rootfs, &bundle.spec)?;
    {
        let b = share_base.clone();
        undo.push("unshare rootfs", move || share::unshare_container(&b));
    }
    let mut guest = GuestSide {
        id,
        spec,
        storages,
        devices: Vec::new(),
        disks: Disks {
            target,
            used_ports: target.used_ports.clone(),
            timeout: rt.call_timeout(),
        },
    };
    let rootfs_disk = match &block_rootfs {
        Some(dev) => Some(guest.plug_rootfs(dev, undo)?),
        None => None,
    };
    let mut disks = guest.plug_volumes(rt, undo)?;
    disks.extend(guest.plug_devices(rt, undo)?);
    edit_spec(&mut guest.spec);
    guest.create(agent, target.agent_socket, undo)?;
    Ok(GuestContainer {
        share_base,
        block_rootfs: rootfs_disk,
        block_volumes: disks,
    })
}

/// Hot-plugs disks into the VM on free root ports, each with its undo.
struct Disks<'a> {
    target: &'a Target<'a>,
    used_ports: Vec<String>,
    timeout: std::time::Duration,
}

impl Disks<'_> {
    fn plug(
        &mut self,
        key: &str,
        path: &Path,
        read_only: bool,
        undo: &mut Rollback,
    ) -> Result<BlockDevice> {
        let bus = crate::blockdev::free_port(self.target.vm, &self.used_ports)?;
        let vm_dir = self.target.vm_dir;
        let disk = crate::blockdev::plug(vm_dir, key, path, bus, read_only, self.timeout)?;
        self.used_ports.extend(disk.bus.clone());
        let (vm_dir, d, t) = (vm_dir.to_path_buf(), disk.clone(), self.timeout);
        undo.push("unplug disk", move || {
            crate::blockdev::unplug(&vm_dir, &d, t)
        });
        Ok(disk)
    }
}

/// The container as the guest will get it, while it is put together.
struct GuestSide<'a> {
    id: &'a str,
    spec: oci_spec::runtime::Spec,
    storages: Vec<msg::Storage>,
    devices: Vec<msg::Device>,
    disks: Disks<'a>,
}

impl GuestSide<'_> {
    /// The rootfs on a host block device: the device itself, mounted by the agent.
    fn plug_rootfs(
        &mut self,
        dev: &crate::blockdev::RootfsDevice,
        undo: &mut Rollback,
    ) -> Result<BlockDevice> {
        let disk = self.disks.plug(self.id, &dev.path, false, undo)?;
        let at = crate::blockdev::guest_root(self.id);
        self.storages.push(crate::blockdev::storage(
            &at,
            &disk,
            &dev.fstype,
            Vec::new(),
        ));
        if let Some(mut root) = self.spec.root().clone() {
            root.set_path(at);
            self.spec.set_root(Some(root));
        }
        Ok(disk)
    }

    /// Block volumes: a mount whose source is a block device gets the device itself, mounted
    /// by the agent and bind-mounted into the container.
    fn plug_volumes(&mut self, rt: &Runtime, undo: &mut Rollback) -> Result<Vec<BlockDevice>> {
        let id = self.id;
        let mut volumes = Vec::new();
        let mut mounts = self.spec.mounts().clone().unwrap_or_default();
        for (n, m) in mounts.iter_mut().enumerate() {
            let Some(source) = m.source().clone() else {
                continue;
            };
            if m.typ().as_deref() == Some("bind") || !crate::blockdev::is_block_device(&source) {
                continue;
            }
            crate::blockdev::check_unused(rt, &source)?;
            let options = m.options().clone().unwrap_or_default();
            let read_only = options.iter().any(|o| o == "ro");
            let disk = self
                .disks
                .plug(&format!("{id}/vol{n}"), &source, read_only, undo)?;
            let at = crate::blockdev::guest_volume(id, n);
            let fstype = m.typ().clone().unwrap_or_else(|| "ext4".into());
            self.storages
                .push(crate::blockdev::storage(&at, &disk, &fstype, options));
            m.set_typ(Some("bind".into()));
            m.set_source(Some(at));
            m.set_options(Some(vec![
                "rbind".into(),
                if read_only { "ro" } else { "rw" }.into(),
            ]));
            volumes.push(disk);
        }
        if !volumes.is_empty() {
            self.spec.set_mounts(Some(mounts));
        }
        Ok(volumes)
    }

    /// Block devices of `linux.devices`: the host device with those numbers is hot-plugged;
    /// the agent gives the container's node the guest's numbers.
    fn plug_devices(&mut self, rt: &Runtime, undo: &mut Rollback) -> Result<Vec<BlockDevice>> {
        let id = self.id;
        let mut disks = Vec::new();
        let host_devices = crate::blockdev::host_block_devices(rt, id, &mut self.spec);
        for (n, (d, host)) in host_devices.iter().enumerate() {
            crate::blockdev::check_unused(rt, host)?;
            let disk = self
                .disks
                .plug(&format!("{id}/dev{n}"), host, false, undo)?;
            let mut dev = msg::Device::new();
            dev.id = disk.serial.clone();
            dev.type_ = "blk".into();
            dev.container_path = d.path().display().to_string();
            self.devices.push(dev);
            disks.push(disk);
        }
        Ok(disks)
    }

    /// The agent's CreateContainer; its undo removes the container in the guest.
    fn create(self, agent: &AgentClient, socket: &Path, undo: &mut Rollback) -> Result<()> {
        let spec_json = serde_json::to_vec(&self.spec)
            .map_err(|e| Error::Unsupported(format!("serialising the spec: {e}")))?;
        let mut req = msg::CreateContainerRequest::new();
        req.container_id = self.id.into();
        req.exec_id = self.id.into();
        req.oci_spec_json = spec_json;
        req.storages = self.storages;
        req.devices = self.devices;
        agent.create_container(&req)?;
        let (socket, timeout, cid) = (
            socket.to_path_buf(),
            self.disks.timeout,
            self.id.to_string(),
        );
        undo.push("remove container in the guest", move || {
            if let Ok(a) = AgentClient::connect(&socket, timeout) {
                let mut req = msg::RemoveContainerRequest::new();
                req.container_id = cid;
                req.timeout = 5;
                let _ = a.remove_container(&req);
            }
        });
        Ok(())
    }
}

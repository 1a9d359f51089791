//! Block device hot-plug over QMP (Kata 1.x's devicemapper path): a host block device (a
//! loop or device-mapper device holding a container's rootfs, or a block volume) becomes a
//! virtio-blk disk of the running VM, found in the guest by its serial number.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::qmp::{QmpClient, QmpError};

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("block device {id}: bad {what} {value:?}")]
    Bad {
        id: String,
        what: &'static str,
        value: String,
    },
}

/// QEMU's node name of the backend of disk `id`.
pub fn node_name(id: &str) -> String {
    format!("drive-{id}")
}

/// QEMU's id of the virtio-blk device of disk `id`.
pub fn device_id(id: &str) -> String {
    format!("blk-{id}")
}

fn check(id: &str, what: &'static str, value: &str, max: usize) -> Result<(), BlockError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(BlockError::Bad {
            id: id.to_string(),
            what,
            value: value.to_string(),
        })
    }
}

/// Adds host block device `path` to the VM as virtio-blk disk `id` with `serial` (at most 20
/// characters: the guest shows it in /sys/block/vdX/serial), on PCI bus `bus` (a free
/// `pcie-root-port` on q35; `None`: the root bus).
pub fn plug(
    qmp: &mut QmpClient,
    id: &str,
    path: &Path,
    serial: &str,
    bus: Option<&str>,
    read_only: bool,
) -> Result<(), BlockError> {
    check(id, "id", id, 40)?;
    check(id, "serial", serial, 20)?;
    let filename = path.to_str().ok_or_else(|| BlockError::Bad {
        id: id.to_string(),
        what: "path",
        value: path.display().to_string(),
    })?;
    qmp.execute(
        "blockdev-add",
        Some(json!({
            "driver": "raw",
            "node-name": node_name(id),
            "read-only": read_only,
            "file": {"driver": "host_device", "filename": filename, "read-only": read_only},
        })),
    )?;
    let mut device = json!({
        "driver": "virtio-blk-pci",
        "id": device_id(id),
        "drive": node_name(id),
        "serial": serial,
    });
    if let Some(bus) = bus {
        device["bus"] = json!(bus);
    }
    if let Err(e) = qmp.execute("device_add", Some(device)) {
        let _ = qmp.execute("blockdev-del", Some(json!({"node-name": node_name(id)})));
        return Err(e.into());
    }
    Ok(())
}

/// Removes disk `id`: `device_del`, the guest's acknowledgement (DEVICE_DELETED, at most
/// `timeout`), then its backend, which releases the host device.
pub fn unplug(qmp: &mut QmpClient, id: &str, timeout: Duration) -> Result<(), BlockError> {
    let dev = device_id(id);
    qmp.execute("device_del", Some(json!({ "id": dev })))?;
    qmp.wait_event(
        "DEVICE_DELETED",
        |e| e["data"]["device"] == dev.as_str(),
        timeout,
    )?;
    qmp.execute("blockdev-del", Some(json!({"node-name": node_name(id)})))?;
    Ok(())
}

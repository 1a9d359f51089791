//! NIC hot-plug over QMP (`kata-runtime kata-network add-iface` / `del-iface`): the same
//! devices [`crate::cmdline`] puts on the command line at boot, added to a running VM.

use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cmdline::{is_mac, is_pci_address};
use crate::config::{NetBackend, NetDevice};
use crate::qmp::{QmpClient, QmpError};

#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("network device {id}: {problem}")]
    Bad { id: String, problem: String },
    #[error("network device {id}: opening {device}: {source}")]
    Open {
        id: String,
        device: String,
        source: std::io::Error,
    },
    #[error("network device {id}: hot-plugging a vhost-user NIC needs guest memory shared from boot; give the interface before the sandbox starts")]
    VhostUserHotplug { id: String },
}

fn bad(dev: &NetDevice, problem: impl Into<String>) -> NicError {
    NicError::Bad {
        id: dev.id.clone(),
        problem: problem.into(),
    }
}

/// Adds `dev` to the running VM on PCI bus `bus` (a free `pcie-root-port` on q35; `None` on
/// machines that hot-plug on the root bus). `vhost`: use vhost-net for taps. `opened_tap`: the
/// tap already opened by the caller, for a QEMU outside the tap's network namespace (QEMU
/// would not find it by name); `None`: QEMU opens it by name.
pub fn plug(
    qmp: &mut QmpClient,
    dev: &NetDevice,
    bus: Option<&str>,
    vhost: bool,
    opened_tap: Option<&std::fs::File>,
) -> Result<(), NicError> {
    if dev.id.is_empty()
        || !dev
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(bad(dev, format!("bad id {:?}", dev.id)));
    }
    let mut device = match &dev.backend {
        NetBackend::Tap { ifname } if opened_tap.is_none() => {
            qmp.execute(
                "netdev_add",
                Some(json!({
                    "type": "tap", "id": dev.id, "ifname": ifname,
                    "script": "no", "downscript": "no", "vhost": vhost,
                })),
            )?;
            virtio_net(dev)?
        }
        // A tap by descriptor: the one the caller opened, or the macvtap device opened here.
        NetBackend::Tap { .. } | NetBackend::Macvtap { .. } => {
            let opened_here = match (&dev.backend, opened_tap) {
                (NetBackend::Macvtap { device }, _) => Some(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(device)
                        .map_err(|source| NicError::Open {
                            id: dev.id.clone(),
                            device: device.display().to_string(),
                            source,
                        })?,
                ),
                _ => None,
            };
            let Some(file) = opened_here.as_ref().or(opened_tap) else {
                return Err(bad(dev, "no tap descriptor"));
            };
            let fd_name = format!("fd-{}", dev.id);
            qmp.pass_fd(&fd_name, file.as_fd())?;
            qmp.execute(
                "netdev_add",
                Some(json!({ "type": "tap", "id": dev.id, "fd": fd_name, "vhost": vhost })),
            )?;
            virtio_net(dev)?
        }
        NetBackend::VhostUser { .. } => {
            return Err(NicError::VhostUserHotplug { id: dev.id.clone() })
        }
        NetBackend::Vfio { host } => {
            if !is_pci_address(host) {
                return Err(bad(dev, format!("bad PCI address {host:?}")));
            }
            json!({ "driver": "vfio-pci", "host": host, "id": dev.device_id() })
        }
    };
    if let Some(bus) = bus {
        device["bus"] = Value::String(bus.to_string());
    }
    if let Err(e) = qmp.execute("device_add", Some(device)) {
        if !matches!(dev.backend, NetBackend::Vfio { .. }) {
            let _ = qmp.execute("netdev_del", Some(json!({ "id": dev.id })));
        }
        return Err(e.into());
    }
    Ok(())
}

fn virtio_net(dev: &NetDevice) -> Result<Value, NicError> {
    if !is_mac(&dev.mac) {
        return Err(bad(dev, format!("bad MAC {:?}", dev.mac)));
    }
    Ok(json!({
        "driver": "virtio-net-pci", "id": dev.device_id(), "netdev": dev.id, "mac": dev.mac,
    }))
}

/// Removes `dev` from the running VM: `device_del`, the guest's acknowledgement
/// (DEVICE_DELETED, at most `timeout`), then its backend.
pub fn unplug(qmp: &mut QmpClient, dev: &NetDevice, timeout: Duration) -> Result<(), NicError> {
    let device_id = dev.device_id();
    qmp.execute("device_del", Some(json!({ "id": device_id })))?;
    qmp.wait_event(
        "DEVICE_DELETED",
        |e| e["data"]["device"] == device_id.as_str(),
        timeout,
    )?;
    if !matches!(dev.backend, NetBackend::Vfio { .. }) {
        qmp.execute("netdev_del", Some(json!({ "id": dev.id })))?;
    }
    Ok(())
}

//! Passing a PCI network device (a physical NIC or an SR-IOV virtual function) found in the
//! pod's network namespace to the VM with VFIO, as Kata Containers 1.x did for "physical"
//! endpoints.
//!
//! The device is taken from its host driver (say `ixgbevf`) and given to `vfio-pci` through
//! sysfs, the way `driverctl` does it:
//!
//! ```text
//! echo vfio-pci > /sys/bus/pci/devices/ADDR/driver_override
//! echo ADDR     > /sys/bus/pci/devices/ADDR/driver/unbind
//! echo ADDR     > /sys/bus/pci/drivers_probe
//! ```
//!
//! QEMU (`-device vfio-pci,host=ADDR`, see the hypervisor crate) then opens
//! `/dev/vfio/<iommu group>`. [`restore`] undoes it, possibly
//! in another process much later, from the [`VfioBinding`] kept in the sandbox's record.
//!
//! `driver_override` is used rather than `vfio-pci/new_id` because it concerns this one
//! device only: `new_id` would make vfio-pci grab every other function with the same
//! vendor:device pair too (all the other VFs of the card).
//!
//! Every function takes the sysfs root (`/sys` in production) so that the logic can be tested
//! against a fake tree. No shell or external program is run.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The driver that hands devices to user space through `/dev/vfio/<group>`.
pub const VFIO_DRIVER: &str = "vfio-pci";

#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    #[error(
        "invalid PCI address {address:?}: expected domain:bus:slot.function in hex, \
         like 0000:3b:00.1"
    )]
    InvalidAddress { address: String },
    #[error("PCI device {address} not found: {path} does not exist")]
    NoDevice { address: String, path: PathBuf },
    #[error(
        "PCI device {address} has no IOMMU group ({path} is missing): enable the IOMMU \
         (intel_iommu=on or amd_iommu=on on the kernel command line) and load vfio-pci"
    )]
    NoIommuGroup { address: String, path: PathBuf },
    #[error(
        "cannot bind PCI device {address} to vfio-pci: the driver is not loaded \
         ({path} is missing); load it with modprobe vfio-pci"
    )]
    NoVfioDriver { address: String, path: PathBuf },
    #[error("PCI device {address}: reading {path}: {source}")]
    Read {
        address: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("PCI device {address}: writing {value:?} to {path}: {source}")]
    Write {
        address: String,
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error(
        "PCI device {address} is not bound to vfio-pci after probing ({path} points to \
         {found}); its original driver was given it back"
    )]
    BindFailed {
        address: String,
        path: PathBuf,
        /// The driver found instead, or `no driver`.
        found: String,
    },
}

/// What [`bind`] changed, serialisable (it is stored in the sandbox's JSON record) so
/// [`restore`] can undo it in another process later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VfioBinding {
    /// Like `0000:3b:00.1`.
    pub pci_address: String,
    /// The driver before (e.g. `"ixgbevf"`); `None` if the device was unbound.
    ///
    /// `Some("vfio-pci")` means the device was already bound to vfio-pci before [`bind`]
    /// (someone else set it up): nothing was changed, and [`restore`] is a no-op, so that we do
    /// not take from vfio-pci a device we did not give it.
    pub original_driver: Option<String>,
    /// The IOMMU group number, like `42`.
    pub iommu_group: String,
    /// `/dev/vfio/<group>`, the file QEMU opens.
    pub group_device: PathBuf,
    /// Like `0x8086`, as sysfs shows it.
    pub vendor: String,
    /// Like `0x10ed`, as sysfs shows it.
    pub device: String,
}

impl VfioBinding {
    /// Whether [`bind`] changed the device's driver (and [`restore`] has something to undo).
    pub fn changed(&self) -> bool {
        self.original_driver.as_deref() != Some(VFIO_DRIVER)
    }
}

/// Checks `address` is a PCI address as the kernel names devices (`%04x:%02x:%02x.%d`, the
/// domain possibly longer, as with Intel VMD): it is joined to sysfs paths, and it comes from
/// a symlink or from a record on disk, so nothing like `/` or `..` may pass.
pub fn validate_address(address: &str) -> Result<(), VfioError> {
    fn hex(s: &str, min: usize, max: usize) -> bool {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    }
    let valid = (|| {
        let (domain, rest) = address.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        let ok = hex(domain, 4, 8)
            && hex(bus, 2, 2)
            && hex(slot, 2, 2)
            && u8::from_str_radix(slot, 16).ok()? < 32
            && function.len() == 1
            && matches!(function.as_bytes()[0], b'0'..=b'7');
        Some(ok)
    })()
    .unwrap_or(false);
    if valid {
        Ok(())
    } else {
        Err(VfioError::InvalidAddress {
            address: address.to_string(),
        })
    }
}

/// `<sysfs>/bus/pci/devices/<address>`; `address` must have been validated.
fn device_dir(sysfs: &Path, address: &str) -> PathBuf {
    sysfs.join("bus/pci/devices").join(address)
}

/// `<sysfs>/bus/pci/drivers_probe`: writing an address there makes the kernel look for a
/// driver for that device, honouring `driver_override`.
fn drivers_probe(sysfs: &Path) -> PathBuf {
    sysfs.join("bus/pci/drivers_probe")
}

/// The last component of the symlink at `link`, `None` if there is no such link.
fn link_name(link: &Path, address: &str) -> Result<Option<String>, VfioError> {
    match fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VfioError::Read {
            address: address.to_string(),
            path: link.to_path_buf(),
            source,
        }),
    }
}

/// The driver the device at `dev` is bound to, from its `driver` symlink.
fn current_driver(dev: &Path, address: &str) -> Result<Option<String>, VfioError> {
    link_name(&dev.join("driver"), address)
}

/// A one-line sysfs attribute, trimmed.
fn read_attr(path: &Path, address: &str) -> Result<String, VfioError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| VfioError::Read {
            address: address.to_string(),
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `value` to the sysfs attribute `path` in one `write`, as `echo value > path` does.
/// The file is never created: a missing attribute means a kernel without the feature (or a
/// vanished device), which must be an error, not a new regular file.
fn write_attr(path: &Path, value: &str, address: &str) -> Result<(), VfioError> {
    log::debug!("vfio {address}: writing {value:?} to {}", path.display());
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| VfioError::Write {
            address: address.to_string(),
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        })
}

/// Binds the device at `pci_address` (like `0000:3b:00.1`) to vfio-pci: [`prepare_bind`] then
/// [`verify_bound`]. A device already bound to vfio-pci is left alone (see
/// [`VfioBinding::original_driver`]).
pub fn bind(sysfs: &Path, pci_address: &str) -> Result<VfioBinding, VfioError> {
    let binding = prepare_bind(sysfs, pci_address)?;
    verify_bound(sysfs, &binding)?;
    if binding.changed() {
        log::info!(
            "vfio {pci_address}: bound to vfio-pci (was {}), IOMMU group {}",
            binding.original_driver.as_deref().unwrap_or("unbound"),
            binding.iommu_group
        );
    }
    Ok(binding)
}

/// The first half of [`bind`]: checks the device and asks the kernel to move it to vfio-pci
/// (`driver_override`, unbind, `drivers_probe`). Does not check that it worked. If a write
/// fails half-way, what was done is undone before returning the error.
pub fn prepare_bind(sysfs: &Path, pci_address: &str) -> Result<VfioBinding, VfioError> {
    validate_address(pci_address)?;
    let address = pci_address;
    let dev = device_dir(sysfs, address);
    if !dev.exists() {
        return Err(VfioError::NoDevice {
            address: address.to_string(),
            path: dev,
        });
    }
    let vendor = read_attr(&dev.join("vendor"), address)?;
    let device = read_attr(&dev.join("device"), address)?;
    let group_link = dev.join("iommu_group");
    let iommu_group = link_name(&group_link, address)?
        .filter(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| VfioError::NoIommuGroup {
            address: address.to_string(),
            path: group_link.clone(),
        })?;
    let original_driver = current_driver(&dev, address)?;
    let binding = VfioBinding {
        pci_address: address.to_string(),
        original_driver: original_driver.clone(),
        group_device: Path::new("/dev/vfio").join(&iommu_group),
        iommu_group,
        vendor,
        device,
    };
    if !binding.changed() {
        log::info!("vfio {address}: already bound to vfio-pci, leaving it as it is");
        return Ok(binding);
    }
    // Checked first so that a missing module does not leave the NIC without any driver.
    let vfio_dir = sysfs.join("bus/pci/drivers").join(VFIO_DRIVER);
    if !vfio_dir.is_dir() {
        return Err(VfioError::NoVfioDriver {
            address: address.to_string(),
            path: vfio_dir,
        });
    }

    write_attr(&dev.join("driver_override"), VFIO_DRIVER, address)?;
    let moved = (|| {
        if original_driver.is_some() {
            write_attr(&dev.join("driver/unbind"), address, address)?;
        }
        write_attr(&drivers_probe(sysfs), address, address)
    })();
    if let Err(e) = moved {
        if let Err(undo) = give_back(sysfs, &dev, address, original_driver.as_deref()) {
            log::warn!("vfio {address}: undoing a failed bind: {undo}");
        }
        return Err(e);
    }
    Ok(binding)
}

/// The second half of [`bind`]: checks that the device's `driver` link now points to
/// vfio-pci. If not, clears `driver_override` and gives the device back to its original
/// driver, then returns [`VfioError::BindFailed`]: the device is never left driverless.
pub fn verify_bound(sysfs: &Path, binding: &VfioBinding) -> Result<(), VfioError> {
    let address = binding.pci_address.as_str();
    validate_address(address)?;
    let dev = device_dir(sysfs, address);
    let found = current_driver(&dev, address)?;
    if found.as_deref() == Some(VFIO_DRIVER) {
        return Ok(());
    }
    if let Err(undo) = give_back(sysfs, &dev, address, binding.original_driver.as_deref()) {
        log::warn!("vfio {address}: undoing a failed bind: {undo}");
    }
    Err(VfioError::BindFailed {
        address: address.to_string(),
        path: dev.join("driver"),
        found: found.unwrap_or_else(|| "no driver".to_string()),
    })
}

/// Undoes [`bind`]: unbinds the device from vfio-pci, clears `driver_override` and, if it had
/// a driver before, probes again so that driver takes it back. A device that was unbound
/// before is left unbound: probing would hand it to a driver someone had deliberately taken
/// it from. A no-op when [`bind`] changed nothing. A device that is gone (hot-unplugged, VF
/// removed) is not an error: there is nothing left to restore.
pub fn restore(sysfs: &Path, binding: &VfioBinding) -> Result<(), VfioError> {
    let address = binding.pci_address.as_str();
    // The binding comes from a file on disk: it is joined to paths again.
    validate_address(address)?;
    if !binding.changed() {
        log::debug!("vfio {address}: was already on vfio-pci before bind, nothing to restore");
        return Ok(());
    }
    let dev = device_dir(sysfs, address);
    if !dev.exists() {
        log::warn!(
            "vfio {address}: device is gone ({} missing), nothing to restore",
            dev.display()
        );
        return Ok(());
    }
    let result = (|| {
        match current_driver(&dev, address)?.as_deref() {
            Some(VFIO_DRIVER) => write_attr(&dev.join("driver/unbind"), address, address)?,
            Some(other) => log::warn!("vfio {address}: bound to {other}, not vfio-pci; leaving it"),
            None => {}
        }
        give_back(sysfs, &dev, address, binding.original_driver.as_deref())
    })();
    match result {
        Err(e) if !dev.exists() => {
            log::warn!("vfio {address}: device vanished while restoring ({e}), nothing to restore");
            Ok(())
        }
        Err(e) => Err(e),
        Ok(()) => {
            let now = current_driver(&dev, address).ok().flatten();
            if now != binding.original_driver {
                log::warn!(
                    "vfio {address}: restored, but its driver is {} instead of {}",
                    now.as_deref().unwrap_or("none"),
                    binding.original_driver.as_deref().unwrap_or("none")
                );
            } else {
                log::info!("vfio {address}: given back to its original driver");
            }
            Ok(())
        }
    }
}

/// Clears `driver_override` (a lone newline resets it) and, when the device had a driver,
/// probes it again so that driver takes it back.
fn give_back(
    sysfs: &Path,
    dev: &Path,
    address: &str,
    original_driver: Option<&str>,
) -> Result<(), VfioError> {
    write_attr(&dev.join("driver_override"), "\n", address)?;
    if original_driver.is_some() {
        write_attr(&drivers_probe(sysfs), address, address)?;
    }
    Ok(())
}

/// The PCI address behind the network interface `ifname`, from the
/// `<sysfs>/class/net/<ifname>/device` symlink. `None` when the interface has no device (veth,
/// bridge and other virtual links), when the device is not PCI (e.g. `virtio0`), or when the
/// name could escape the directory.
///
/// sysfs shows the interfaces of the network namespace that was current when it was mounted:
/// to find the pod's interfaces, `sysfs` must be a sysfs mounted from inside the pod's
/// network namespace.
pub fn pci_address_of(sysfs: &Path, ifname: &str) -> Option<String> {
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains('/') {
        return None;
    }
    let target = fs::read_link(sysfs.join("class/net").join(ifname).join("device")).ok()?;
    let name = target.file_name()?.to_str()?.to_string();
    validate_address(&name).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    const ADDR: &str = "0000:3b:00.1";

    /// A fake sysfs with one VF at [`ADDR`] bound to ixgbevf, IOMMU group 42, exposed as
    /// `eth0`, and a virtual `veth0`. Laid out like the kernel's: `bus/pci/devices/ADDR` is a
    /// symlink into `devices/`.
    struct Fake {
        dir: TempDir,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = TempDir::new().unwrap();
            let root = dir.path();
            let real = root.join("devices/pci0000:3a").join(ADDR);
            fs::create_dir_all(real.join("net/eth0")).unwrap();
            fs::write(real.join("vendor"), "0x8086\n").unwrap();
            fs::write(real.join("device"), "0x10ed\n").unwrap();
            fs::write(real.join("driver_override"), "(null)\n").unwrap();
            fs::create_dir_all(root.join("kernel/iommu_groups/42/devices")).unwrap();
            symlink("../../../kernel/iommu_groups/42", real.join("iommu_group")).unwrap();
            for d in ["ixgbevf", VFIO_DRIVER] {
                let d = root.join("bus/pci/drivers").join(d);
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join("bind"), "").unwrap();
                fs::write(d.join("unbind"), "").unwrap();
            }
            fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
            fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
            symlink(
                "../../../devices/pci0000:3a/0000:3b:00.1",
                root.join("bus/pci/devices").join(ADDR),
            )
            .unwrap();
            symlink("../../../bus/pci/drivers/ixgbevf", real.join("driver")).unwrap();
            symlink("../../../0000:3b:00.1", real.join("net/eth0/device")).unwrap();
            fs::create_dir_all(root.join("devices/virtual/net/veth0")).unwrap();
            fs::create_dir_all(root.join("class/net")).unwrap();
            symlink(
                "../../devices/pci0000:3a/0000:3b:00.1/net/eth0",
                root.join("class/net/eth0"),
            )
            .unwrap();
            symlink(
                "../../devices/virtual/net/veth0",
                root.join("class/net/veth0"),
            )
            .unwrap();
            Fake { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn dev(&self) -> PathBuf {
            self.root().join("devices/pci0000:3a").join(ADDR)
        }

        /// What the kernel does on bind/unbind: re-point the device's `driver` link.
        fn set_driver(&self, driver: Option<&str>) {
            let link = self.dev().join("driver");
            let _ = fs::remove_file(&link);
            if let Some(d) = driver {
                symlink(format!("../../../bus/pci/drivers/{d}"), link).unwrap();
            }
        }

        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.root().join(rel)).unwrap()
        }

        fn read_dev(&self, attr: &str) -> String {
            fs::read_to_string(self.dev().join(attr)).unwrap()
        }
    }

    fn binding(original: Option<&str>) -> VfioBinding {
        VfioBinding {
            pci_address: ADDR.into(),
            original_driver: original.map(String::from),
            iommu_group: "42".into(),
            group_device: "/dev/vfio/42".into(),
            vendor: "0x8086".into(),
            device: "0x10ed".into(),
        }
    }

    #[test]
    fn address_validation() {
        for good in [
            "0000:3b:00.1",
            "0000:00:1f.7",
            "ffff:FF:1F.0",
            "10000:00:02.0",
        ] {
            assert!(validate_address(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "0000:3b:00.1/..",
            "..",
            "/",
            "0000:3b:00.8",
            "0000:3b:20.0",
            "000:3b:00.1",
            "0000:3b:00",
            "0000:3b:0.1",
            "0000:3b:00.1 ",
            "0000:3g:00.1",
            "3b:00.1",
            "0000:3b:00.1:0",
            "+000:3b:00.1",
            "0000:3b:00.10",
        ] {
            let err = validate_address(bad).unwrap_err();
            assert!(matches!(err, VfioError::InvalidAddress { .. }), "{bad}");
        }
        assert!(matches!(
            bind(Path::new("/nonexistent"), "../x"),
            Err(VfioError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn pci_address_of_links() {
        let fake = Fake::new();
        assert_eq!(pci_address_of(fake.root(), "eth0").as_deref(), Some(ADDR));
        assert_eq!(pci_address_of(fake.root(), "veth0"), None);
        assert_eq!(pci_address_of(fake.root(), "nope"), None);
        assert_eq!(pci_address_of(fake.root(), "../net/eth0"), None);
        assert_eq!(pci_address_of(fake.root(), ""), None);
        // A non-PCI device such as virtio0.
        let virtio = fake.root().join("devices/virtio0");
        fs::create_dir_all(virtio.join("net/ens3")).unwrap();
        symlink("../../../virtio0", virtio.join("net/ens3/device")).unwrap();
        symlink(virtio.join("net/ens3"), fake.root().join("class/net/ens3")).unwrap();
        assert_eq!(pci_address_of(fake.root(), "ens3"), None);
    }

    #[test]
    fn bind_from_ixgbevf() {
        let fake = Fake::new();
        let b = prepare_bind(fake.root(), ADDR).unwrap();
        assert_eq!(fake.read_dev("driver_override"), "vfio-pci");
        assert_eq!(fake.read("bus/pci/drivers/ixgbevf/unbind"), ADDR);
        assert_eq!(fake.read("bus/pci/drivers_probe"), ADDR);
        assert_eq!(b, binding(Some("ixgbevf")));
        assert!(b.changed());
        // The kernel's probe moved it.
        fake.set_driver(Some(VFIO_DRIVER));
        verify_bound(fake.root(), &b).unwrap();
        // Not undone.
        assert_eq!(fake.read_dev("driver_override"), "vfio-pci");
    }

    #[test]
    fn bind_already_vfio_changes_nothing() {
        let fake = Fake::new();
        fake.set_driver(Some(VFIO_DRIVER));
        let b = bind(fake.root(), ADDR).unwrap();
        assert_eq!(b.original_driver.as_deref(), Some(VFIO_DRIVER));
        assert!(!b.changed());
        assert_eq!(fake.read_dev("driver_override"), "(null)\n");
        assert_eq!(fake.read("bus/pci/drivers_probe"), "");
        restore(fake.root(), &b).unwrap();
        assert_eq!(fake.read("bus/pci/drivers/vfio-pci/unbind"), "");
        assert_eq!(fake.read_dev("driver_override"), "(null)\n");
    }

    #[test]
    fn bind_verification_fails() {
        let fake = Fake::new();
        // The fake kernel never moves the driver link: still ixgbevf.
        let err = bind(fake.root(), ADDR).unwrap_err();
        match &err {
            VfioError::BindFailed { address, found, .. } => {
                assert_eq!(address, ADDR);
                assert_eq!(found, "ixgbevf");
            }
            other => panic!("{other}"),
        }
        assert!(!err.to_string().contains('\n'));
        assert_eq!(fake.read_dev("driver_override"), "\n");
        assert_eq!(fake.read("bus/pci/drivers_probe"), ADDR);
    }

    #[test]
    fn bind_without_vfio_driver_touches_nothing() {
        let fake = Fake::new();
        fs::remove_dir_all(fake.root().join("bus/pci/drivers/vfio-pci")).unwrap();
        let err = bind(fake.root(), ADDR).unwrap_err();
        assert!(matches!(err, VfioError::NoVfioDriver { .. }), "{err}");
        assert!(err.to_string().contains("modprobe vfio-pci"));
        assert_eq!(fake.read_dev("driver_override"), "(null)\n");
        assert_eq!(fake.read("bus/pci/drivers/ixgbevf/unbind"), "");
    }

    #[test]
    fn no_iommu_group() {
        let fake = Fake::new();
        fs::remove_file(fake.dev().join("iommu_group")).unwrap();
        let err = bind(fake.root(), ADDR).unwrap_err();
        assert!(matches!(err, VfioError::NoIommuGroup { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(ADDR) && msg.contains("iommu_group") && msg.contains("intel_iommu=on")
        );
        assert_eq!(fake.read_dev("driver_override"), "(null)\n");
    }

    #[test]
    fn missing_device() {
        let fake = Fake::new();
        let err = bind(fake.root(), "0000:3b:00.2").unwrap_err();
        assert!(matches!(err, VfioError::NoDevice { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("0000:3b:00.2") && msg.contains("bus/pci/devices"));
    }

    #[test]
    fn restore_writes() {
        let fake = Fake::new();
        fake.set_driver(Some(VFIO_DRIVER));
        fs::write(fake.dev().join("driver_override"), "vfio-pci\n").unwrap();
        restore(fake.root(), &binding(Some("ixgbevf"))).unwrap();
        assert_eq!(fake.read("bus/pci/drivers/vfio-pci/unbind"), ADDR);
        assert_eq!(fake.read_dev("driver_override"), "\n");
        assert_eq!(fake.read("bus/pci/drivers_probe"), ADDR);
    }

    #[test]
    fn restore_of_unbound_original_does_not_probe() {
        let fake = Fake::new();
        fake.set_driver(Some(VFIO_DRIVER));
        restore(fake.root(), &binding(None)).unwrap();
        assert_eq!(fake.read("bus/pci/drivers/vfio-pci/unbind"), ADDR);
        assert_eq!(fake.read_dev("driver_override"), "\n");
        assert_eq!(fake.read("bus/pci/drivers_probe"), "");
    }

    #[test]
    fn restore_of_vanished_device() {
        let fake = Fake::new();
        fs::remove_file(fake.root().join("bus/pci/devices").join(ADDR)).unwrap();
        restore(fake.root(), &binding(Some("ixgbevf"))).unwrap();
        assert_eq!(fake.read("bus/pci/drivers_probe"), "");
    }

    #[test]
    fn restore_rejects_bad_address() {
        let fake = Fake::new();
        let mut b = binding(Some("ixgbevf"));
        b.pci_address = "../../../etc".into();
        assert!(matches!(
            restore(fake.root(), &b),
            Err(VfioError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn binding_json_round_trip() {
        for b in [binding(Some("ixgbevf")), binding(None)] {
            let json = serde_json::to_string(&b).unwrap();
            let back: VfioBinding = serde_json::from_str(&json).unwrap();
            assert_eq!(back, b);
        }
        let json = serde_json::to_value(binding(None)).unwrap();
        assert_eq!(json["group_device"], "/dev/vfio/42");
        assert!(json["original_driver"].is_null());
    }
}

//! Tap devices through `/dev/net/tun` (netlink cannot create them).
//!
//! Choice: the tap is made *persistent* (`TUNSETPERSIST`) and the file is closed; QEMU, started
//! inside the same network namespace, opens it again by name with
//! `-netdev tap,ifname=<name>,script=no,downscript=no`. An open descriptor could not outlive
//! this short-lived runtime process without being handed to QEMU at exec time, and a name
//! survives in the sandbox record for `delete`. The tap is created without `IFF_MULTI_QUEUE`
//! (QEMU's single-queue `-netdev tap` asks for none: the flag must match) and QEMU sets
//! `IFF_VNET_HDR` itself when it attaches.
//!
//! Must run on a thread that has entered the target namespace: the device is created in the
//! namespace of the thread that opens `/dev/net/tun`.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {0:?} is longer than {max} bytes", max = libc::IFNAMSIZ - 1)]
    Name(String),
    #[error("opening /dev/net/tun: {0}")]
    Open(io::Error),
    #[error("creating tap {name} (TUNSETIFF): {source}")]
    Create { name: String, source: io::Error },
    #[error("attaching to tap {name} (TUNSETIFF): {source}")]
    Attach { name: String, source: io::Error },
    #[error("making tap {name} persistent (TUNSETPERSIST): {source}")]
    Persist { name: String, source: io::Error },
}

/// Opens the existing persistent tap `name` of the current thread's network namespace as a
/// queue with virtio-net headers, the way QEMU opens it by name: for a QEMU that runs in
/// another namespace (a VM from the factory's cache), which is handed the descriptor.
pub fn open_queue(name: &str) -> Result<std::fs::File, TapError> {
    attach(name, libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR).map_err(|e| match e {
        TapError::Create { name, source } => TapError::Attach { name, source },
        other => other,
    })
}

/// `/dev/net/tun` attached (TUNSETIFF) to tap `name` with `flags`, creating it if missing.
fn attach(name: &str, flags: libc::c_int) -> Result<std::fs::File, TapError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(TapError::Name(name.to_string()));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    // SAFETY: an all-zero ifreq is valid; the name fits with its NUL (checked above).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and updates the ifreq, which outlives the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) } < 0 {
        return Err(TapError::Create {
            name: name.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(tun)
}

/// Creates the persistent tap `name` (`IFF_TAP | IFF_NO_PI`) in the current thread's network
/// namespace. Fails with `EBUSY`-like errors if the name is taken by a non-tap device.
pub fn create_persistent(name: &str) -> Result<(), TapError> {
    let tun = attach(name, libc::IFF_TAP | libc::IFF_NO_PI)?;
    // SAFETY: TUNSETPERSIST takes an integer argument.
    if unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETPERSIST as _,
            1 as libc::c_ulong,
        )
    } < 0
    {
        return Err(TapError::Persist {
            name: name.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    // Closing the file leaves the persistent device behind; it is removed with RTM_DELLINK.
    Ok(())
}

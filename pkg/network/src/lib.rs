//! The pod's network namespace, handed to the VM as Kata Containers 1.x did.
//!
//! The caller (a CNI plugin, podman, containerd's CRI) makes a network namespace with a veth
//! and addresses in it. The runtime:
//! 1. [`scan()`]s it: links, addresses, routes, MTU, MAC (skipping `lo` and links without
//!    addresses);
//! 2. [`connect()`]s each interface to a tap by an interworking [`Model`] (`tcfilter` by
//!    default), keeping in a [`TapPair`] what it changed;
//! 3. starts QEMU *inside* that namespace with the tap (the hypervisor crate's `NetDevice`) and
//!    the interface's MAC, then has the agent configure the guest NIC with the
//!    [`Endpoint`]'s addresses and routes;
//! 4. on delete, [`disconnect()`]s: the namespace is left as it was found.
//!
//! Every operation enters the namespace on a dedicated thread ([`netns`]); the calling thread
//! never changes namespace. Everything goes through rtnetlink and `/dev/net/tun` ioctls: no
//! `ip` or `tc` binary is run.

pub mod agent;
pub mod connect;
pub mod guest;
pub mod netns;
mod nl;
pub mod scan;
pub mod tap;
pub mod tc;
pub mod vfio;
pub mod vhost_user;

use std::path::Path;

pub use connect::{ConnectError, Model, SavedAddress, TapPair, Undo};
pub use netns::NetnsError;
pub use scan::{Endpoint, Family, IpNet, LinkKind, Route, ScanError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// The usable interfaces of the network namespace at `netns_path` (a path such as
/// `/var/run/netns/X` or `/proc/<pid>/ns/net`), sorted by name. No usable interface is an
/// error ([`ScanError::NoUsableInterface`]).
pub fn scan(netns_path: &Path) -> Result<Vec<Endpoint>, Error> {
    Ok(scan::scan(netns_path)?)
}

/// Connects `endpoint` to a new tap (`tapN_kata`) by `model`.
pub fn connect(netns_path: &Path, endpoint: &Endpoint, model: Model) -> Result<TapPair, Error> {
    Ok(connect::connect(netns_path, endpoint, model)?)
}

/// Removes what [`connect()`] made and restores what it changed.
pub fn disconnect(netns_path: &Path, pair: &TapPair) -> Result<(), Error> {
    Ok(connect::disconnect(netns_path, pair)?)
}

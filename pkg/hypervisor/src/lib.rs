//! The Hypervisor trait and its QEMU driver: command line, QMP, start/stop, KVM probe.
//!
//! Every sandbox runs in its own QEMU VM. The runtime is a short-lived CLI, so the
//! process that starts a VM is not the one that stops it: [`Qemu::state`] is
//! persisted after `start()` and [`Qemu::from_state`] re-attaches later. QEMU runs
//! in its own session (under QEMU's seccomp sandbox) and is identified by pid + start time.
//!
//! Modules: [`config`] (what a VM is), [`cmdline`] (pure argv builders),
//! [`qemu`] (start/stop), [`qmp`] (QMP client), [`kvm_probe`] (KVM or TCG),
//! [`proc`] (watching and signalling processes we did not fork), `virtiofsd`.

use std::path::PathBuf;
use std::time::Duration;

pub mod block;
pub mod cmdline;
pub mod config;
mod kvm_guest;
pub mod kvm_probe;
pub mod nic;
pub mod proc;
pub mod qemu;
pub mod qmp;
pub mod resize;
pub mod template;
mod virtiofsd;

pub use config::{
    Accel, ConfigError, NetBackend, NetDevice, SharedFs, VmConfig, SHARED_FS_MOUNT_TAG,
};
pub use kvm_probe::choose_accel;
pub use proc::ProcessId;
pub use qemu::{Qemu, QemuError, QemuState};
pub use qmp::{QmpClient, QmpError};
pub use template::{Role as TemplateRole, TemplateError, Templating};
pub use virtiofsd::VirtiofsdError;

/// Errors of any hypervisor driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Qemu(#[from] QemuError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A VM monitor as the sandbox layer sees it.
pub trait Hypervisor {
    /// Boots the VM; returns once its sockets accept connections (the guest may
    /// still be booting).
    fn start(&mut self) -> Result<()>;
    /// Shuts the VM down (graceful first, then forced). Idempotent.
    fn stop(&mut self) -> Result<()>;
    /// The VM process, once started (and until stopped).
    fn pid(&self) -> Option<i32>;
    fn is_running(&self) -> bool;
    /// Host end of the agent's virtio-serial channel.
    fn agent_socket(&self) -> PathBuf;
    /// Host end of the guest serial console.
    fn console_socket(&self) -> PathBuf;
    fn qmp_socket(&self) -> PathBuf;
    /// Waits for the VM process to exit; true if it has (or never ran).
    fn wait_exit(&self, timeout: Duration) -> bool;
}

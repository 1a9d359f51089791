//! Sandboxes and their containers, and the verbs of the runc-compatible CLI on top of them.
//!
//! The object model every front end drives: a [`Sandbox`] (one VM, the agent in it, the
//! folder shared into it, the pod's network) holds [`Container`]s, each with [`Process`]es.
//! [`plan::plan`] decides what a create will be; [`Sandbox::boot`] makes a VM and
//! [`Sandbox::add_container`] a container in it. The v1 CLI (`cli`: create, start, kill,
//! delete...) loads them from their records for each verb, calls one method and saves; the
//! shim v2 keeps them in memory. What stands for a process on the host (a kata-shim, or the
//! shim v2's threads) and how callers reach the agent ([`AgentLink`]: a kata-proxy, or the
//! shim v2's own yamux session) are the front end's.

mod blockdev;
mod cli;
mod console;
mod container;
pub mod factory;
mod guest_container;
pub mod health;
mod hooks;
pub mod hostcheck;
mod logs;
mod namespaces;
mod netcmd;
mod network;
mod overhead;
pub mod plan;
pub mod portforward;
mod process;
mod procs;
mod resize;
mod rollback;
mod sandbox;
mod share;
mod signal;
mod state;
pub mod stats;
mod vm;

pub use cli::create;
pub use cli::create::{CreateOptions, Created};
pub use cli::exec::{base_process, exec, ExecOptions};
pub use cli::lifecycle::{
    delete, kill, list, oom_kills, ps, set_paused, start, state, stats, update,
};
pub use container::{oom_kills_in, Container};
pub use hooks::run_create_hooks;
pub use namespaces::share_sandbox_namespaces;
pub use netcmd::{InterfaceJson, IpAddressJson, RouteJson};
pub use process::Process;
pub use rollback::Rollback;
pub use sandbox::{force_remove, Sandbox};
pub use state::{effective_status, to_state, OciState};
pub use vm::{AgentLink, LinkEnd, ProxyLink, VmChannel};
pub mod kata_network {
    //! The `kata-runtime kata-network` verbs.
    pub use crate::netcmd::{
        add_interface, del_interface, list_interfaces, list_routes, update_routes,
    };
}
pub use logs::logs;
pub use signal::parse_signal;

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Oci(#[from] oci::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Hypervisor(#[from] hypervisor::Error),
    #[error(transparent)]
    VmConfig(#[from] hypervisor::ConfigError),
    #[error(transparent)]
    Agent(#[from] agent_client::Error),
    #[error("{component} {path}: {reason}")]
    Spawn {
        component: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path}: {errno}")]
    Mount {
        what: &'static str,
        path: PathBuf,
        errno: nix::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id} is {status}: {action}")]
    BadState {
        id: String,
        status: store::Status,
        action: &'static str,
    },
    #[error("unknown signal {0:?}")]
    BadSignal(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("network: {0}")]
    Network(String),
    #[error("VM factory: {0}")]
    Factory(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// Creates `dir` (and its parents) with exactly `mode`, whatever the umask.
pub(crate) fn make_dir(dir: &std::path::Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io_err("creating", dir))?;
    // The umask must not narrow it further (0711 would become 0700 under 077).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", dir))
}

/// What every verb needs: the state store (`--root`) and the configuration.
#[derive(Clone)]
pub struct Runtime {
    pub store: store::Store,
    pub config: config::Config,
}

impl Runtime {
    pub fn new(root: PathBuf, config: config::Config) -> Self {
        Runtime {
            store: store::Store::new(root),
            config,
        }
    }

    /// Debug logging in the VM (agent and kernel console) and of the proxy and shims.
    pub(crate) fn debug(&self) -> bool {
        self.config.hypervisor.qemu.enable_debug || self.config.agent.kata.enable_debug
    }

    pub(crate) fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.config.agent.kata.request_timeout.max(1))
    }

    pub(crate) fn dial_timeout(&self) -> Duration {
        Duration::from_secs(self.config.agent.kata.dial_timeout.max(1))
    }

    /// A VM folder name short enough for unix socket paths whatever the id's length.
    pub(crate) fn vm_dir(&self, sandbox_id: &str) -> PathBuf {
        self.config.runtime.vm_dir.join(short_name(sandbox_id))
    }

    pub(crate) fn shared_dir(&self, sandbox_id: &str) -> PathBuf {
        self.config.runtime.shared_dir.join(short_name(sandbox_id))
    }
}

/// Ids up to 48 bytes are used as they are; longer ones are cut and given a hash suffix.
pub(crate) fn short_name(id: &str) -> String {
    if id.len() <= 48 {
        return id.to_string();
    }
    format!("{}-{:016x}", &id[..31], fnv1a(id))
}

/// FNV-1a: stable across runs and versions, unlike std's hasher.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_bounded_and_distinct() {
        assert_eq!(short_name("abc"), "abc");
        let a = short_name(&"a".repeat(1024));
        let b = short_name(&format!("{}b", "a".repeat(1023)));
        assert!(a.len() <= 48 && b.len() <= 48);
        assert_ne!(a, b);
    }
}

//! The orchestration behind every runtime verb. Read `create` top-down to see one container
//! come to life: id and bundle checks, the id claimed in the store, the rootfs shared, QEMU
//! booted, the proxy started, the agent asked to create the container, the shim spawned, the
//! records saved, and the pid file written last.

mod blockdev;
mod console;
mod create;
mod exec;
pub mod factory;
pub mod health;
mod hooks;
pub mod hostcheck;
mod lifecycle;
mod logs;
mod member;
mod namespaces;
mod netcmd;
mod network;
mod overhead;
pub mod portforward;
mod procs;
mod resize;
mod rollback;
mod share;
mod signal;

pub use create::{create, CreateOptions, Created};
pub use exec::{base_process, exec, ExecOptions};
pub use netcmd::{InterfaceJson, IpAddressJson, RouteJson};
pub mod kata_network {
    //! The `kata-runtime kata-network` verbs.
    pub use crate::netcmd::{
        add_interface, del_interface, list_interfaces, list_routes, update_routes,
    };
}
pub use lifecycle::{
    delete, kill, list, oom_kills, ps, set_paused, start, state, stats, update, OciState,
};
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

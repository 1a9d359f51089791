//! The in-guest half of the runtime, used by `kata-agent`:
//! - `init`: what PID 1 does before serving (mounts, re-rooting off the initramfs, modules);
//! - `reaper`: collects every child's exit status (PID 1 inherits all orphans);
//! - `container` + `spawn` + `setup`: containers as real Linux namespaces around a process;
//! - `service`: the ttrpc AgentService/Health implementation over those.

pub mod caps;
pub mod cgroup;
pub mod container;
pub mod exec;
pub mod fdpass;
pub mod hotplug;
pub mod init;
pub mod lease;
pub mod mounts;
pub mod namespaces;
pub mod net;
pub mod reaper;
pub mod relay;
pub mod seccomp;
pub mod service;
pub mod setup;
pub mod spawn;
pub mod storage;

/// argv[1] with which the agent re-executes itself as the in-container setup helper.
pub const CONTAINER_INIT_ARG: &str = "__container-init";

/// argv[1] with which the agent re-executes itself as the exec helper.
pub const CONTAINER_EXEC_ARG: &str = "__container-exec";

/// The agent's own ttrpc socket inside the guest; every yamux stream is bridged to it.
pub const AGENT_SOCKET: &str = "/run/kata-agent/agent.sock";

/// Where the sandbox's shared folder (tag `kataShared`) is mounted in the guest.
pub const SHARED_MOUNT: &str = "/run/kata-containers/shared/containers";

/// Version reported by Health.Version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

//! The kata agent API. `agent`/`health` hold the protobuf messages, `*_ttrpc` the ttrpc clients
//! and server traits, all generated from `protos/` by `make protocols` (see codegen/).

pub mod agent;
pub mod agent_ttrpc;
pub mod health;
pub mod health_ttrpc;

/// Where the agent publishes the sandbox container's namespaces (`ipc`, `uts`, `pid`), and so
/// the path the runtime puts in a pod member's spec for a namespace it shares with its
/// sandbox (the host's `/proc/<pid>/ns/...` paths from CRI mean nothing in the VM).
pub const SANDBOX_NS_DIR: &str = "/run/kata-containers/sandbox/ns";

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

/// The program name of an exec that is a port-forward relay (CRI PortForward): the agent's exec
/// helper, instead of running a program of the container, connects to 127.0.0.1:<args[1]> in
/// the VM's network namespace (the pod's) and copies the exec's stdin to it and its answers to
/// the exec's stdout.
pub const PORT_FORWARD_PROGRAM: &str = "kata-agent-port-forward";

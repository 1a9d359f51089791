//! The sandbox log. Every host component of a sandbox (runtime, proxy, shims) writes logfmt
//! lines into files of the sandbox's VM folder:
//!
//! `time=2026-11-26T21:20:12.123456789Z level=info source=shim sandbox=S container=C msg="..."`
//!
//! The proxy also records the guest console (kernel and kata-agent lines, `source=agent`) and
//! QEMU writes timestamped messages and trace lines into its `-D` log. [`merge`] reads all of
//! them back into one time-ordered view (`kata-runtime logs SANDBOX`).

pub mod context;
mod line;
pub mod merge;
mod time;

pub use line::{parse, quote_into, Line};
pub use time::{now, parse_rfc3339, rfc3339, timestamp};

/// The file names in a sandbox's VM folder, by writer.
pub mod files {
    /// Lines of every `kata-runtime` call about the sandbox.
    pub const RUNTIME: &str = "runtime.log";
    /// kata-proxy's lines and the guest console's (agent and kernel).
    pub const PROXY: &str = "proxy.log";
    /// QEMU's `-D` log: its messages and trace lines.
    pub const QEMU: &str = "qemu.log";
    /// What QEMU printed on stderr before daemonizing.
    pub const QEMU_STDERR: &str = "qemu-stderr.log";
    /// Shims: `shim-<container or exec>.log`.
    pub const SHIM_PREFIX: &str = "shim-";
}

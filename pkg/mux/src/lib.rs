//! yamux multiplexing of the agent channel: guest-side server and host-side client.
//!
//! The VM has exactly one byte pipe to the host for agent traffic (a virtio-serial port,
//! `agent.channel.0`), but the host has many independent RPC clients (runtime verbs, one shim
//! per process). As in Kata 1.x, one yamux session runs over that pipe:
//!
//! * the guest ([`serve_guest`]) is the yamux *server*: every inbound stream is spliced onto a
//!   fresh connection to the agent's local ttrpc socket, so the RPC server never sees yamux;
//! * the host ([`run_host`], used by kata-proxy) is the yamux *client*: every connection accepted
//!   on the proxy's listen socket gets its own outbound stream.
//!
//! Both ends use [`session_config`], which pins each stream's receive window at yamux's 256 KiB
//! default so a single busy stream can never make the other side buffer more than that.

mod error;
mod guest;
mod host;
mod port;
mod splice;

pub use error::Error;
pub use guest::serve_guest;
pub use host::{run_host, run_host_until, MAX_HOST_STREAMS};
pub use port::{find_port_by_name, find_port_in, open_port, PortError, PortIo};

/// Most streams one session carries at a time. yamux tears the *whole session* down when
/// this is exceeded (on either side), so the host stays well below it ([`MAX_HOST_STREAMS`]).
pub const MAX_STREAMS: usize = 512;

/// yamux's per-stream receive window (the protocol default, 256 KiB).
pub const STREAM_WINDOW: usize = yamux::DEFAULT_CREDIT as usize;

/// The yamux configuration both ends must use.
///
/// yamux 0.13 auto-tunes a stream's receive window upwards (doubling it whenever the sender
/// used half of it within two round trips), bounded only by a per-connection budget. Setting
/// that budget to exactly `MAX_STREAMS × 256 KiB` leaves no headroom above the guaranteed
/// per-stream minimum, so no window ever grows: memory per stream stays bounded at 256 KiB and
/// a bulk transfer on one stream cannot delay RPCs on the others by more than that.
pub fn session_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // Order matters: both setters assert budget >= streams × 256 KiB, and the default budget
    // (1 GiB) already satisfies that for MAX_STREAMS, so shrink the budget last.
    cfg.set_max_num_streams(MAX_STREAMS);
    cfg.set_max_connection_receive_window(Some(MAX_STREAMS * STREAM_WINDOW));
    cfg
}

//! Errors of a multiplexed session (guest or host end).

/// Why a yamux session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The session failed: I/O error on the channel, a protocol violation by the peer, ...
    #[error("yamux session failed")]
    Session(#[source] yamux::ConnectionError),
    /// The host's listen socket stopped accepting connections for good.
    #[error("accepting client connections failed")]
    Accept(#[source] std::io::Error),
}

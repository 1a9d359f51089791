//! OCI inputs, checked before anything is created: container ids (before any path is built from
//! them), bundles (config.json + rootfs) and the annotations that say which sandbox a container
//! belongs to.

mod annotations;
mod bundle;
mod caps;
mod hook;
mod id;
pub mod mount_attrs;
mod privileged;

pub use annotations::{container_type, is_pod_sandbox, ContainerType};
pub use bundle::Bundle;
pub use caps::CAPABILITY_NAMES;
pub use hook::{run_hook, HookError};
pub use id::validate_id;
pub use privileged::is_privileged;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("bundle {path}: malformed config.json: {reason}")]
    Config { path: String, reason: String },
    #[error("annotation {key}={value:?}: {reason}")]
    Annotation {
        key: String,
        value: String,
        reason: &'static str,
    },
}

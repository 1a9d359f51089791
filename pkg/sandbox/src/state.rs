//! What a container's record says to callers: the OCI state document, and the status corrected
//! by reality (a container whose stand-in is gone has stopped).

use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use store::{ContainerRecord, Status};

/// The OCI state document, as `runc state` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// A record's status corrected by reality: a container whose shim is gone has stopped.
pub fn effective_status(rec: &ContainerRecord) -> Status {
    match rec.status {
        Status::Stopped => Status::Stopped,
        s if rec.shim.is_some_and(|p| p.alive()) => s,
        _ => Status::Stopped,
    }
}

pub fn to_state(rec: ContainerRecord) -> OciState {
    let status = effective_status(&rec);
    OciState {
        oci_version: "1.0.2".into(),
        id: rec.id.clone(),
        status: status.to_string(),
        pid: match status {
            Status::Stopped => 0,
            _ => rec.shim.map(|p| p.pid).unwrap_or(0),
        },
        rootfs: rec.bundle.join("rootfs"),
        bundle: rec.bundle,
        created: rec.created,
        owner: String::new(),
        annotations: rec.annotations,
    }
}

/// The hooks of the container's bundle, if the bundle is still there to say.
pub(crate) fn bundle_hooks(rec: &ContainerRecord) -> Option<oci_spec::runtime::Hooks> {
    oci::Bundle::load(&rec.bundle).ok()?.spec.hooks().clone()
}

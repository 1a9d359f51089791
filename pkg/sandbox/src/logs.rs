//! `kata-runtime logs`: one sandbox's log files merged into one time-ordered view.

use crate::{Result, Runtime};
use sandbox_log::merge::Entry;

/// The merged log of the sandbox `id` names (the sandbox's own id, or any member's).
pub fn logs(rt: &Runtime, id: &str) -> Result<Vec<Entry>> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    sandbox_log::merge::collect(&sb.vm_dir, &sb.id)
        .map_err(crate::io_err("reading the logs in", sb.vm_dir.as_path()))
}

//! Which sandbox and container the running `kata-runtime` call is about. The call learns it
//! part-way (after parsing the bundle or loading the record), long after its logger is
//! installed; the orchestration code records it here and the logger reads it for every line.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub sandbox: String,
    pub container: String,
    /// The sandbox's runtime log file (in its VM folder).
    pub file: PathBuf,
}

static CONTEXT: Mutex<Option<Context>> = Mutex::new(None);

/// Records the sandbox and container of this call; later lines go to the sandbox's log.
pub fn set(sandbox: &str, container: &str, vm_dir: &Path) {
    if let Ok(mut c) = CONTEXT.lock() {
        *c = Some(Context {
            sandbox: sandbox.to_string(),
            container: container.to_string(),
            file: vm_dir.join(crate::files::RUNTIME),
        });
    }
}

pub fn get() -> Option<Context> {
    CONTEXT.lock().ok().and_then(|c| c.clone())
}

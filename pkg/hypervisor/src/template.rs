//! VM templating (Kata 1.x's template factory): one VM boots with its RAM in a file mapped
//! shared, is paused, and its device state is saved with the RAM left out (QEMU's
//! `x-ignore-shared`). Each clone maps the same file private (copy-on-write) and loads the
//! device state with `-incoming`: it resumes where the template stopped, without booting, and
//! shares every page it does not write with the template file and the other clones.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::qmp::{QmpClient, QmpError};

/// The template's RAM, in its folder.
pub const MEMORY_FILE: &str = "memory";
/// The template's device state (a migration stream without RAM), in its folder.
pub const STATE_FILE: &str = "state";

/// The part a VM plays in templating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Boots normally with its RAM in the template folder's memory file, shared; then saved.
    Template,
    /// Starts from the saved template (private mapping of its memory, state loaded).
    Clone,
}

/// A VM's templating: its role and the template folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Templating {
    pub role: Role,
    pub dir: PathBuf,
}

impl Templating {
    pub fn memory_file(&self) -> PathBuf {
        self.dir.join(MEMORY_FILE)
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Whether a saved template is there to clone.
    pub fn is_saved(dir: &Path) -> bool {
        dir.join(MEMORY_FILE).is_file() && dir.join(STATE_FILE).is_file()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("template {}: {doing}: {source}", .path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {}: migration {status}{}", .dir.display(), .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Migration {
        dir: PathBuf,
        status: String,
        detail: Option<String>,
    },
    #[error("this VM was not started as a template")]
    NotATemplate,
    #[error("template {}: {what} did not finish within {timeout:?}", .dir.display())]
    Timeout {
        dir: PathBuf,
        what: &'static str,
        timeout: Duration,
    },
}

const STATE_FD_NAME: &str = "template-state";
const POLL: Duration = Duration::from_millis(10);

/// Both ends must agree: RAM in a named shared file is not part of the stream.
fn ignore_shared(qmp: &mut QmpClient) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        Some(json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })),
    )
    .map(|_| ())
}

/// Pauses the template VM and writes its device state to the template folder. The VM stays
/// paused; the caller stops it (its RAM stays in the memory file).
pub fn save(qmp: &mut QmpClient, t: &Templating, timeout: Duration) -> Result<(), TemplateError> {
    let path = t.state_file();
    let file = std::fs::File::create(&path).map_err(|source| TemplateError::Io {
        doing: "creating the state file",
        path: path.clone(),
        source,
    })?;
    qmp.execute("stop", None)?;
    ignore_shared(qmp)?;
    qmp.pass_fd(STATE_FD_NAME, file.as_fd())?;
    qmp.execute(
        "migrate",
        Some(json!({ "uri": format!("fd:{STATE_FD_NAME}") })),
    )?;
    wait_migration(qmp, t, timeout, "saving the device state")?;
    // The file must be complete on disk before a clone reads it.
    file.sync_all().map_err(|source| TemplateError::Io {
        doing: "syncing the state file",
        path,
        source,
    })
}

/// Loads the template's device state into a clone started with `-incoming defer`; returns
/// once the clone runs.
pub fn load(qmp: &mut QmpClient, t: &Templating, timeout: Duration) -> Result<(), TemplateError> {
    let path = t.state_file();
    let file = std::fs::File::open(&path).map_err(|source| TemplateError::Io {
        doing: "opening the state file",
        path: path.clone(),
        source,
    })?;
    ignore_shared(qmp)?;
    qmp.pass_fd(STATE_FD_NAME, file.as_fd())?;
    qmp.execute(
        "migrate-incoming",
        Some(json!({ "uri": format!("fd:{STATE_FD_NAME}") })),
    )?;
    let t0 = Instant::now();
    loop {
        let status = qmp.execute("query-status", None)?;
        if status["status"] == "running" {
            return Ok(());
        }
        let migrate = qmp.execute("query-migrate", None)?;
        // The template was paused when saved, so the clone stays paused after the load.
        if migrate["status"] == "completed" {
            qmp.execute("cont", None)?;
            continue;
        }
        if migrate["status"] == "failed" {
            return Err(TemplateError::Migration {
                dir: t.dir.clone(),
                status: "failed".into(),
                detail: migrate["error-desc"].as_str().map(String::from),
            });
        }
        if t0.elapsed() >= timeout {
            return Err(TemplateError::Timeout {
                dir: t.dir.clone(),
                what: "loading the device state",
                timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

fn wait_migration(
    qmp: &mut QmpClient,
    t: &Templating,
    timeout: Duration,
    what: &'static str,
) -> Result<(), TemplateError> {
    let t0 = Instant::now();
    loop {
        let m = qmp.execute("query-migrate", None)?;
        match m["status"].as_str().unwrap_or_default() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(TemplateError::Migration {
                    dir: t.dir.clone(),
                    status: m["status"].as_str().unwrap_or_default().to_string(),
                    detail: m["error-desc"].as_str().map(String::from),
                })
            }
            _ => {}
        }
        if t0.elapsed() >= timeout {
            return Err(TemplateError::Timeout {
                dir: t.dir.clone(),
                what,
                timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

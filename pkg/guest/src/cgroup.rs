//! One cgroup (v2) per container in the guest, under `/sys/fs/cgroup/kata/<id>`: the freezer
//! for pause/resume, and the place resource limits and stats will come from.

use std::path::PathBuf;
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup/kata";

#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct Error {
    path: PathBuf,
    source: std::io::Error,
}

fn err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_path_buf(),
        source,
    }
}

pub fn path(id: &str) -> PathBuf {
    PathBuf::from(ROOT).join(id)
}

/// Creates the container's cgroup and moves `pid` into it.
pub fn create_with(id: &str, pid: i32) -> Result<(), Error> {
    let dir = path(id);
    std::fs::create_dir_all(&dir).map_err(err(&dir))?;
    add(id, pid)
}

pub fn add(id: &str, pid: i32) -> Result<(), Error> {
    let procs = path(id).join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(err(&procs))
}

/// Freezes or thaws every process of the container and waits until the kernel says it is done.
pub fn freeze(id: &str, frozen: bool) -> Result<(), Error> {
    let file = path(id).join("cgroup.freeze");
    std::fs::write(&file, if frozen { "1" } else { "0" }).map_err(err(&file))?;
    let events = path(id).join("cgroup.events");
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&events).map_err(err(&events))?;
        if text.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(Error {
                path: events,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not {want} after 5 s"),
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn remove(id: &str) {
    let dir = path(id);
    if let Err(e) = std::fs::remove_dir(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing cgroup {}: {e}", dir.display());
        }
    }
}

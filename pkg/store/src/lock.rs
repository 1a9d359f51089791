use crate::Error;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held flock on a sandbox's lock file; released on drop, and by the kernel if the process
/// dies, so a crashed runtime call never leaves a sandbox locked.
pub struct SandboxLock {
    _lock: Flock<File>,
}

impl SandboxLock {
    pub fn acquire(path: &Path, mode: LockMode) -> Result<SandboxLock, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(crate::io_err("opening", path))?;
        let arg = match mode {
            LockMode::Shared => FlockArg::LockShared,
            LockMode::Exclusive => FlockArg::LockExclusive,
        };
        let lock = Flock::lock(file, arg).map_err(|(_, errno)| Error::Lock {
            path: path.to_path_buf(),
            errno,
        })?;
        Ok(SandboxLock { _lock: lock })
    }
}

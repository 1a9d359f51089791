//! State on disk. Every runtime verb is a short process, so everything it must remember lives
//! here, under the `--root` folder:
//!
//! ```text
//! <root>/<container id>/container.json   ContainerRecord (every container)
//! <root>/<sandbox id>/sandbox.json       SandboxRecord (the sandbox's own container folder)
//! <root>/<sandbox id>/lock               flock: exclusive to change, shared to read
//! ```
//! Records are written atomically (temp file, fsync, rename), so a crash leaves either the old
//! or the new record, never half of one.

mod atomic;
mod lock;
mod process;

pub use atomic::write_atomic;
pub use lock::{LockMode, SandboxLock};
pub use process::{process_alive, process_start_time, ProcessRef};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {reason} (delete --force removes what it can)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("locking {path}: {errno}")]
    Lock { path: PathBuf, errno: nix::Error },
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub bundle: PathBuf,
    pub status: Status,
    /// The kata-shim standing in for the container's init process.
    pub shim: Option<ProcessRef>,
    /// Host path of the rootfs bind mount inside the sandbox's shared folder.
    pub rootfs_mount: PathBuf,
    /// RFC 3339.
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The block device hot-plugged into the VM as this container's rootfs, if any.
    #[serde(default)]
    pub block_rootfs: Option<BlockDevice>,
    /// Block devices hot-plugged for its volumes (mounts whose source is a block device) and
    /// for the block devices of its `linux.devices`.
    #[serde(default)]
    pub block_volumes: Vec<BlockDevice>,
}

/// A host block device given to a VM as a virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// QEMU's disk id (`drive-<id>`, `blk-<id>`).
    pub id: String,
    /// The host device (`/dev/loop3`, `/dev/dm-1`).
    pub path: PathBuf,
    /// What the guest finds it by (/sys/block/vdX/serial).
    pub serial: String,
    /// The PCIe root port it is on (None: the root bus).
    pub bus: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// Sockets, logs and pid files of the VM and proxy.
    pub vm_dir: PathBuf,
    /// Host folder shared into the guest.
    pub shared_dir: PathBuf,
    /// The hypervisor driver's own state (opaque here).
    pub hypervisor: serde_json::Value,
    pub proxy: Option<ProcessRef>,
    pub proxy_socket: PathBuf,
    pub containers: Vec<String>,
    /// The sandbox's network (namespace, interfaces and what connecting them changed), as the
    /// sandbox layer records it (opaque here); null when the sandbox has none.
    #[serde(default)]
    pub network: serde_json::Value,
    /// The CRI port-forward helper in the pod's network namespace (sandbox layer's
    /// portforward.rs), when one runs.
    #[serde(default)]
    pub port_forwarder: Option<ProcessRef>,
}

/// The state folder given by `--root`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

const CONTAINER_FILE: &str = "container.json";
const SANDBOX_FILE: &str = "sandbox.json";

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims the id: creates its folder, failing if it exists. The caller removes it on error.
    pub fn claim(&self, id: &str) -> Result<PathBuf, Error> {
        use std::os::unix::fs::DirBuilderExt;
        // Owner-only folders (root's): the state and the sockets beside it are the runtime's.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_err("creating", &self.root))?;
        let dir = self.container_dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Exists(id.into()))
            }
            Err(e) => Err(io_err("creating", &dir)(e)),
        }
    }

    pub fn exists(&self, id: &str) -> bool {
        self.container_dir(id).is_dir()
    }

    pub fn lock(&self, sandbox_id: &str, mode: LockMode) -> Result<SandboxLock, Error> {
        let dir = self.container_dir(sandbox_id);
        if !dir.is_dir() {
            return Err(Error::NotFound(sandbox_id.into()));
        }
        SandboxLock::acquire(&dir.join("lock"), mode)
    }

    pub fn load_container(&self, id: &str) -> Result<ContainerRecord, Error> {
        self.load(id, CONTAINER_FILE)
    }

    pub fn save_container(&self, rec: &ContainerRecord) -> Result<(), Error> {
        self.save(&rec.id, CONTAINER_FILE, rec)
    }

    pub fn load_sandbox(&self, id: &str) -> Result<SandboxRecord, Error> {
        self.load(id, SANDBOX_FILE)
    }

    pub fn save_sandbox(&self, rec: &SandboxRecord) -> Result<(), Error> {
        self.save(&rec.id, SANDBOX_FILE, rec)
    }

    /// Removes everything the store holds for a container id.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let dir = self.container_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &dir)(e)),
        }
    }

    /// Ids of every container folder under the root.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join(CONTAINER_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }

    fn load<T: DeserializeOwned>(&self, id: &str, file: &str) -> Result<T, Error> {
        let path = self.container_dir(id).join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    fn save<T: Serialize>(&self, id: &str, file: &str, value: &T) -> Result<(), Error> {
        let path = self.container_dir(id).join(file);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: id.into(),
            bundle: "/b".into(),
            status: Status::Created,
            shim: None,
            rootfs_mount: "/r".into(),
            created: "2026-01-01T00:00:00Z".into(),
            annotations: HashMap::new(),
            block_rootfs: None,
            block_volumes: Vec::new(),
        }
    }

    #[test]
    fn claim_save_load_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("root"));
        store.claim("c1").unwrap();
        assert!(matches!(store.claim("c1"), Err(Error::Exists(_))));
        store.save_container(&record("c1")).unwrap();
        assert_eq!(store.load_container("c1").unwrap().status, Status::Created);
        assert_eq!(store.list(), vec!["c1".to_string()]);
        store.remove("c1").unwrap();
        assert!(matches!(
            store.load_container("c1"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn corrupt_record_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        store.claim("c2").unwrap();
        std::fs::write(tmp.path().join("c2/container.json"), b"{\"id\":").unwrap();
        let e = store.load_container("c2").unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}

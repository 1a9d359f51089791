//! Translation of OCI/fstab-style mount options into mount(2) flags plus filesystem data, and
//! the mount helpers shared by the container setup and the storage handlers.

use nix::mount::{mount, MsFlags};
use oci::mount_attrs::RecursiveAttrs;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mount of {source_desc} on {target}: {errno}")]
    Mount {
        source_desc: String,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("cannot create mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount destination {0} leaves the container's root")]
    Escape(PathBuf),
}

/// Parsed options: flags for the mount call, propagation flags for a separate call (mount(2)
/// refuses to combine them), and the rest as comma-separated filesystem data.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: String,
    /// runc's recursive options (`rro`, `rnosuid`...): mount_setattr(2) attributes set and
    /// cleared on the whole tree with AT_RECURSIVE after the mount.
    pub recursive: RecursiveAttrs,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: String::new(),
            recursive: RecursiveAttrs::default(),
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn is_readonly(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }
}

pub fn parse_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut parsed = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let opt = opt.as_ref();
        if parsed.recursive.add(opt) {
            continue;
        }
        let (set, clear, prop) = match opt {
            "defaults" => (MsFlags::empty(), MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        parsed.flags.insert(set);
        parsed.flags.remove(clear);
        parsed.propagation.insert(prop);
    }
    parsed.data = data.join(",");
    parsed
}

/// Joins an absolute container path onto `root`, refusing `..` so a spec cannot name a
/// destination outside the container (symlinks inside the rootfs are resolved by the kernel
/// relative to the caller's root, which is why setup runs these mounts before pivot_root only
/// for paths it created itself or checked).
pub fn join_in_root(root: &Path, path: &Path) -> Result<PathBuf, Error> {
    let mut out = root.to_path_buf();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Error::Escape(path.into())),
        }
    }
    Ok(out)
}

pub fn do_mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
) -> Result<(), Error> {
    let data = (!data.is_empty()).then_some(data);
    mount(source, target, fstype, flags, data).map_err(|errno| Error::Mount {
        source_desc: format!(
            "{} ({})",
            source.map(|p| p.display().to_string()).unwrap_or_default(),
            fstype.unwrap_or("bind")
        ),
        target: target.to_path_buf(),
        errno,
    })
}

/// Mounts `source` on `target` with OCI-style options (bind and read-only binds need a second
/// remount call; propagation another one).
pub fn mount_with_options(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    opts: &MountOptions,
) -> Result<(), Error> {
    let first_flags = if opts.is_bind() {
        opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
    } else {
        opts.flags
    };
    do_mount(source, target, fstype, first_flags, &opts.data)?;
    if opts.is_bind() && opts.flags != first_flags {
        // Bind mounts ignore every other flag until a remount.
        do_mount(
            None,
            target,
            None,
            opts.flags | MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
            "",
        )?;
    }
    if !opts.recursive.is_empty() {
        oci::mount_attrs::set_recursive(target, opts.recursive).map_err(|errno| Error::Mount {
            source_desc: "recursive mount attributes".into(),
            target: target.to_path_buf(),
            errno,
        })?;
    }
    if !opts.propagation.is_empty() {
        do_mount(None, target, None, opts.propagation, "")?;
    }
    Ok(())
}

pub fn ensure_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::MountPoint {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates an empty file to bind-mount a file onto (bind targets must match the source's type).
pub fn ensure_file(path: &Path) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(|_| ())
        .map_err(|source| Error::MountPoint {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let o = parse_options(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn bind_readonly_and_propagation() {
        let o = parse_options(&["rbind", "ro", "rprivate"]);
        assert!(o.is_bind() && o.is_readonly());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let rw = parse_options(&["ro", "rw"]);
        assert!(!rw.is_readonly());
    }

    #[test]
    fn recursive_options_are_attributes_not_data() {
        let o = parse_options(&["rbind", "rro", "rnosuid"]);
        assert_eq!(o.data, "");
        assert!(o.is_bind());
        assert_eq!(
            o.recursive.set,
            oci::mount_attrs::MOUNT_ATTR_RDONLY | oci::mount_attrs::MOUNT_ATTR_NOSUID
        );
    }

    #[test]
    fn join_refuses_parent_components() {
        let root = Path::new("/r");
        assert_eq!(
            join_in_root(root, Path::new("/proc")).unwrap(),
            Path::new("/r/proc")
        );
        assert_eq!(
            join_in_root(root, Path::new("dev/pts")).unwrap(),
            Path::new("/r/dev/pts")
        );
        assert!(join_in_root(root, Path::new("/../etc")).is_err());
    }
}

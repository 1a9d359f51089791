//! The sandbox's shared folder: the host side of what the guest mounts at
//! `/run/kata-containers/shared/containers`. Each container's rootfs and bind-mount sources are
//! bind-mounted into it under the container's id, and the spec handed to the agent names the
//! guest paths instead of the host's.

use crate::{Error, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// The guest mount point of the shared folder (must match the agent's `SHARED_MOUNT`).
pub const GUEST_SHARED: &str = "/run/kata-containers/shared/containers";

/// Where the guest keeps a pod's ephemeral volumes (Kubernetes emptyDir): one tmpfs per
/// volume name, shared by the pod's containers, gone with the VM.
pub const GUEST_EPHEMERAL: &str = "/run/kata-containers/sandbox/ephemeral";

/// The pod's /dev/shm in the guest: CRI bind-mounts the sandbox's host shm folder into every
/// container; across a VM boundary that would be a shared file tree, not shared memory, so
/// the guest gets one tmpfs per sandbox instead (as Kata 1.x did).
pub const GUEST_SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";
/// Its size when the spec does not say (Docker's and CRI's default).
const SHM_SIZE: &str = "size=65536k";

/// The path element kubelet puts in an emptyDir volume's host path.
const EMPTY_DIR_MARK: &str = "kubernetes.io~empty-dir";

/// The emptyDir volume name of a bind-mount source, if it is one
/// (`.../volumes/kubernetes.io~empty-dir/<name>`).
fn empty_dir_name(source: &Path) -> Option<String> {
    let mut parts = source.components().rev();
    let name = parts.next()?.as_os_str().to_str()?.to_string();
    let mark = parts.next()?.as_os_str();
    (mark == EMPTY_DIR_MARK && oci::validate_id(&name).is_ok()).then_some(name)
}

/// The storage that makes the agent mount an emptyDir's tmpfs (once per pod).
fn ephemeral_storage(guest_path: &Path, options: &[&str]) -> protocols::agent::Storage {
    let mut s = protocols::agent::Storage::new();
    s.driver = "ephemeral".into();
    s.source = "tmpfs".into();
    s.fstype = "tmpfs".into();
    s.options = options.iter().map(|o| o.to_string()).collect();
    s.mount_point = guest_path.display().to_string();
    s
}

fn bind(source: &Path, target: &Path, readonly: bool) -> Result<()> {
    let err = |errno| Error::Mount {
        what: "bind-mounting into the shared folder",
        path: target.to_path_buf(),
        errno,
    };
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err)?;
    // Keep host mount events from propagating in (and ours out).
    let _ = mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    );
    if readonly {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(err)?;
    }
    Ok(())
}

/// The mounts strictly below `dir` on the host (paths relative to it, whether read-only),
/// outermost first.
fn submounts_below(dir: &Path) -> Vec<(PathBuf, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<(PathBuf, bool)> = info
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let point = unescape_mountinfo(fields.get(4)?);
            let ro = fields.get(5)?.split(',').any(|o| o == "ro");
            let rel = point.strip_prefix(dir).ok()?.to_path_buf();
            (!rel.as_os_str().is_empty()).then_some((rel, ro))
        })
        .collect();
    found.sort_by_key(|(rel, _)| rel.components().count());
    found.dedup_by(|a, b| a.0 == b.0);
    found
}

/// `target` and every mount below it read-only (`rro`).
fn set_recursive_readonly(target: &Path) -> Result<()> {
    let attrs = oci::mount_attrs::RecursiveAttrs {
        set: oci::mount_attrs::MOUNT_ATTR_RDONLY,
        clear: 0,
    };
    oci::mount_attrs::set_recursive(target, attrs).map_err(|errno| Error::Mount {
        what: "making a volume recursively read-only",
        path: target.to_path_buf(),
        errno,
    })
}

/// Makes the sandbox's shared folder a mount point of its own with shared propagation, before
/// the VM starts: virtiofsd serves it from a mount namespace of its own, taken when it starts,
/// so the rootfs and volume binds made later only reach it by propagation.
pub fn prepare_shared_dir(dir: &Path) -> Result<()> {
    let err = |errno| Error::Mount {
        what: "making the shared folder a shared mount",
        path: dir.to_path_buf(),
        errno,
    };
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(err)
}

/// Makes `dir` anew, empty, with exactly `mode` (whatever an earlier owner left there is
/// unmounted and removed); `undo` removes it again.
pub(crate) fn fresh_dir(dir: &Path, mode: u32, undo: &mut crate::rollback::Rollback) -> Result<()> {
    if dir.exists() {
        unmount_tree(dir);
        let _ = std::fs::remove_dir_all(dir);
    }
    crate::make_dir(dir, mode)?;
    let d = dir.to_path_buf();
    undo.push("remove sandbox folder", move || {
        unmount_tree(&d);
        let _ = std::fs::remove_dir_all(&d);
    });
    Ok(())
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_tree(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    targets.dedup();
    for t in targets {
        if let Err(e) = umount2(&t, MntFlags::MNT_DETACH) {
            log::warn!("unmounting {}: {e}", t.display());
        }
    }
}

fn unescape_mountinfo(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// Shares a container's rootfs and bind-mount sources; returns the spec for the guest and the
/// host folder holding the container's share (`<shared>/<cid>`).
/// Returns the guest spec, the container's folder in the share, and the storages the agent
/// must mount for it (emptyDir volumes).
/// `rootfs` None: the rootfs reaches the guest another way (a hot-plugged block device) and
/// the spec's root is left for the caller to set.
pub fn share_container(
    shared_dir: &Path,
    container_id: &str,
    rootfs: Option<&Path>,
    spec: &Spec,
) -> Result<(Spec, PathBuf, Vec<protocols::agent::Storage>)> {
    let base = shared_dir.join(container_id);
    std::fs::create_dir_all(&base).map_err(crate::io_err("creating", &base))?;
    let guest_base = Path::new(GUEST_SHARED).join(container_id);
    let mut guest_spec = spec.clone();
    if let Some(rootfs) = rootfs {
        let host_rootfs = base.join("rootfs");
        std::fs::create_dir_all(&host_rootfs).map_err(crate::io_err("creating", &host_rootfs))?;
        bind(rootfs, &host_rootfs, false)?;
        if let Some(root) = guest_spec.root().clone() {
            let mut root = root;
            root.set_path(guest_base.join("rootfs"));
            guest_spec.set_root(Some(root));
        }
    }
    let mut mounts = guest_spec.mounts().clone().unwrap_or_default();
    let mut storages = Vec::new();
    // (index of the mount, bind of one of its host submounts), for non-recursive `ro`.
    let mut below: Vec<(usize, oci_spec::runtime::Mount)> = Vec::new();
    for (i, m) in mounts.iter_mut().enumerate() {
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        let Some(source) = m.source().clone() else {
            continue;
        };
        if !is_bind {
            continue;
        }
        // An emptyDir lives in the guest, not in the host folder kubelet made for it.
        if let Some(name) = empty_dir_name(&source) {
            let guest = Path::new(GUEST_EPHEMERAL).join(name);
            storages.push(ephemeral_storage(&guest, &["nodev"]));
            m.set_source(Some(guest));
            continue;
        }
        if m.destination() == Path::new("/dev/shm") {
            let guest = Path::new(GUEST_SANDBOX_SHM);
            storages.push(ephemeral_storage(
                guest,
                &["nodev", "nosuid", "noexec", SHM_SIZE],
            ));
            m.set_source(Some(guest.to_path_buf()));
            continue;
        }
        let source = match source.canonicalize() {
            Ok(s) => s,
            Err(e) => {
                return Err(Error::Io {
                    what: "bind mount source",
                    path: source,
                    source: e,
                })
            }
        };
        let name = format!(
            "{i}-{}",
            source
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("root")
        );
        let host = base.join("mounts").join(&name);
        if source.is_dir() {
            std::fs::create_dir_all(&host).map_err(crate::io_err("creating", &host))?;
        } else {
            if let Some(p) = host.parent() {
                std::fs::create_dir_all(p).map_err(crate::io_err("creating", p))?;
            }
            std::fs::write(&host, b"").map_err(crate::io_err("creating", &host))?;
        }
        let options = m.options().clone().unwrap_or_default();
        let recursive_ro = options.iter().any(|o| o == "rro");
        let readonly = recursive_ro || options.iter().any(|o| o == "ro");
        bind(&source, &host, readonly)?;
        let guest_source = guest_base.join("mounts").join(&name);
        if recursive_ro {
            // Enforced on the host too: the guest sees the host's submounts as one tree.
            set_recursive_readonly(&host)?;
        } else if readonly && source.is_dir() {
            // runc's `ro` is not recursive: a mount below the source keeps its own mode. In
            // the guest the share is one filesystem, so each such mount becomes a bind of its
            // own, over the read-only one.
            for (rel, sub_ro) in submounts_below(&source) {
                let mut sub = m.clone();
                sub.set_destination(m.destination().join(&rel));
                sub.set_source(Some(guest_source.join(&rel)));
                sub.set_typ(Some("bind".into()));
                sub.set_options(Some(vec![
                    "rbind".into(),
                    if sub_ro { "ro" } else { "rw" }.into(),
                ]));
                below.push((i, sub));
            }
        }
        m.set_source(Some(guest_source));
    }
    // Each submount's bind right after the mount it is below (the guest mounts in order).
    for (offset, (i, sub)) in below.into_iter().enumerate() {
        let at = (i + 1 + offset).min(mounts.len());
        mounts.insert(at, sub);
    }
    if !mounts.is_empty() {
        guest_spec.set_mounts(Some(mounts));
    }
    Ok((guest_spec, base, storages))
}

/// Undoes `share_container`.
pub fn unshare_container(base: &Path) {
    unmount_tree(base);
    if let Err(e) = std::fs::remove_dir_all(base) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing {}: {e}", base.display());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn empty_dir_volumes_are_recognised() {
        use std::path::Path;
        let p = Path::new("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache");
        assert_eq!(super::empty_dir_name(p).as_deref(), Some("cache"));
        let p = Path::new("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/token");
        assert_eq!(super::empty_dir_name(p), None);
        let p = Path::new("/x/kubernetes.io~empty-dir/..");
        assert_eq!(super::empty_dir_name(p), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            super::unescape_mountinfo("/a\\040b"),
            std::path::PathBuf::from("/a b")
        );
        assert_eq!(
            super::unescape_mountinfo("/plain"),
            std::path::PathBuf::from("/plain")
        );
    }
}

//! runc's recursive mount options (`rro`, `rnosuid`, `rnoatime`...) as mount_setattr(2)
//! attributes, applied with AT_RECURSIVE to a mount and every mount below it. Used by the
//! agent for a container's mounts and by the runtime for the host's side of a shared volume.

use std::path::Path;

/// mount_setattr(2) attributes to set and to clear.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clear: u64,
}

// linux/mount.h
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

impl RecursiveAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }

    /// Adds option `opt` if it is one of runc's recursive options; false otherwise. The later
    /// option wins; set and cleared bits never overlap (outside the atime field, which must be
    /// cleared whole to be set).
    pub fn add(&mut self, opt: &str) -> bool {
        let Some((clear, set)) = recursive_option(opt) else {
            return false;
        };
        self.set &= !clear;
        self.set |= set;
        if clear == 0 {
            self.clear &= !set;
        } else {
            self.clear |= clear;
        }
        true
    }
}

/// (clear, set) of a recursive option, as runc 1.1 defines them.
fn recursive_option(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (0, MOUNT_ATTR_RDONLY),
        "rrw" => (MOUNT_ATTR_RDONLY, 0),
        "rnosuid" => (0, MOUNT_ATTR_NOSUID),
        "rsuid" => (MOUNT_ATTR_NOSUID, 0),
        "rnodev" => (0, MOUNT_ATTR_NODEV),
        "rdev" => (MOUNT_ATTR_NODEV, 0),
        "rnoexec" => (0, MOUNT_ATTR_NOEXEC),
        "rexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rnodiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rrelatime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_RELATIME),
        "rnorelatime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_NOATIME),
        "rnoatime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_NOATIME),
        "ratime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_RELATIME),
        "rstrictatime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (MOUNT_ATTR_ATIME, MOUNT_ATTR_RELATIME),
        "rnosymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        _ => return None,
    })
}

/// mount_setattr(2) on `target` and every mount below it.
pub fn set_recursive(target: &Path, attrs: RecursiveAttrs) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: 0,
        userns_fd: 0,
    };
    let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: mount_setattr with a valid C path and a mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_options_win_and_bits_never_overlap() {
        let mut a = RecursiveAttrs::default();
        for o in ["rro", "rnosuid", "rnoatime"] {
            assert!(a.add(o));
        }
        assert!(!a.add("ro"));
        assert_eq!(
            a.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(a.clear, MOUNT_ATTR_ATIME);
        let mut b = RecursiveAttrs::default();
        b.add("rro");
        b.add("rrw");
        assert_eq!((b.set, b.clear), (0, MOUNT_ATTR_RDONLY));
    }
}

//! What the agent does as PID 1 before it serves anything: leave the initramfs for a tmpfs root
//! (pivot_root, which every container uses, refuses to run when the current root is the initial
//! rootfs), mount the kernel filesystems and load the modules listed by the image builder.

use crate::mounts::{do_mount, ensure_dir};
use nix::mount::MsFlags;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mount(#[from] crate::mounts::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        errno: nix::Error,
    },
}

/// The image builder writes the module file names here, in load order.
pub const MODULE_LIST: &str = "/etc/kata-modules";
pub const MODULE_DIR: &str = "/lib/modules";
const NEW_ROOT: &str = "/newroot";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.display().to_string();
    move |source| Error::Io { what, path, source }
}

/// Copies the initramfs into a tmpfs and makes that tmpfs the root (what switch_root does),
/// freeing the initramfs files. Must run first, before anything else is mounted.
pub fn leave_initramfs() -> Result<(), Error> {
    let new_root = Path::new(NEW_ROOT);
    ensure_dir(new_root)?;
    do_mount(
        Some(Path::new("tmpfs")),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        "mode=0755",
    )?;
    let entries = fs::read_dir("/").map_err(io("reading", Path::new("/")))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "newroot" {
            continue;
        }
        let from = Path::new("/").join(&name);
        copy_tree(&from, &new_root.join(&name))?;
        // The initramfs is RAM: what is not removed stays allocated forever.
        let _ = if from.is_dir() && !from.is_symlink() {
            fs::remove_dir_all(&from)
        } else {
            fs::remove_file(&from)
        };
    }
    nix::unistd::chdir(new_root).map_err(|errno| Error::Sys {
        what: "chdir /newroot",
        errno,
    })?;
    do_mount(
        Some(Path::new(".")),
        Path::new("/"),
        None,
        MsFlags::MS_MOVE,
        "",
    )?;
    nix::unistd::chroot(".").map_err(|errno| Error::Sys {
        what: "chroot",
        errno,
    })?;
    nix::unistd::chdir("/").map_err(|errno| Error::Sys {
        what: "chdir /",
        errno,
    })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(from).map_err(io("stat", from))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(from).map_err(io("readlink", from))?;
        std::os::unix::fs::symlink(target, to).map_err(io("symlink", to))?;
    } else if ft.is_dir() {
        fs::DirBuilder::new()
            .mode(meta.permissions().mode())
            .create(to)
            .map_err(io("mkdir", to))?;
        for entry in fs::read_dir(from).map_err(io("reading", from))?.flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if ft.is_file() {
        fs::copy(from, to).map_err(io("copying", from))?;
    }
    // Device nodes are not copied: devtmpfs provides them.
    Ok(())
}

/// proc, sys, dev, pts, shm, run, tmp, cgroup2.
/// Brings the VM's loopback interface up, as any init does: servers of the pod listening on
/// 127.0.0.1 (and the port-forward relay reaching them) need it.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain datagram socket, closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: an all-zero ifreq is valid; the name is set below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(sock) };
    result
}

pub fn mount_kernel_filesystems() -> Result<(), Error> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&str, &str, &str, MsFlags, &str); 8] = [
        ("proc", "/proc", "proc", nosuid_nodev_noexec, ""),
        ("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "gid=5,mode=620,ptmxmode=666",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid_nodev_noexec,
            "",
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        let target = Path::new(target);
        ensure_dir(target)?;
        if let Err(e) = do_mount(Some(Path::new(source)), target, Some(fstype), flags, data) {
            // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT).
            if !matches!(
                e,
                crate::mounts::Error::Mount {
                    errno: nix::Error::EBUSY,
                    ..
                }
            ) {
                return Err(e.into());
            }
        }
    }
    let _ = fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create("/run/kata-agent");
    Ok(())
}

/// Modules the agent needs before it can answer at all: the virtio transport, the agent's
/// serial port, entropy (yamux seeds its RNG at once) and the 9p share that CreateSandbox
/// mounts. Their dependencies are earlier in MODULE_LIST, which is in dependency order.
const EARLY_MODULES: [&str; 12] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_console",
    "virtio-rng",
    "virtio_rng",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
];
const EARLY_MODULES_9P: &str = "9p";

fn is_early(file_name: &str) -> bool {
    let name = file_name.trim_end_matches(".ko");
    name == EARLY_MODULES_9P || EARLY_MODULES.contains(&name)
}

/// The module files listed in MODULE_LIST, split into (early, late), each in list order.
pub fn module_plan() -> Result<(Vec<String>, Vec<String>), Error> {
    let list = match fs::read_to_string(MODULE_LIST) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(io("reading", Path::new(MODULE_LIST))(e)),
    };
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .partition(|m| is_early(m)))
}

/// Loads the given module files, in order. A module already loaded is fine.
pub fn load_modules(files: &[String]) -> Result<usize, Error> {
    let mut loaded = 0;
    for name in files {
        let path = Path::new(MODULE_DIR).join(name);
        let file = fs::File::open(&path).map_err(io("opening module", &path))?;
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(nix::Error::EEXIST) => {}
            Err(errno) => log::warn!("loading module {name}: {errno}"),
        }
    }
    Ok(loaded)
}

static LATE_MODULES: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Loads the late modules (block, net, virtio-fs, overlay...) on a thread of their own, so the
/// agent answers the host while they load; `wait_late_modules` is the barrier for their users.
pub fn load_late_modules_in_background(files: Vec<String>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("modules".into())
        .spawn(move || {
            let start = std::time::Instant::now();
            match load_modules(&files) {
                Ok(n) => log::info!("{n} late modules loaded in {:?}", start.elapsed()),
                Err(e) => log::warn!("late modules: {e}"),
            }
            mark_late_modules_done();
        })
        .map(|_| ())
}

pub fn mark_late_modules_done() {
    if let Ok(mut done) = LATE_MODULES.0.lock() {
        *done = true;
    }
    LATE_MODULES.1.notify_all();
}

/// Waits (at most `timeout`) until the late modules are loaded; false on timeout.
pub fn wait_late_modules(timeout: std::time::Duration) -> bool {
    let Ok(guard) = LATE_MODULES.0.lock() else {
        return false;
    };
    match LATE_MODULES
        .1
        .wait_timeout_while(guard, timeout, |done| !*done)
    {
        Ok((done, _)) => *done,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn early_set_is_what_the_agent_channel_and_9p_need() {
        for m in [
            "virtio_console.ko",
            "virtio-rng.ko",
            "9p.ko",
            "9pnet_virtio.ko",
            "virtio_pci.ko",
        ] {
            assert!(super::is_early(m), "{m}");
        }
        for m in [
            "virtio_blk.ko",
            "virtio_net.ko",
            "virtiofs.ko",
            "overlay.ko",
            "fuse.ko",
        ] {
            assert!(!super::is_early(m), "{m}");
        }
    }
}

//! Running code inside a network namespace named by a path.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling *thread* only, so every entry
//! happens on a dedicated, short-lived thread: the caller's thread never changes namespace, and
//! the entered thread simply ends (there is nothing to switch back). Sockets (netlink, the tun
//! file, the ethtool socket) opened on that thread belong to the entered namespace for their
//! whole life.

use std::fs::File;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {0} does not exist")]
    Missing(PathBuf),
    #[error("opening network namespace {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{0} is not a network namespace")]
    NotNetns(PathBuf),
    #[error("entering network namespace {path}: {errno}")]
    Enter { path: PathBuf, errno: nix::Error },
    #[error("starting the netlink runtime for {path}: {source}")]
    Runtime { path: PathBuf, source: io::Error },
    #[error("opening a netlink socket in {path}: {source}")]
    Netlink { path: PathBuf, source: io::Error },
    #[error("creating network namespace {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("removing network namespace {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// Opens `path` (a bind-mounted namespace such as `/var/run/netns/X`, or `/proc/<pid>/ns/net`).
fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NetnsError::Missing(path.to_path_buf()),
        _ => NetnsError::Open {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Runs `f` on a new thread that has entered the network namespace at `path`, and returns its
/// result. A panic in `f` is resumed on the caller's thread.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let file = open(path)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("netns".into())
            .spawn_scoped(scope, || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
                    // setns with an explicit type fails with EINVAL when the file is some
                    // other kind of namespace, or not a namespace at all.
                    nix::Error::EINVAL => NetnsError::NotNetns(path.to_path_buf()),
                    errno => NetnsError::Enter {
                        path: path.to_path_buf(),
                        errno,
                    },
                })?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Runtime {
                path: path.to_path_buf(),
                source,
            })?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs the future made by `f` inside the network namespace at `path`, on a current-thread
/// tokio runtime, with an rtnetlink handle whose socket lives in that namespace.
pub fn with_netlink<T, F, Fut>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    run_in(path, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|source| NetnsError::Runtime {
                path: path.to_path_buf(),
                source,
            })?;
        runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(|source| NetnsError::Netlink {
                    path: path.to_path_buf(),
                    source,
                })?;
            let driver = tokio::spawn(connection);
            let result = f(handle).await;
            driver.abort();
            Ok(result)
        })
    })?
}

/// Makes a new, empty network namespace and pins it at `path` (a bind mount of the namespace
/// onto an empty file, as `ip netns add` does), so it lives without any process in it.
pub fn create_persistent(path: &Path) -> Result<(), NetnsError> {
    let fail = |source: io::Error| NetnsError::Create {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(fail)?;
    let made = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("netns-new".into())
            .spawn_scoped(scope, || -> io::Result<()> {
                // Only this thread moves; it ends right after, nothing switches back.
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            })?;
        worker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(fail(e));
    }
    Ok(())
}

/// Undoes [`create_persistent`]: the namespace goes away with its last user.
pub fn remove_persistent(path: &Path) -> Result<(), NetnsError> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(errno) => {
            return Err(NetnsError::Remove {
                path: path.to_path_buf(),
                source: io::Error::from(errno),
            })
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NetnsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_namespace_lives_and_goes() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create_persistent(&path).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        let made = run_in(&path, || {
            std::fs::metadata("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), made.ino(), "a new namespace, not ours");
        assert!(create_persistent(&path).is_err(), "the file exists");
        remove_persistent(&path).unwrap();
        assert!(!path.exists());
        remove_persistent(&path).unwrap();
    }
}

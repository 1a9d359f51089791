//! The in-container setup helper: `kata-agent __container-init <spec.json>`, started by
//! `spawn` inside fresh mount/pid/ipc/uts namespaces (it is PID 1 of its pid namespace). Being a
//! separate, single-threaded process, it may freely mount, pivot_root and change credentials.
//!
//! File descriptors it is given: 0-2 the process's stdio, `STATUS_FD` a pipe to the agent,
//! `START_FD` a pipe from the agent. Protocol on STATUS_FD: `R` once the container is set up,
//! then after the start byte arrives on START_FD the workload is exec'd; STATUS_FD is close-on-exec,
//! so the agent reads EOF when exec succeeded, or `E<message>` when anything failed.

use crate::mounts::{self, do_mount, ensure_dir, ensure_file, join_in_root, parse_options};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, pivot_root, sethostname, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Process, Spec};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const STATUS_FD: i32 = 3;
pub const START_FD: i32 = 4;
/// A unix socket to the agent: the pty master of a process with a terminal goes back this way.
pub const CONSOLE_FD: i32 = 5;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the container spec {path}: {source}")]
    Spec {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("the spec has no {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Mount(#[from] mounts::Error),
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// runc's wording, which callers map to exit codes (podman: 127 for "no such file or
    /// directory", 126 for "permission denied").
    #[error("exec: {name:?}: {reason}")]
    Exec { name: String, reason: String },
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
    #[error("invalid {0}")]
    Invalid(String),
    #[error("seccomp: {0}")]
    Seccomp(crate::seccomp::Error),
    #[error("startContainer hook: {0}")]
    Hook(oci::HookError),
}

fn sys<T>(what: impl Into<String>, r: nix::Result<T>) -> Result<T, Error> {
    r.map_err(|errno| Error::Sys {
        what: what.into(),
        errno,
    })
}

/// Entry point of the helper; never returns.
pub fn container_init_main(spec_path: &Path) -> ! {
    // SAFETY: the spawner placed these pipe ends at these numbers for us and nobody else owns them.
    let mut status = unsafe { std::fs::File::from_raw_fd(STATUS_FD) };
    let code = match run(spec_path, &mut status) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = status.write_all(format!("E{e}").as_bytes());
            1
        }
    };
    std::process::exit(code)
}

enum Never {}

fn run(spec_path: &Path, status: &mut std::fs::File) -> Result<Never, Error> {
    let spec = Spec::load(spec_path).map_err(|source| Error::Spec {
        path: spec_path.to_path_buf(),
        source,
    })?;
    // Close-on-exec: the agent learns that exec succeeded from EOF on the status pipe.
    for fd in [STATUS_FD, START_FD, CONSOLE_FD] {
        sys(
            "fcntl FD_CLOEXEC",
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            ),
        )?;
    }
    let process = spec.process().as_ref().ok_or(Error::Missing("process"))?;
    let root = spec.root().as_ref().ok_or(Error::Missing("root"))?;
    let rootfs = root.path().clone();
    let plan = crate::namespaces::plan(&spec);
    if !crate::spawn::gate_before_exec(plan.clone_flags) {
        // Our clone did not wait: wait here until the agent has put us in our cgroup.
        // SAFETY: START_FD was placed for us by the spawner; the File is forgotten, not closed.
        let mut start =
            std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(START_FD) });
        let mut go = [0u8; 1];
        if !matches!(start.read(&mut go), Ok(1) if go[0] == crate::spawn::GO) {
            std::process::exit(1);
        }
    }
    for (flag, path) in plan
        .join
        .iter()
        .filter(|(f, _)| *f != nix::sched::CloneFlags::CLONE_NEWPID)
    {
        // A pod member sharing its sandbox's ipc/uts namespace (the pid one was joined by
        // the agent's clone).
        let ns = std::fs::File::open(path).map_err(|e| Error::Sys {
            what: format!("opening the sandbox namespace {}: {e}", path.display()),
            errno: nix::Error::ENOENT,
        })?;
        sys(
            format!("joining {}", path.display()),
            nix::sched::setns(ns, *flag),
        )?;
    }
    if plan.cgroup {
        // The agent moved us into the container's cgroup before letting us run: it becomes the
        // root of the new cgroup namespace.
        sys(
            "unshare cgroup namespace",
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP),
        )?;
    }
    let propagation = rootfs_propagation(&spec)?;
    let hook_state = start_hook_state(&spec, spec_path);

    prepare_rootfs(&spec, &rootfs, propagation, plan.user())?;
    enter_rootfs(&rootfs)?;
    if let Some(linux) = spec.linux() {
        // Before readonlyPaths makes /proc/sys read-only.
        for (key, value) in linux.sysctl().iter().flatten() {
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| Error::Sys {
                what: format!("sysctl {key}={value}: {e}"),
                errno: nix::Error::EINVAL,
            })?;
        }
        for p in linux.masked_paths().iter().flatten() {
            mask_path(Path::new(p))?;
        }
        for p in linux.readonly_paths().iter().flatten() {
            readonly_path(Path::new(p))?;
        }
    }
    if root.readonly() == Some(true) {
        sys(
            "remount / read-only",
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
    }
    if let Some(flags) = propagation {
        // Last, as runc does: a read-only remount above must not be given propagation flags.
        sys(
            "rootfsPropagation on /",
            nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>),
        )?;
    }
    // Joined a sandbox's uts namespace: its names are the sandbox's (runc would refuse a
    // hostname without a uts namespace of its own; CRI sets it for members anyway).
    let own_uts = plan.joined(nix::sched::CloneFlags::CLONE_NEWUTS).is_none();
    if let Some(hostname) = spec.hostname().as_ref().filter(|_| own_uts) {
        sys(format!("sethostname {hostname}"), sethostname(hostname))?;
    }
    if let Some(domain) = spec.domainname().as_ref().filter(|_| own_uts) {
        // SAFETY: setdomainname with a pointer and length of a live buffer.
        if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } != 0 {
            return Err(Error::Sys {
                what: format!("setdomainname {domain}"),
                errno: nix::Error::last(),
            });
        }
    }
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let mut prepared = prepare_process(process, seccomp)?;
    prepared.start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
        .unwrap_or_default();
    prepared.hook_state = hook_state;

    // Set up: tell the agent, then wait for StartContainer.
    let _ = status.write_all(b"R");
    // SAFETY: START_FD was placed for us by the spawner.
    let mut start = unsafe { std::fs::File::from_raw_fd(START_FD) };
    let mut byte = [0u8; 1];
    match start.read(&mut byte) {
        Ok(1) => {}
        // The agent went away or removed the container before starting it.
        _ => std::process::exit(1),
    }
    drop(start);
    Err(prepared.exec())
}

/// A process ready to be exec'd: credentials, limits and cwd already applied.
pub struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Resolved and checked while preparing, so a missing command fails create (as runc's
    /// create does), not start.
    exe: CString,
    /// A seccomp filter still to install: with no_new_privileges it goes in right before the
    /// exec, so the profile constrains as few of our own syscalls as possible (as runc does).
    late_seccomp: Option<crate::seccomp::Filter>,
    /// startContainer hooks: run in the container, after setup, right before the exec.
    start_hooks: Vec<oci_spec::runtime::Hook>,
    hook_state: String,
}

impl Prepared {
    /// Execs the workload (searching the container's own PATH); returns only on failure.
    pub fn exec(self) -> Error {
        if let Some(filter) = &self.late_seccomp {
            if let Err(e) = filter.install() {
                return Error::Seccomp(e);
            }
        }
        for hook in &self.start_hooks {
            if let Err(e) = oci::run_hook(hook, self.hook_state.as_bytes()) {
                return Error::Hook(e);
            }
        }
        let exe = self.exe;
        let errno = nix::unistd::execve(&exe, &self.argv, &self.envp)
            .err()
            .unwrap_or(nix::Error::UnknownErrno);
        Error::Sys {
            what: format!("exec {}", exe.to_string_lossy()),
            errno,
        }
    }
}

/// Everything of an OCI process short of the exec: terminal, rlimits, capabilities, user and
/// groups, cwd, no_new_privileges, seccomp. Used for a container's init and for every exec
/// (an exec gets its container's seccomp profile too, as with runc).
pub fn prepare_process(
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<Prepared, Error> {
    let filter = seccomp
        .map(crate::seccomp::compile)
        .transpose()
        .map_err(Error::Seccomp)?;
    let no_new_privs = process.no_new_privileges() == Some(true);
    if process.terminal() == Some(true) {
        take_terminal(process)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| Error::Sys {
            what: format!("oom_score_adj {adj}: {e}"),
            errno: nix::Error::EINVAL,
        })?;
    }
    if let Some(umask) = process.user().umask() {
        nix::sys::stat::umask(Mode::from_bits_truncate(umask));
    }
    apply_rlimits(process)?;
    let (argv, envp, exe) = prepare_exec(process)?;
    let caps = crate::caps::from_process(process);
    if let Some(filter) = filter.as_ref().filter(|_| !no_new_privs) {
        // Without no_new_privileges installing a filter needs CAP_SYS_ADMIN: before the
        // capabilities go.
        filter.install().map_err(Error::Seccomp)?;
    }
    if let Some(c) = &caps {
        sys(
            "dropping capabilities from the bounding set",
            crate::caps::drop_bounding(c),
        )?;
        sys("PR_SET_KEEPCAPS", crate::caps::keep_caps(true))?;
    }
    set_user(process)?;
    let cwd = process.cwd();
    sys(format!("chdir {}", cwd.display()), chdir(cwd.as_path()))?;
    if let Some(c) = &caps {
        sys("PR_SET_KEEPCAPS", crate::caps::keep_caps(false))?;
        sys("setting capabilities", crate::caps::apply(c))?;
    }
    if no_new_privs {
        // SAFETY: plain prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::Sys {
                what: "prctl(PR_SET_NO_NEW_PRIVS)".into(),
                errno: nix::Error::last(),
            });
        }
    }
    // As the process itself (user, groups, cwd, capabilities in place).
    let exe = resolve_executable(&exe, &envp)?;
    Ok(Prepared {
        argv,
        envp,
        exe,
        late_seccomp: filter.filter(|_| no_new_privs),
        start_hooks: Vec::new(),
        hook_state: String::new(),
    })
}

/// rootfsPropagation as mount flags; None when the spec leaves it out.
fn rootfs_propagation(spec: &Spec) -> Result<Option<MsFlags>, Error> {
    let Some(name) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    let flags = parse_options(&[name.as_str()]).propagation;
    if flags.is_empty() {
        return Err(Error::Invalid(format!("rootfsPropagation {name:?}")));
    }
    Ok(Some(flags))
}

/// The state JSON a startContainer hook reads on stdin. `bundle` is the container's folder in
/// the guest (the host's bundle path means nothing here); `pid` is the container's init as the
/// container sees it.
fn start_hook_state(spec: &Spec, spec_path: &Path) -> String {
    let id = spec_path
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bundle = spec
        .root()
        .as_ref()
        .and_then(|r| r.path().parent().map(Path::to_path_buf))
        .unwrap_or_default();
    serde_json::json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": "created",
        "pid": std::process::id(),
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

fn prepare_rootfs(
    spec: &Spec,
    rootfs: &Path,
    propagation: Option<MsFlags>,
    user_ns: bool,
) -> Result<(), Error> {
    // Nothing we mount may propagate back to the agent's namespace: rprivate unless the spec
    // asks for a propagation (then runc's way: that, on the whole tree).
    let flags = propagation.unwrap_or(MsFlags::MS_REC | MsFlags::MS_PRIVATE);
    sys(
        "setting the propagation of /",
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>),
    )?;
    // pivot_root refuses a new root whose parent mount is shared (rootfsPropagation
    // "shared"/"rshared" just made every mount here shared), and a bind of a shared mount would
    // propagate out of the container: the mount holding the rootfs becomes private first, as
    // runc's rootfsParentMountPrivate does.
    make_parent_mount_private(rootfs)?;
    // pivot_root needs the new root to be a mount point.
    do_mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        "",
    )?;
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        mount_one(rootfs, m)?;
        if m.destination() == Path::new("/dev") {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        create_default_devices(rootfs, user_ns)?;
    }
    if let Some(linux) = spec.linux() {
        for d in linux.devices().iter().flatten() {
            create_device(rootfs, d, user_ns)?;
        }
    }
    Ok(())
}

/// Makes the mount that holds `path` (the longest mount point above or at it) private when it
/// is shared.
fn make_parent_mount_private(path: &Path) -> Result<(), Error> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let holder = info
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let point = PathBuf::from(fields.get(4)?);
            let shared = fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"));
            path.starts_with(&point).then_some((point, shared))
        })
        .max_by_key(|(point, _)| point.components().count());
    match holder {
        Some((point, true)) => sys(
            format!("making {} private", point.display()),
            nix::mount::mount(
                None::<&str>,
                &point,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            ),
        ),
        _ => Ok(()),
    }
}

fn mount_one(rootfs: &Path, m: &Mount) -> Result<(), Error> {
    let dest = join_in_root(rootfs, m.destination())?;
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = opts.is_bind() || typ == "bind";
    if is_bind {
        let source = m.source().as_deref().unwrap_or(Path::new(""));
        if source.is_dir() {
            ensure_dir(&dest)?;
        } else {
            ensure_file(&dest)?;
        }
        let mut opts = opts;
        opts.flags.insert(MsFlags::MS_BIND);
        return Ok(mounts::mount_with_options(
            Some(source),
            &dest,
            None,
            &opts,
        )?);
    }
    ensure_dir(&dest)?;
    // The guest runs the unified hierarchy only.
    let fstype = if typ == "cgroup" { "cgroup2" } else { typ };
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(fstype));
    match mounts::mount_with_options(Some(&source), &dest, Some(fstype), &opts) {
        Ok(()) => Ok(()),
        // Without its own network namespace a container may not mount a fresh sysfs; give it
        // the VM's, read-only (it describes the VM, not the host).
        Err(_) if fstype == "sysfs" => {
            let mut ro = parse_options(&["rbind", "ro", "nosuid", "nodev", "noexec"]);
            ro.flags |= opts.flags & MsFlags::MS_RDONLY;
            Ok(mounts::mount_with_options(
                Some(Path::new("/sys")),
                &dest,
                None,
                &ro,
            )?)
        }
        Err(e) => Err(e.into()),
    }
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn create_default_devices(rootfs: &Path, user_ns: bool) -> Result<(), Error> {
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = rootfs.join("dev").join(name);
        if user_ns {
            bind_device(&Path::new("/dev").join(name), &path)?;
        } else {
            make_node(&path, SFlag::S_IFCHR, 0o666, major, minor)?;
        }
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    for (name, target) in links {
        let path = rootfs.join("dev").join(name);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &path).map_err(|source| {
                mounts::Error::MountPoint {
                    path: path.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

fn make_node(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> Result<(), Error> {
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    let dev = makedev(major, minor);
    match mknod(path, kind, Mode::from_bits_truncate(mode), dev) {
        Ok(()) => {
            // mknod applies the umask; the spec's mode is what the container must see.
            let _ = nix::sys::stat::fchmodat(
                None,
                path,
                Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            );
            Ok(())
        }
        Err(errno) => Err(Error::Sys {
            what: format!("mknod {}", path.display()),
            errno,
        }),
    }
}

/// In a user namespace mknod is refused: the guest's own node is bind-mounted instead (runc
/// does the same with the host's).
fn bind_device(guest_node: &Path, path: &Path) -> Result<(), Error> {
    if path.symlink_metadata().is_ok() {
        return Ok(());
    }
    if guest_node.symlink_metadata().is_err() {
        return Err(Error::Invalid(format!(
            "device {}: the VM has no such device to bind in a user namespace",
            guest_node.display()
        )));
    }
    ensure_file(path)?;
    do_mount(Some(guest_node), path, None, MsFlags::MS_BIND, "")?;
    Ok(())
}

fn create_device(rootfs: &Path, d: &LinuxDevice, user_ns: bool) -> Result<(), Error> {
    let path = join_in_root(rootfs, d.path())?;
    if user_ns {
        return bind_device(d.path(), &path);
    }
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    let mode = d.file_mode().unwrap_or(0o666);
    make_node(&path, kind, mode, d.major() as u64, d.minor() as u64)?;
    let uid = d.uid().map(Uid::from_raw);
    let gid = d.gid().map(Gid::from_raw);
    if uid.is_some() || gid.is_some() {
        sys(
            format!("chown {}", path.display()),
            nix::unistd::chown(&path, uid, gid),
        )?;
    }
    Ok(())
}

fn enter_rootfs(rootfs: &Path) -> Result<(), Error> {
    sys(format!("chdir {}", rootfs.display()), chdir(rootfs))?;
    // Stack the old root under the new one, then detach it: no put_old folder needed.
    sys("pivot_root", pivot_root(".", "."))?;
    sys("umount old root", umount2(".", MntFlags::MNT_DETACH))?;
    sys("chdir /", chdir("/"))
}

fn mask_path(path: &Path) -> Result<(), Error> {
    let Ok(meta) = path.metadata() else {
        return Ok(()); // nothing to mask
    };
    if meta.is_dir() {
        do_mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            "",
        )?;
    } else {
        do_mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            "",
        )?;
    }
    Ok(())
}

fn readonly_path(path: &Path) -> Result<(), Error> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    do_mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        "",
    )?;
    do_mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        "",
    )?;
    Ok(())
}

fn apply_rlimits(process: &Process) -> Result<(), Error> {
    for rl in process.rlimits().iter().flatten() {
        // The spec's own spelling (`RLIMIT_NOFILE`), not the Rust variant name.
        let name = serde_json::to_value(rl.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let Some(resource) = rlimit_resource(&name) else {
            return Err(Error::Invalid(format!("rlimit type {name:?}")));
        };
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: setrlimit with a valid pointer to an initialised struct.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(Error::Sys {
                what: format!("setrlimit {name}"),
                errno: nix::Error::last(),
            });
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    let upper = name.to_ascii_uppercase();
    let short = upper.trim_start_matches("RLIMIT_");
    Some(match short {
        "AS" => libc::RLIMIT_AS,
        "CORE" => libc::RLIMIT_CORE,
        "CPU" => libc::RLIMIT_CPU,
        "DATA" => libc::RLIMIT_DATA,
        "FSIZE" => libc::RLIMIT_FSIZE,
        "LOCKS" => libc::RLIMIT_LOCKS,
        "MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "NICE" => libc::RLIMIT_NICE,
        "NOFILE" => libc::RLIMIT_NOFILE,
        "NPROC" => libc::RLIMIT_NPROC,
        "RSS" => libc::RLIMIT_RSS,
        "RTPRIO" => libc::RLIMIT_RTPRIO,
        "RTTIME" => libc::RLIMIT_RTTIME,
        "SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

fn set_user(process: &Process) -> Result<(), Error> {
    let user = process.user();
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    sys("setgroups", nix::unistd::setgroups(&groups))?;
    sys(
        format!("setgid {gid}"),
        nix::unistd::setresgid(gid, gid, gid),
    )?;
    sys(
        format!("setuid {uid}"),
        nix::unistd::setresuid(uid, uid, uid),
    )
}

type ExecParts = (Vec<CString>, Vec<CString>, String);

fn prepare_exec(process: &Process) -> Result<ExecParts, Error> {
    let args = process.args().as_deref().unwrap_or_default();
    let first = args.first().ok_or(Error::Missing("process.args"))?.clone();
    let cstr = |s: &str| CString::new(s).map_err(|_| Error::Nul(s.to_string()));
    let argv = args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    Ok((argv, envp, first))
}

/// What runc's create checks of an explicit path: it exists, is not a folder, may be executed.
fn check_executable(path: &Path, name: &str) -> Result<(), Error> {
    let fail = |reason: String| Error::Exec {
        name: name.to_string(),
        reason,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail(format!(
            "stat {}: no such file or directory",
            path.display()
        ))),
        Err(e) => Err(fail(format!("stat {}: {e}", path.display()))),
        Ok(m) if m.is_dir() => Err(fail("is a directory".into())),
        Ok(_) => nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
            .map_err(|_| fail("permission denied".into())),
    }
}

/// execvpe semantics with the container's own PATH (not the agent's).
fn resolve_executable(name: &str, envp: &[CString]) -> Result<CString, Error> {
    let to_c =
        |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Nul(name.into()));
    if name.contains('/') {
        check_executable(Path::new(name), name)?;
        return to_c(Path::new(name));
    }
    let path_var = envp
        .iter()
        .filter_map(|e| e.to_str().ok())
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = candidate.metadata() {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return to_c(&candidate);
            }
        }
    }
    Err(Error::NotFound(name.to_string()))
}

/// Opens a pty in the container's own devpts (so `tty` and ttyname work inside), sends the
/// master to the agent over CONSOLE_FD, and makes the slave our stdio and the controlling
/// terminal of a new session; applies consoleSize.
fn take_terminal(process: &Process) -> Result<(), Error> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsRawFd;
    let master = sys(
        "opening /dev/ptmx in the container",
        nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC),
    )?;
    sys("grantpt", nix::pty::grantpt(&master))?;
    sys("unlockpt", nix::pty::unlockpt(&master))?;
    let slave_name = sys("ptsname", nix::pty::ptsname_r(&master))?;
    let slave = sys(
        format!("opening {slave_name}"),
        nix::fcntl::open(
            slave_name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY,
            Mode::empty(),
        ),
    )?;
    crate::fdpass::send_fd(CONSOLE_FD, master.as_raw_fd()).map_err(|errno| Error::Sys {
        what: "sending the pty master to the agent".into(),
        errno,
    })?;
    drop(master);
    for target in 0..3 {
        sys("dup2 pty slave", nix::unistd::dup2(slave, target))?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    sys("setsid", nix::unistd::setsid())?;
    // SAFETY: TIOCSCTTY on fd 0 with argument 0 (do not steal).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::Sys {
            what: "making the pty the controlling terminal".into(),
            errno: nix::Error::last(),
        });
    }
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
            ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on fd 0 with a valid winsize.
        unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
    }
    Ok(())
}

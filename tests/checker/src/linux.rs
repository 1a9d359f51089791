//! `hostname`, `domainname`, and of `linux`: namespaces, uid/gid mappings, sysctl, devices.

use crate::procfs;
use crate::report::{Outcome, Report};
use oci_spec::runtime::{Linux, LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, Spec};
use std::ffi::CStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn check_uts(spec: &Spec, r: &mut Report) {
    if spec.hostname().is_none() && spec.domainname().is_none() {
        return;
    }
    let uts = uname();
    if let Some(h) = spec.hostname() {
        let o = uts
            .as_ref()
            .map(|(node, _)| Outcome::expect_eq(h.as_str(), node.as_str()));
        r.record("hostname", o.map_err(Clone::clone));
    }
    if let Some(d) = spec.domainname() {
        let o = uts
            .as_ref()
            .map(|(_, domain)| Outcome::expect_eq(d.as_str(), domain.as_str()));
        r.record("domainname", o.map_err(Clone::clone));
    }
}

/// (nodename, domainname)
pub fn uname() -> Result<(String, String), String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every utsname field within its array.
        unsafe { CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok((field(&u.nodename), field(&u.domainname)))
}

fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// From inside there is nothing to compare a namespace with, so: the pid namespace makes us
/// PID 1, a cgroup namespace roots every hierarchy at our cgroup, a user namespace has the
/// spec's mappings; the others must at least exist.
pub fn check_namespaces(l: &Linux, r: &mut Report) {
    for ns in l.namespaces().iter().flatten() {
        let kind = ns_name(ns.typ());
        let check = format!("linux.namespaces {kind}");
        if let Some(p) = ns.path() {
            r.record(
                &check,
                Outcome::Skip(format!("joins {}: not checkable from inside", p.display())),
            );
            continue;
        }
        let present = std::fs::read_link(format!("/proc/self/ns/{kind}"));
        let outcome = match (ns.typ(), present) {
            (_, Err(e)) => Outcome::Fail(format!("/proc/self/ns/{kind}: {e}")),
            (LinuxNamespaceType::Pid, Ok(_)) => {
                Outcome::expect_eq(1, nix::unistd::getpid().as_raw())
            }
            (LinuxNamespaceType::Cgroup, Ok(_)) => cgroup_ns_root(),
            _ => Outcome::Pass,
        };
        r.record(&check, outcome);
        if ns.typ() == LinuxNamespaceType::User {
            r.record(
                "linux.uidMappings",
                id_map("/proc/self/uid_map", l.uid_mappings().as_deref()),
            );
            r.record(
                "linux.gidMappings",
                id_map("/proc/self/gid_map", l.gid_mappings().as_deref()),
            );
        }
    }
}

/// In a new cgroup namespace every line of /proc/self/cgroup says `/`.
fn cgroup_ns_root() -> Outcome {
    match procfs::read("/proc/self/cgroup") {
        Ok(text) => {
            let off: Vec<&str> = text
                .lines()
                .filter(|l| l.splitn(3, ':').nth(2).is_some_and(|p| p != "/"))
                .collect();
            if off.is_empty() {
                Outcome::Pass
            } else {
                Outcome::Fail(format!(
                    "/proc/self/cgroup not rooted at our cgroup: {}",
                    off.join(" ")
                ))
            }
        }
        Err(e) => Outcome::Fail(e),
    }
}

fn id_map(file: &str, want: Option<&[LinuxIdMapping]>) -> Outcome {
    let Some(want) = want else {
        return Outcome::Skip("no mappings in the spec".into());
    };
    let text = match procfs::read(file) {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let mut got: Vec<(u64, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            match v.as_slice() {
                [c, h, s] => Some((*c, *h, *s)),
                _ => None,
            }
        })
        .collect();
    let mut want: Vec<(u64, u64, u64)> = want
        .iter()
        .map(|m| {
            (
                u64::from(m.container_id()),
                u64::from(m.host_id()),
                u64::from(m.size()),
            )
        })
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    let fmt = |v: &[(u64, u64, u64)]| {
        v.iter()
            .map(|(c, h, s)| format!("{c} {h} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if got == want {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{file}: expected [{}], got [{}]",
            fmt(&want),
            fmt(&got)
        ))
    }
}

pub fn check_sysctl(l: &Linux, r: &mut Report) {
    let Some(sysctl) = l.sysctl() else { return };
    let mut keys: Vec<&String> = sysctl.keys().collect();
    keys.sort();
    for key in keys {
        let want = &sysctl[key];
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let outcome = match std::fs::read_to_string(&path) {
            // Multi-valued entries read back tab-separated.
            Ok(got) => Outcome::expect_eq(
                want.split_whitespace().collect::<Vec<_>>().join(" "),
                got.split_whitespace().collect::<Vec<_>>().join(" "),
            ),
            Err(e) => Outcome::Fail(format!("reading {}: {e}", path.display())),
        };
        r.record(&format!("linux.sysctl {key}"), outcome);
    }
}

/// A device node the container must have.
struct Dev {
    path: PathBuf,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// The OCI default devices; /dev/ptmx may be a symlink to pts/ptmx (checked through it).
const DEFAULT_DEVICES: [(&str, i64, i64); 7] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/ptmx", 5, 2),
];

const DEV_SYMLINKS: [(&str, &str); 4] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

pub fn check_devices(l: &Linux, r: &mut Report) {
    let mut devs: Vec<Dev> = DEFAULT_DEVICES
        .iter()
        .map(|(p, major, minor)| Dev {
            path: PathBuf::from(p),
            kind: LinuxDeviceType::C,
            major: *major,
            minor: *minor,
            mode: None,
            uid: None,
            gid: None,
        })
        .collect();
    for d in l.devices().iter().flatten() {
        let dev = Dev {
            path: d.path().clone(),
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode(),
            uid: d.uid(),
            gid: d.gid(),
        };
        match devs.iter_mut().find(|x| x.path == dev.path) {
            Some(x) => *x = dev,
            None => devs.push(dev),
        }
    }
    for d in &devs {
        r.record(&format!("linux.devices {}", d.path.display()), device(d));
    }
    let problems = DEV_SYMLINKS
        .iter()
        .filter_map(|(link, target)| match std::fs::read_link(link) {
            Ok(t) if t == Path::new(target) => None,
            Ok(t) => Some(format!("{link} -> {}, expected {target}", t.display())),
            Err(e) => Some(format!("{link}: {e}")),
        })
        .collect();
    r.record("linux.devices symlinks", Outcome::from_problems(problems));
}

fn device(d: &Dev) -> Outcome {
    let md = match std::fs::metadata(&d.path) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("{e}")),
    };
    let ft = md.file_type();
    let (type_ok, has_numbers) = match d.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => (ft.is_char_device(), true),
        LinuxDeviceType::B => (ft.is_block_device(), true),
        LinuxDeviceType::P => (ft.is_fifo(), false),
        LinuxDeviceType::A => (ft.is_char_device() || ft.is_block_device(), true),
    };
    let mut problems = Vec::new();
    if !type_ok {
        problems.push(format!("not of type {:?}", d.kind));
    }
    if has_numbers {
        let rdev = md.rdev();
        let (major, minor) = (i64::from(libc::major(rdev)), i64::from(libc::minor(rdev)));
        if (major, minor) != (d.major, d.minor) {
            problems.push(format!("{major}:{minor}, expected {}:{}", d.major, d.minor));
        }
    }
    if let Some(mode) = d.mode {
        let got = md.permissions().mode() & 0o777;
        if got != mode & 0o777 {
            problems.push(format!("mode {got:o}, expected {:o}", mode & 0o777));
        }
    }
    if let Some(uid) = d.uid.filter(|u| *u != md.uid()) {
        problems.push(format!("uid {}, expected {uid}", md.uid()));
    }
    if let Some(gid) = d.gid.filter(|g| *g != md.gid()) {
        problems.push(format!("gid {}, expected {gid}", md.gid()));
    }
    Outcome::from_problems(problems)
}

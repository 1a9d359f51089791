//! `root.readonly`, `mounts`, `linux.maskedPaths`, `linux.readonlyPaths`.
//!
//! Write probes never write a byte: a file is only opened (or created, then removed at once
//! should the create succeed), and device nodes are never opened.

use crate::procfs::{self, MountInfo};
use crate::report::{Outcome, Report};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, Mount, Spec};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const PROBE: &str = ".kata-spec-checker-probe";

pub fn check_root(spec: &Spec, r: &mut Report) {
    let Some(ro) = spec.root().as_ref().and_then(|root| root.readonly()) else {
        return;
    };
    let outcome = if ro {
        match create_probe(Path::new("/")) {
            Err(Errno::EROFS) => Outcome::Pass,
            Ok(()) => Outcome::Fail("created a file at / (expected EROFS)".into()),
            Err(e) => Outcome::Fail(format!("creating a file at /: {e} (expected EROFS)")),
        }
    } else {
        procfs::mountinfo().map_or_else(Outcome::Fail, |ms| {
            match procfs::mount_at(&ms, Path::new("/")) {
                Some(m) if m.is_readonly() => Outcome::Fail("/ is mounted read-only".into()),
                Some(_) => Outcome::Pass,
                None => Outcome::Fail("/ not in /proc/self/mountinfo".into()),
            }
        })
    };
    r.record("root.readonly", outcome);
}

/// Creates `dir/PROBE` exclusively; removes it again if that worked.
fn create_probe(dir: &Path) -> Result<(), Errno> {
    let path = dir.join(PROBE);
    let fd = nix::fcntl::open(
        &path,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    let _ = nix::unistd::close(fd);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

pub fn check_mounts(spec: &Spec, r: &mut Report) {
    let Some(list) = spec.mounts() else { return };
    let table = match procfs::mountinfo() {
        Ok(t) => t,
        Err(e) => {
            r.record("mounts", Outcome::Fail(e));
            return;
        }
    };
    for m in list {
        let name = format!("mounts {}", m.destination().display());
        r.record(&name, mount_match(m, &table));
    }
}

fn mount_match(m: &Mount, table: &[MountInfo]) -> Outcome {
    let Some(got) = procfs::mount_at(table, m.destination()) else {
        return Outcome::Fail("not a mount point in /proc/self/mountinfo".into());
    };
    let opts: &[String] = m.options().as_deref().unwrap_or_default();
    let is_bind =
        m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
    let mut problems = Vec::new();
    if let Some(typ) = m.typ().as_deref().filter(|_| !is_bind) {
        // A `cgroup` mount shows as cgroup2 on the unified hierarchy, and as the tmpfs that
        // holds the v1 hierarchies otherwise.
        let ok = match typ {
            "cgroup" => ["cgroup", "cgroup2", "tmpfs"].contains(&got.fstype.as_str()),
            t => got.fstype == t,
        };
        if !ok {
            problems.push(format!("type {}, expected {typ}", got.fstype));
        }
    }
    for o in opts {
        let (flag, wanted) = match o.as_str() {
            "ro" => ("ro", true),
            "rw" => ("ro", false),
            "nosuid" => ("nosuid", true),
            "suid" => ("nosuid", false),
            "nodev" => ("nodev", true),
            "dev" => ("nodev", false),
            "noexec" => ("noexec", true),
            "exec" => ("noexec", false),
            _ => continue,
        };
        let has = if flag == "ro" {
            got.is_readonly()
        } else {
            got.has(flag)
        };
        if has != wanted {
            problems.push(format!("{o} asked, mounted {}", got.options.join(",")));
        }
    }
    if m.typ().as_deref() == Some("tmpfs") {
        tmpfs_options(m.destination(), opts, &mut problems);
    }
    Outcome::from_problems(problems)
}

/// tmpfs `mode=` (the mount root's permissions) and `size=` (the filesystem's size).
fn tmpfs_options(dest: &Path, opts: &[String], problems: &mut Vec<String>) {
    for o in opts {
        if let Some(mode) = o.strip_prefix("mode=") {
            let Ok(want) = u32::from_str_radix(mode, 8) else {
                continue;
            };
            match std::fs::metadata(dest) {
                Ok(md) => {
                    let got = md.permissions().mode() & 0o7777;
                    if got != want {
                        problems.push(format!("mode {got:o}, expected {want:o}"));
                    }
                }
                Err(e) => problems.push(format!("stat: {e}")),
            }
        }
        if let Some(size) = o.strip_prefix("size=") {
            let Some(want) = parse_size(size) else {
                continue;
            };
            match nix::sys::statvfs::statvfs(dest) {
                Ok(st) => {
                    let got = st.blocks() * st.fragment_size();
                    // The kernel rounds up to whole pages.
                    let page = 4096;
                    if got != want.div_ceil(page) * page {
                        problems.push(format!("size {got} bytes, expected {want}"));
                    }
                }
                Err(e) => problems.push(format!("statvfs: {e}")),
            }
        }
    }
}

/// `65536k`, `1m`, `2g`, `4096` → bytes; percentages are not sizes we can check.
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

pub fn check_masked_paths(l: &Linux, r: &mut Report) {
    for p in l.masked_paths().iter().flatten() {
        r.record(&format!("linux.maskedPaths {p}"), masked(Path::new(p)));
    }
}

/// A masked directory is empty, a masked file reads empty (runtimes mount a read-only tmpfs
/// over the first and bind /dev/null over the second).
fn masked(p: &Path) -> Outcome {
    let Ok(md) = std::fs::metadata(p) else {
        return Outcome::Skip("absent".into());
    };
    if md.is_dir() {
        return match std::fs::read_dir(p) {
            Ok(rd) => {
                let names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .take(5)
                    .collect();
                if names.is_empty() {
                    Outcome::Pass
                } else {
                    Outcome::Fail(format!("directory not empty: {}", names.join(" ")))
                }
            }
            Err(e) => Outcome::Fail(format!("reading the directory: {e}")),
        };
    }
    use std::io::Read;
    let mut buf = [0u8; 64];
    match std::fs::File::open(p).and_then(|mut f| f.read(&mut buf)) {
        Ok(0) => Outcome::Pass,
        Ok(n) => Outcome::Fail(format!("reads {n}+ bytes, expected none")),
        Err(e) => Outcome::Fail(format!("reading: {e} (a masked file reads empty)")),
    }
}

pub fn check_readonly_paths(l: &Linux, r: &mut Report) {
    let Some(paths) = l.readonly_paths() else {
        return;
    };
    let table = procfs::mountinfo();
    for p in paths {
        let outcome = match &table {
            Ok(t) => readonly(Path::new(p), t),
            Err(e) => Outcome::Fail(e.clone()),
        };
        r.record(&format!("linux.readonlyPaths {p}"), outcome);
    }
}

/// Writing fails with EROFS. When the attempt is refused for another reason first (EACCES for
/// a non-root user), or the path is a device or fifo (which a read-only mount does not stop),
/// the mount it lives on must be read-only.
fn readonly(p: &Path, table: &[MountInfo]) -> Outcome {
    let Ok(md) = std::fs::metadata(p) else {
        return Outcome::Skip("absent".into());
    };
    let attempt = if md.is_dir() {
        Some(create_probe(p).map_err(|e| (e, p.join(PROBE))))
    } else if md.is_file() {
        let r = nix::fcntl::open(
            p,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        Some(
            r.map(|fd| {
                let _ = nix::unistd::close(fd);
            })
            .map_err(|e| (e, p.to_path_buf())),
        )
    } else {
        None
    };
    match attempt {
        Some(Err((Errno::EROFS, _))) => Outcome::Pass,
        Some(Ok(())) => Outcome::Fail("opened for writing (expected EROFS)".into()),
        Some(Err((e, what))) => mount_readonly(p, table, &format!("{}: {e}; ", what.display())),
        None => mount_readonly(p, table, ""),
    }
}

fn mount_readonly(p: &Path, table: &[MountInfo], why: &str) -> Outcome {
    match procfs::mount_covering(table, p) {
        Some(m) if m.is_readonly() => Outcome::Pass,
        Some(m) => Outcome::Fail(format!(
            "{why}mount {} is {}",
            m.mount_point,
            m.options.join(",")
        )),
        None => Outcome::Fail(format!("{why}no mount covers it")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536k"), Some(64 << 20));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("50%"), None);
    }
}

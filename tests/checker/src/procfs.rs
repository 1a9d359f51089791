//! What the checks read from /proc: status fields and the mount table.

use std::path::{Component, Path};

pub fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

/// A field of /proc/self/status, trimmed (`Umask`, `CapEff`, `NoNewPrivs`, `Seccomp`...).
pub fn status_field(name: &str) -> Result<String, String> {
    let text = read("/proc/self/status")?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim().to_string())
        })
        .ok_or_else(|| format!("no {name} in /proc/self/status"))
}

/// A capability mask of /proc/self/status (hex).
pub fn status_mask(name: &str) -> Result<u64, String> {
    let v = status_field(name)?;
    u64::from_str_radix(&v, 16).map_err(|e| format!("{name} {v:?}: {e}"))
}

/// The highest capability number the running kernel knows.
pub fn cap_last_cap() -> u32 {
    read("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: String,
    /// Per-mount options: rw/ro, nosuid, nodev, noexec, relatime...
    pub options: Vec<String>,
    pub fstype: String,
    /// Superblock options (size=, mode=, ro...).
    pub super_options: Vec<String>,
}

impl MountInfo {
    pub fn has(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }

    pub fn is_readonly(&self) -> bool {
        self.has("ro") || self.super_options.iter().any(|o| o == "ro")
    }
}

pub fn mountinfo() -> Result<Vec<MountInfo>, String> {
    let text = read("/proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    let split = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
    Some(MountInfo {
        mount_point: unescape(fields.get(4)?),
        options: split(fields.get(5)?),
        fstype: fields.get(sep + 1)?.to_string(),
        super_options: split(fields.get(sep + 3).copied().unwrap_or("")),
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4);
        if b[i] == b'\\' && octal.is_some_and(|o| o.iter().all(|c| (b'0'..=b'7').contains(c))) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/a/./b/` → `/a/b` (no symlink resolution: the spec's paths are the container's).
pub fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The topmost mount whose mount point is exactly `path`.
pub fn mount_at<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let p = normalize(path);
    mounts.iter().rev().find(|m| m.mount_point == p)
}

/// The topmost mount `path` lives on: the longest mount point that is a prefix of it.
pub fn mount_covering<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let p = normalize(path);
    let under = |mp: &str| {
        mp == "/" || p == mp || (p.starts_with(mp) && p.as_bytes().get(mp.len()) == Some(&b'/'))
    };
    let mut best: Option<&MountInfo> = None;
    for m in mounts.iter().filter(|m| under(&m.mount_point)) {
        // Later lines are mounted later, so on top at an equal mount point.
        match best {
            Some(b) if b.mount_point.len() > m.mount_point.len() => {}
            _ => best = Some(m),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mountinfo_line() {
        let l =
            "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        let m = parse_mountinfo_line(l).unwrap();
        assert_eq!(m.mount_point, "/mnt x");
        assert!(m.has("noatime") && !m.is_readonly());
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, ["rw", "errors=continue"]);
    }

    #[test]
    fn finds_the_covering_mount() {
        let mk = |mp: &str, o: &str| MountInfo {
            mount_point: mp.into(),
            options: vec![o.into()],
            fstype: "x".into(),
            super_options: vec![],
        };
        let ms = vec![
            mk("/", "rw"),
            mk("/proc", "rw"),
            mk("/proc/sys", "ro"),
            mk("/proc/sys", "rw"),
        ];
        assert_eq!(
            mount_covering(&ms, Path::new("/proc/sysrq"))
                .unwrap()
                .mount_point,
            "/proc"
        );
        assert!(mount_covering(&ms, Path::new("/proc/sys/kernel"))
            .unwrap()
            .has("rw"));
        assert_eq!(
            mount_at(&ms, Path::new("/proc/sys/")).unwrap().options,
            ["rw"]
        );
        assert_eq!(
            mount_covering(&ms, Path::new("/tmp")).unwrap().mount_point,
            "/"
        );
    }
}

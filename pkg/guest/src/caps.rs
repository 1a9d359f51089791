//! The OCI process's five capability sets, applied in the container helper around the uid
//! change (as runc does): bounding set first, keep-caps across setuid, then capset and ambient.

use oci_spec::runtime::{Capabilities, Process};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

pub fn number(name: &str) -> Option<u32> {
    oci::CAPABILITY_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

fn mask(set: Option<&Capabilities>) -> u64 {
    let mut m = 0u64;
    for cap in set.into_iter().flatten() {
        let name = serde_json::to_value(cap).ok();
        match name.as_ref().and_then(|v| v.as_str()).and_then(number) {
            Some(n) => m |= 1 << n,
            None => log::warn!("capability {cap:?} unknown to this guest kernel: ignored"),
        }
    }
    m
}

/// `None` when the spec says nothing about capabilities (then nothing is changed, as in runc).
pub fn from_process(p: &Process) -> Option<CapSets> {
    let c = p.capabilities().as_ref()?;
    Some(CapSets {
        bounding: mask(c.bounding().as_ref()),
        effective: mask(c.effective().as_ref()),
        permitted: mask(c.permitted().as_ref()),
        inheritable: mask(c.inheritable().as_ref()),
        ambient: mask(c.ambient().as_ref()),
    })
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(oci::CAPABILITY_NAMES.len() as u32 - 1)
}

/// Drops from the bounding set every capability not in it. Needs CAP_SETPCAP: before setuid.
pub fn drop_bounding(sets: &CapSets) -> nix::Result<()> {
    for cap in 0..=last_cap() {
        if sets.bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
                let e = nix::Error::last();
                if e != nix::Error::EINVAL {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Keep the permitted set across the coming setuid (it would be cleared for a non-root uid).
pub fn keep_caps(on: bool) -> nix::Result<()> {
    // SAFETY: prctl with integer arguments.
    match unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(nix::Error::last()),
    }
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets effective, permitted and inheritable, then raises the ambient ones.
pub fn apply(sets: &CapSets) -> nix::Result<()> {
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [(m & 0xffff_ffff) as u32, (m >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        Data {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset with a v3 header and the two data words it expects.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(nix::Error::last());
    }
    for cap in 0..64u32 {
        if sets.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if r != 0 {
                log::warn!("raising ambient capability {cap}: {}", nix::Error::last());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("CAP_KILL"), Some(5));
        assert_eq!(number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_AUDIT_WRITE"), Some(29));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn masks_from_a_spec() {
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"]}}"#,
        )
        .unwrap();
        let s = from_process(&p).unwrap();
        assert_eq!(s.bounding, (1 << 5) | 1);
        assert_eq!(s.effective, 1 << 5);
        assert_eq!(s.permitted, 0);
    }
}

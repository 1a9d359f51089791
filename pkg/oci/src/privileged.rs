//! Whether a spec is what callers make for a "privileged" container.
//!
//! No field says so: containerd's CRI (`privileged: true`), Docker and podman (`--privileged`)
//! all give the process CAP_SYS_ADMIN in its bounding set and drop the masked paths, and add
//! every host device to `linux.devices`. A spec with both of the first two is taken as
//! privileged; `runc spec`'s default (masked paths) and a container given one capability are
//! not.

use oci_spec::runtime::{Capability, Spec};

pub fn is_privileged(spec: &Spec) -> bool {
    let sys_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&Capability::SysAdmin));
    let unmasked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .is_none_or(|m| m.is_empty());
    sys_admin && unmasked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(caps: &[&str], masked: &[&str]) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "capabilities": {"bounding": caps}},
            "linux": {"maskedPaths": masked}
        }))
        .expect("spec")
    }

    #[test]
    fn privileged_means_sys_admin_and_nothing_masked() {
        assert!(is_privileged(&spec(&["CAP_SYS_ADMIN", "CAP_KILL"], &[])));
        assert!(!is_privileged(&spec(&["CAP_SYS_ADMIN"], &["/proc/kcore"])));
        assert!(!is_privileged(&spec(&["CAP_KILL"], &[])));
    }
}

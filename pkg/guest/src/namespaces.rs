//! Which Linux namespaces a container gets, from its spec's `linux.namespaces`, and the user
//! namespace's id maps.
//!
//! In the VM the network namespace is the VM's (the pod's network lives in the guest's root
//! network namespace). A namespace `path` from the host means nothing in the guest: the runtime
//! rewrites the ones a pod member shares with its sandbox (ipc, uts, pid) to
//! `SANDBOX_NS_DIR/<type>`, where the agent published the sandbox container's namespaces; any
//! other path is ignored with a warning and a new namespace made, as Kata 1.x did. A mount
//! namespace is always created, since the container pivots into its own root. The cgroup
//! namespace is unshared by the setup helper itself, once the agent has moved it into the
//! container's cgroup (so that cgroup becomes the namespace's root, as with runc).

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a user namespace needs {0} that map the container's root (0)")]
    NoRoot(&'static str),
    #[error("publishing the sandbox's namespaces in {path}: {source}")]
    Publish {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Namespaces a pod member joins, and how (see the module comment).
const SHAREABLE: [(LinuxNamespaceType, &str, CloneFlags); 3] = [
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Pid, "pid", CloneFlags::CLONE_NEWPID),
];

/// The namespaces a container's init is cloned into, and those it joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Flags for clone(2) of the setup helper.
    pub clone_flags: CloneFlags,
    /// The helper unshares a cgroup namespace after joining its cgroup.
    pub cgroup: bool,
    /// Existing namespaces to join: (setns flag, path). The pid namespace is joined by the
    /// agent's clone; the others by the setup helper, first thing.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl Plan {
    pub fn user(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }

    pub fn joined(&self, flag: CloneFlags) -> Option<&Path> {
        self.join
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, p)| p.as_path())
    }
}

/// The sandbox namespace a member's spec names, if `path` is one.
fn shared_with_sandbox(typ: LinuxNamespaceType, path: &Path) -> Option<CloneFlags> {
    SHAREABLE.iter().find_map(|(t, name, flag)| {
        (*t == typ && path == Path::new(protocols::SANDBOX_NS_DIR).join(name)).then_some(*flag)
    })
}

/// Makes the sandbox container's namespaces joinable by the pod's members: symlinks to the
/// /proc entries of its init (they go stale, and joining fails clearly, once it is gone).
pub fn publish_sandbox(pid: i32) -> Result<(), Error> {
    let dir = Path::new(protocols::SANDBOX_NS_DIR);
    let publish_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Publish { path, source }
    };
    std::fs::create_dir_all(dir).map_err(publish_err(dir))?;
    for (_, name, _) in SHAREABLE {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/proc/{pid}/ns/{name}"), &link)
            .map_err(publish_err(&link))?;
    }
    Ok(())
}

pub fn plan(spec: &Spec) -> Plan {
    let mut clone_flags = CloneFlags::CLONE_NEWNS;
    let mut cgroup = false;
    let mut join = Vec::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        if let Some(path) = ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
            if let Some(flag) = shared_with_sandbox(ns.typ(), path) {
                join.push((flag, path.clone()));
                continue;
            }
            log::warn!(
                "namespace {:?} path {}: a host path means nothing in the VM; a new one is made",
                ns.typ(),
                path.display()
            );
        }
        match ns.typ() {
            LinuxNamespaceType::Pid => clone_flags |= CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Ipc => clone_flags |= CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => clone_flags |= CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::User => clone_flags |= CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => cgroup = true,
            LinuxNamespaceType::Mount => {}
            LinuxNamespaceType::Network => {
                log::debug!("network namespace: the container uses the VM's network");
            }
            other => log::warn!("namespace {other:?} is not supported in the guest: ignored"),
        }
    }
    Plan {
        clone_flags,
        cgroup,
        join,
    }
}

/// Writes the spec's uid and gid maps for a child cloned into a new user namespace. The agent
/// is real root in the guest, so any mapping is allowed and setgroups stays permitted.
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<(), Error> {
    let linux = spec.linux().as_ref();
    let uids = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gids = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    // The setup helper starts as the namespace's root (see spawn), so 0 must be mapped.
    for (field, maps) in [("uidMappings", &uids), ("gidMappings", &gids)] {
        if !maps.iter().any(|m| m.container_id() == 0 && m.size() > 0) {
            return Err(Error::NoRoot(field));
        }
    }
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, render(&maps)).map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plan_follows_the_spec_and_always_has_a_mount_namespace() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"pid"},{"type":"network"},{"type":"cgroup"},{"type":"user"}]}}"#,
        );
        let p = plan(&s);
        assert!(p.clone_flags.contains(CloneFlags::CLONE_NEWPID));
        assert!(p.clone_flags.contains(CloneFlags::CLONE_NEWNS));
        assert!(!p.clone_flags.contains(CloneFlags::CLONE_NEWNET));
        assert!(!p.clone_flags.contains(CloneFlags::CLONE_NEWIPC));
        assert!(p.user());
        assert!(p.cgroup);
        let member = plan(&spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"ipc","path":"/run/kata-containers/sandbox/ns/ipc"},
                {"type":"uts","path":"/proc/42/ns/uts"},
                {"type":"pid","path":"/run/kata-containers/sandbox/ns/pid"}]}}"#,
        ));
        assert_eq!(
            member.joined(CloneFlags::CLONE_NEWIPC),
            Some(Path::new("/run/kata-containers/sandbox/ns/ipc"))
        );
        assert!(member.joined(CloneFlags::CLONE_NEWPID).is_some());
        // A host path: a namespace of its own.
        assert!(member.clone_flags.contains(CloneFlags::CLONE_NEWUTS));
        assert!(!member.clone_flags.contains(CloneFlags::CLONE_NEWIPC));
        assert!(!member.clone_flags.contains(CloneFlags::CLONE_NEWPID));
        let none = plan(&spec(r#"{"ociVersion":"1.0.2"}"#));
        assert_eq!(none.clone_flags, CloneFlags::CLONE_NEWNS);
        assert!(!none.cgroup);
    }

    #[test]
    fn id_maps_render_one_line_each() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"uidMappings":[
                {"containerID":0,"hostID":1000,"size":1},
                {"containerID":1,"hostID":100000,"size":65536}]}}"#,
        );
        let maps = s.linux().as_ref().unwrap().uid_mappings().clone().unwrap();
        assert_eq!(render(&maps), "0 1000 1\n1 100000 65536\n");
    }
}

//! The namespaces a spec names, checked on the host before anything is made.
//!
//! - Every `path` in `linux.namespaces` must be a namespace of the entry's `type` (runc checks
//!   the same when it joins): a wrong file is refused, not silently replaced by a new namespace.
//! - A pod's network and IPC cannot be the host's: the VM's kernel has its own. The host's
//!   namespace is refused however the spec names it: no entry at all (runc's "share the
//!   runtime's"), `/proc/self/ns/net`, `/proc/1/ns/net`, or a bind-mounted pin of either (what
//!   CRI-O's pinns hands a host-network pod). Identity is the nsfs inode, compared with this
//!   process's namespace and PID 1's (PID 1's links cannot be read on every host, so this
//!   process's own is always compared too). CRI-O's `HostNetwork` annotation is honoured as well.

use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

use crate::{Error, Result, Runtime};

/// CRI-O's annotation on a pod that uses the host's network.
pub(crate) const CRIO_HOST_NETWORK: &str = "io.kubernetes.cri-o.HostNetwork";

/// `ioctl(fd, NS_GET_NSTYPE)`: the `CLONE_NEW*` flag of the namespace `fd` refers to.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

fn namespaces(spec: &Spec) -> Vec<LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
}

fn given_path(ns: &LinuxNamespace) -> Option<&Path> {
    ns.path().as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// The spec's name of a namespace type (`network`, `ipc`...).
fn type_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

fn type_of_flag(flag: libc::c_int) -> Option<LinuxNamespaceType> {
    Some(match flag {
        libc::CLONE_NEWNS => LinuxNamespaceType::Mount,
        libc::CLONE_NEWCGROUP => LinuxNamespaceType::Cgroup,
        libc::CLONE_NEWUTS => LinuxNamespaceType::Uts,
        libc::CLONE_NEWIPC => LinuxNamespaceType::Ipc,
        libc::CLONE_NEWUSER => LinuxNamespaceType::User,
        libc::CLONE_NEWPID => LinuxNamespaceType::Pid,
        libc::CLONE_NEWNET => LinuxNamespaceType::Network,
        0x80 => LinuxNamespaceType::Time, // CLONE_NEWTIME
        _ => return None,
    })
}

/// What the file at `path` is, as a namespace: `Ok(None)` when it is not one.
fn namespace_type(path: &Path) -> std::io::Result<Option<LinuxNamespaceType>> {
    let file = std::fs::File::open(path)?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor's namespace.
    let flag = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if flag < 0 {
        return Ok(None);
    }
    Ok(type_of_flag(flag))
}

/// Every namespace `path` of the spec names a namespace of its entry's type.
pub(crate) fn check_paths(spec: &Spec) -> Result<()> {
    for ns in namespaces(spec) {
        let Some(path) = given_path(&ns) else {
            continue;
        };
        let want = type_name(ns.typ());
        let refuse = |what: String| {
            Error::Unsupported(format!(
                "linux.namespaces: {want} namespace {} {what}",
                path.display()
            ))
        };
        match namespace_type(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse("does not exist".into()))
            }
            Err(e) => return Err(refuse(format!("cannot be opened: {e}"))),
            Ok(None) => return Err(refuse("is not a namespace".into())),
            Ok(Some(t)) if t != ns.typ() => {
                return Err(refuse(format!(
                    "is a {} namespace, not a {want} namespace",
                    type_name(t)
                )))
            }
            Ok(Some(_)) => {}
        }
    }
    Ok(())
}

/// The nsfs identity (device, inode) of the namespace at `path`.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `path` names the host's namespace of kind `proc_name` (`net`, `ipc`): the one of
/// PID 1 or of this runtime process.
pub(crate) fn is_host_namespace(path: &Path, proc_name: &str) -> bool {
    let Some(given) = identity(path) else {
        return false;
    };
    ["/proc/self/ns", "/proc/1/ns"]
        .iter()
        .filter_map(|dir| identity(&Path::new(dir).join(proc_name)))
        .any(|host| host == given)
}

/// A sandbox's network, IPC and PID namespaces are the VM's own: a spec that asks for the
/// host's is refused with one line (the caller's pod then fails at once, rather than a VM reaching for the
/// host's NIC or a "shared" IPC that is not).
pub(crate) fn refuse_host_namespaces(spec: &Spec) -> Result<()> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    if annotations
        .get(CRIO_HOST_NETWORK)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Err(Error::Network(format!(
            "the pod asks for the host's network ({CRIO_HOST_NETWORK} = true), which a VM \
             cannot share: run host-network pods with runc"
        )));
    }
    let list = namespaces(spec);
    for (typ, proc_name, what) in [
        (LinuxNamespaceType::Network, "net", "networking"),
        (LinuxNamespaceType::Ipc, "ipc", "IPC"),
        // The host's processes are not in the VM: `docker run --pid host` cannot see them.
        (LinuxNamespaceType::Pid, "pid", "PID"),
    ] {
        let entry = list.iter().find(|ns| ns.typ() == typ);
        let Some(entry) = entry else {
            return Err(missing(typ, what));
        };
        if let Some(path) = given_path(entry) {
            if is_host_namespace(path, proc_name) {
                return Err(Error::Unsupported(format!(
                    "{} namespace path {} is the host's own namespace (host {what}), which a \
                     VM cannot share: give the pod a namespace of its own (or run it with runc)",
                    type_name(typ),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// A pod member may name its sandbox's namespaces (they become the guest's), but a spec with
/// no pid namespace asks for the host's processes (`docker run --pid host --network
/// container:<other>`): refused as for a sandbox.
pub(crate) fn refuse_host_pid(spec: &Spec) -> Result<()> {
    if namespaces(spec)
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Pid)
    {
        return Ok(());
    }
    Err(missing(LinuxNamespaceType::Pid, "PID"))
}

/// A spec without an entry of `typ` asks for the host's namespace of that kind.
fn missing(typ: LinuxNamespaceType, what: &str) -> Error {
    Error::Unsupported(format!(
        "the spec has no {name} namespace, i.e. host {what}, which a VM cannot share: \
         add {{\"type\": \"{name}\"}} to linux.namespaces (or run the pod with runc)",
        name = type_name(typ)
    ))
}

/// The sandbox a container without pod annotations joins because its spec names another
/// container's namespace by that container's pid: Docker's `--network container:<other>` (and
/// `--ipc`/`--pid container:<other>`) give `/proc/<pid>/ns/<type>` with the pid the runtime
/// reported for the other container, which is the host pid of its kata-shim. A VM container's
/// namespaces live in its VM, so sharing one means running in that VM. Only a live kata-shim of
/// a container of this state root counts; any other path is left to the host-namespace checks.
pub(crate) fn sandbox_named_by_pid(rt: &Runtime, spec: &Spec) -> Option<String> {
    let namespaces = spec.linux().as_ref()?.namespaces().clone()?;
    let pids: Vec<i32> = namespaces
        .iter()
        .filter_map(|ns| proc_pid_of(ns.path().as_deref()?))
        .collect();
    if pids.is_empty() {
        return None;
    }
    rt.store.list().into_iter().find_map(|cid| {
        let rec = rt.store.load_container(&cid).ok()?;
        let shim = rec.shim.as_ref()?;
        (pids.contains(&shim.pid) && shim.alive()).then(|| rec.sandbox_id.clone())
    })
}

/// The pid of a `/proc/<pid>/ns/<type>` path.
fn proc_pid_of(path: &Path) -> Option<i32> {
    let mut parts = path.strip_prefix("/proc").ok()?.components();
    let pid = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "ns" && parts.next().is_some() && parts.next().is_none())
        .then_some(pid)
}

/// CRI gives a member the host paths of its sandbox's namespaces (`/proc/<pause>/ns/ipc`):
/// in the guest those become the agent's published sandbox namespaces. Other paths (the
/// network one: the VM's network is the pod's) are dropped.
pub fn share_sandbox_namespaces(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let Some(mut namespaces) = linux.namespaces().clone() else {
        return;
    };
    for ns in namespaces.iter_mut() {
        let has_path = ns
            .path()
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty());
        if !has_path {
            continue;
        }
        let shared = match ns.typ() {
            LinuxNamespaceType::Ipc => Some("ipc"),
            LinuxNamespaceType::Uts => Some("uts"),
            LinuxNamespaceType::Pid => Some("pid"),
            _ => None,
        };
        ns.set_path(shared.map(|name| Path::new(protocols::SANDBOX_NS_DIR).join(name)));
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec(namespaces: serde_json::Value, annotations: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "annotations": annotations,
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn paths_must_be_namespaces_of_their_type() {
        let ok = spec(
            serde_json::json!([{"type": "ipc", "path": "/proc/self/ns/ipc"},
                               {"type": "network", "path": "/proc/self/ns/net"}]),
            serde_json::json!({}),
        );
        check_paths(&ok).unwrap();
        let wrong = spec(
            serde_json::json!([{"type": "cgroup", "path": "/proc/self/ns/ipc"}]),
            serde_json::json!({}),
        );
        let e = check_paths(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("is a ipc namespace, not a cgroup namespace"),
            "{e}"
        );
        let file = spec(
            serde_json::json!([{"type": "uts", "path": "/proc/self/status"}]),
            serde_json::json!({}),
        );
        let e = check_paths(&file).unwrap_err().to_string();
        assert!(e.contains("is not a namespace"), "{e}");
        let gone = spec(
            serde_json::json!([{"type": "uts", "path": "/nonexistent/ns"}]),
            serde_json::json!({}),
        );
        let e = check_paths(&gone).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn host_namespaces_are_refused() {
        let own = serde_json::json!({});
        let host_net = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "pid"},
                {"type": "network", "path": "/proc/self/ns/net"}]),
            own.clone(),
        );
        let e = refuse_host_namespaces(&host_net).unwrap_err().to_string();
        assert!(e.contains("host's own namespace"), "{e}");
        let thread = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "pid"},
                {"type": "network", "path": format!("/proc/{}/task/{}/ns/net",
                    std::process::id(), std::process::id())}]),
            own.clone(),
        );
        assert!(refuse_host_namespaces(&thread).is_err());
        let no_ipc = spec(
            serde_json::json!([{"type": "network"}, {"type": "pid"}]),
            own.clone(),
        );
        let e = refuse_host_namespaces(&no_ipc).unwrap_err().to_string();
        assert!(e.contains("host IPC"), "{e}");
        let no_net = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "pid"}]),
            own.clone(),
        );
        let e = refuse_host_namespaces(&no_net).unwrap_err().to_string();
        assert!(e.contains("host networking"), "{e}");
        let no_pid = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "network"}]),
            own.clone(),
        );
        let e = refuse_host_namespaces(&no_pid).unwrap_err().to_string();
        assert!(e.contains("host PID"), "{e}");
        let e = refuse_host_pid(&no_pid).unwrap_err().to_string();
        assert!(e.contains("host PID"), "{e}");
        refuse_host_pid(&host_net).unwrap();
        let host_pid = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "network"},
                {"type": "pid", "path": "/proc/self/ns/pid"}]),
            own.clone(),
        );
        let e = refuse_host_namespaces(&host_pid).unwrap_err().to_string();
        assert!(e.contains("host's own namespace (host PID)"), "{e}");
        let crio = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "network"}]),
            serde_json::json!({CRIO_HOST_NETWORK: "true"}),
        );
        let e = refuse_host_namespaces(&crio).unwrap_err().to_string();
        assert!(e.contains("HostNetwork"), "{e}");
        let fine = spec(
            serde_json::json!([{"type": "ipc"}, {"type": "network"}, {"type": "pid"}]),
            serde_json::json!({CRIO_HOST_NETWORK: "false"}),
        );
        refuse_host_namespaces(&fine).unwrap();
    }

    #[test]
    fn proc_pid_paths() {
        assert_eq!(proc_pid_of(Path::new("/proc/42/ns/net")), Some(42));
        assert_eq!(proc_pid_of(Path::new("/proc/self/ns/net")), None);
        assert_eq!(proc_pid_of(Path::new("/proc/42/ns")), None);
        assert_eq!(proc_pid_of(Path::new("/proc/42/task/43/ns/net")), None);
        assert_eq!(proc_pid_of(Path::new("/var/run/netns/cni-1")), None);
    }

    #[test]
    fn cri_namespace_paths_become_the_sandbox_ones() {
        let mut spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
                {"type":"ipc","path":"/proc/42/ns/ipc"},
                {"type":"uts","path":"/proc/42/ns/uts"},
                {"type":"network","path":"/var/run/netns/cni-1"},
                {"type":"pid"},
                {"type":"mount"}]}}"#,
        )
        .unwrap();
        share_sandbox_namespaces(&mut spec);
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let path = |i: usize| ns[i].path().clone();
        assert_eq!(
            path(0),
            Some(PathBuf::from("/run/kata-containers/sandbox/ns/ipc"))
        );
        assert_eq!(
            path(1),
            Some(PathBuf::from("/run/kata-containers/sandbox/ns/uts"))
        );
        assert_eq!(path(2), None);
        assert_eq!(path(3), None);
    }
}

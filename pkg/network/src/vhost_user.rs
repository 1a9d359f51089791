//! vhost-user NICs (Kata 1.x's convention): a vhost-user switch such as OVS-DPDK serving an
//! interface of the pod leaves its socket at `<base>/vhostuser_<IP>/vhu.sock`, `<base>` being
//! `/tmp`, for one of the interface's addresses. Such an interface is not bridged through a
//! tap: QEMU connects to the socket (`-netdev vhost-user`) with guest memory shared.
//! Untested here: this machine has no vhost-user backend.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::scan::Endpoint;

/// Where Kata looked for vhost-user sockets.
pub const SOCKET_BASE: &str = "/tmp";

/// The vhost-user socket serving `endpoint`, if any of its addresses has one under `base`.
pub fn socket_for(base: &Path, endpoint: &Endpoint) -> Option<PathBuf> {
    endpoint.addresses.iter().find_map(|a| {
        let path = base
            .join(format!("vhostuser_{}", a.address))
            .join("vhu.sock");
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_socket().then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{IpNet, LinkKind};

    #[test]
    fn finds_the_socket_of_one_of_the_addresses() {
        let base = tempfile::tempdir().unwrap();
        let mut e = Endpoint {
            name: "eth0".into(),
            index: 2,
            mac: "02:00:00:00:00:02".into(),
            mtu: 1500,
            addresses: vec![
                IpNet {
                    address: "10.0.0.2".parse().unwrap(),
                    prefix_len: 24,
                },
                IpNet {
                    address: "10.0.1.2".parse().unwrap(),
                    prefix_len: 24,
                },
            ],
            routes: vec![],
            kind: LinkKind::Veth,
            noarp: false,
            neighbors: vec![],
        };
        assert_eq!(socket_for(base.path(), &e), None);
        let dir = base.path().join("vhostuser_10.0.1.2");
        std::fs::create_dir(&dir).unwrap();
        // A regular file is not a socket.
        std::fs::write(dir.join("vhu.sock"), b"").unwrap();
        assert_eq!(socket_for(base.path(), &e), None);
        std::fs::remove_file(dir.join("vhu.sock")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.join("vhu.sock")).unwrap();
        assert_eq!(socket_for(base.path(), &e), Some(dir.join("vhu.sock")));
        e.addresses.remove(1);
        assert_eq!(socket_for(base.path(), &e), None);
    }
}

//! Test namespaces: a "pod" namespace with a veth whose peer sits in a second namespace with
//! an address, as a CNI plugin leaves them. Only documentation addresses (192.0.2.0/24,
//! 2001:db8::/32), no traffic is sent. Each namespace is deleted by a Drop guard, so a failing
//! test leaves nothing behind.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const POD_IP: &str = "192.0.2.2";
pub const PEER_IP: &str = "192.0.2.1";
pub const POD_IP6: &str = "2001:db8:7::2";
pub const PEER_IP6: &str = "2001:db8:7::1";
pub const POD_MTU: u32 = 1400;

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "kt-{tag}-{}-{}-{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos & 0xffff
        );
        run(&["ip", "netns", "add", &name]);
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `args` inside the namespace; panics on failure; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod namespace with `eth0` (MTU 1400, IPv4 and IPv6 addresses, default routes) whose
/// peer `p0` is in `peer`, plus a down veth pair `spare0`/`spare1` without addresses (must be skipped).
pub struct Pod {
    pub pod: Netns,
    pub peer: Netns,
}

impl Pod {
    pub fn new(tag: &str) -> Pod {
        let pod = Netns::new(tag);
        let peer = Netns::new(&format!("{tag}p"));
        for ns in [&pod, &peer] {
            // No duplicate address detection: restored IPv6 addresses are at once usable,
            // and `ip addr` shows no "tentative" to compare.
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
            ns.exec(&["ip", "link", "set", "lo", "up"]);
        }
        pod.exec(&[
            "ip", "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "p0",
            "mtu", "1400", "netns", &peer.name,
        ]);
        pod.exec(&[
            "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
        ]);
        pod.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{POD_IP}/24"),
            "brd",
            "+",
            "dev",
            "eth0",
        ]);
        pod.exec(&["ip", "addr", "add", &format!("{POD_IP6}/64"), "dev", "eth0"]);
        pod.exec(&["ip", "link", "set", "eth0", "up"]);
        pod.exec(&["ip", "route", "add", "default", "via", PEER_IP]);
        pod.exec(&["ip", "-6", "route", "add", "default", "via", PEER_IP6]);
        peer.exec(&["ip", "addr", "add", &format!("{PEER_IP}/24"), "dev", "p0"]);
        peer.exec(&["ip", "addr", "add", &format!("{PEER_IP6}/64"), "dev", "p0"]);
        peer.exec(&["ip", "link", "set", "p0", "up"]);
        Pod { pod, peer }
    }

    /// `ip -j link show eth0` in the pod namespace, as JSON.
    pub fn link_json(&self, dev: &str) -> serde_json::Value {
        let out = self.pod.exec(&["ip", "-j", "-d", "link", "show", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0].clone()
    }

    pub fn mac(&self, dev: &str) -> String {
        self.link_json(dev)["address"]
            .as_str()
            .expect("address")
            .to_string()
    }

    /// Everything `disconnect` must leave as it was: links in detail, addresses, routes,
    /// qdiscs, ingress filters of every link.
    pub fn snapshot(&self) -> String {
        let ns = &self.pod;
        let mut out = String::new();
        for args in [
            &["ip", "-d", "link", "show"][..],
            &["ip", "addr", "show"],
            &["ip", "route", "show"],
            &["ip", "-6", "route", "show"],
            &["ip", "route", "show", "table", "all"],
            &["tc", "qdisc", "show"],
        ] {
            out.push_str(&format!("$ {}\n", args.join(" ")));
            out.push_str(&ns.exec(args));
        }
        let links: serde_json::Value =
            serde_json::from_str(&ns.exec(&["ip", "-j", "link", "show"])).expect("json");
        for link in links.as_array().expect("array") {
            let name = link["ifname"].as_str().expect("ifname");
            out.push_str(&format!("$ tc filter show dev {name} ingress\n"));
            out.push_str(&ns.exec(&["tc", "filter", "show", "dev", name, "ingress"]));
        }
        out
    }
}

/// The calling thread's network namespace (to check it never changes).
pub fn own_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .expect("readlink")
        .display()
        .to_string()
}

/// A line-by-line diff to make a failed comparison readable.
pub fn assert_same(before: &str, after: &str) {
    if before != after {
        let b: Vec<&str> = before.lines().collect();
        let a: Vec<&str> = after.lines().collect();
        let mut msg = String::from("namespace changed:\n");
        for line in &b {
            if !a.contains(line) {
                msg.push_str(&format!("- {line}\n"));
            }
        }
        for line in &a {
            if !b.contains(line) {
                msg.push_str(&format!("+ {line}\n"));
            }
        }
        panic!("{msg}\nbefore:\n{before}\nafter:\n{after}");
    }
}

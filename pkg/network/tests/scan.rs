//! `scan` against real namespaces (root needed, as for every test of this crate).

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::*;
use network::{Family, LinkKind, ScanError};

#[test]
fn finds_exactly_the_veth_with_its_config() {
    let pod = Pod::new("scan");
    let thread_ns = own_netns();
    let endpoints = network::scan(&pod.pod.path()).expect("scan");
    assert_eq!(
        own_netns(),
        thread_ns,
        "the calling thread changed namespace"
    );

    assert_eq!(endpoints.len(), 1, "{endpoints:#?}");
    let eth0 = &endpoints[0];
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.kind, LinkKind::Veth);
    assert_eq!(eth0.mtu, POD_MTU);
    assert_eq!(eth0.mac, pod.mac("eth0"));
    assert_eq!(
        u64::from(eth0.index),
        pod.link_json("eth0")["ifindex"].as_u64().expect("ifindex")
    );
    assert!(!eth0.noarp);

    let addrs: Vec<String> = eth0.addresses.iter().map(|a| a.to_string()).collect();
    assert!(addrs.contains(&format!("{POD_IP}/24")), "{addrs:?}");
    assert!(addrs.contains(&format!("{POD_IP6}/64")), "{addrs:?}");
    assert!(
        addrs
            .iter()
            .any(|a| a.starts_with("fe80::") && a.ends_with("/64")),
        "IPv6 link-local listed too: {addrs:?}"
    );

    let peer: IpAddr = PEER_IP.parse().expect("ip");
    let peer6: IpAddr = PEER_IP6.parse().expect("ip");
    let default4 = eth0
        .routes
        .iter()
        .find(|r| r.family == Family::Ipv4 && r.destination.is_none())
        .unwrap_or_else(|| panic!("no IPv4 default route: {:#?}", eth0.routes));
    assert_eq!(default4.gateway, Some(peer));
    assert_eq!(default4.device, "eth0");
    assert_eq!(default4.scope, 0);
    let subnet = eth0
        .routes
        .iter()
        .find(|r| r.destination.map(|d| d.to_string()) == Some("192.0.2.0/24".into()))
        .unwrap_or_else(|| panic!("no subnet route: {:#?}", eth0.routes));
    assert_eq!(subnet.source, Some(POD_IP.parse().expect("ip")));
    assert_eq!(subnet.scope, 253, "scope link");
    assert_eq!(subnet.protocol, network::Route::PROTOCOL_KERNEL);
    assert!(
        eth0.routes.iter().any(|r| r.family == Family::Ipv6
            && r.destination.is_none()
            && r.gateway == Some(peer6)),
        "no IPv6 default route: {:#?}",
        eth0.routes
    );
    // Nothing of the local table (broadcast, local addresses) is listed.
    assert!(eth0
        .routes
        .iter()
        .all(|r| r.destination.map(|d| d.address) != Some(POD_IP.parse().expect("ip"))));

    // It round-trips through the sandbox record.
    let json = serde_json::to_string(&endpoints).expect("json");
    let back: Vec<network::Endpoint> = serde_json::from_str(&json).expect("back");
    assert_eq!(back, endpoints);
}

#[test]
fn proc_pid_ns_net_path_works_too() {
    let pod = Pod::new("scanproc");
    // A process living in the namespace; its /proc/<pid>/ns/net names it.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.pod.name, "sleep", "30"])
        .spawn()
        .expect("spawn sleep");
    let path = format!("/proc/{}/ns/net", child.id());
    // `ip netns exec` enters the namespace before exec'ing sleep: wait for that.
    let target = std::fs::metadata(pod.pod.path()).expect("stat netns");
    for _ in 0..100 {
        if let Ok(m) = std::fs::metadata(&path) {
            use std::os::unix::fs::MetadataExt;
            if m.ino() == target.ino() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let result = network::scan(Path::new(&path));
    let _ = child.kill();
    let _ = child.wait();
    let endpoints = result.expect("scan via /proc");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].name, "eth0");
}

#[test]
fn missing_namespace_is_a_clear_error() {
    let path = Path::new("/var/run/netns/kt-does-not-exist");
    let err = network::scan(path).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "network namespace /var/run/netns/kt-does-not-exist does not exist"
    );
}

#[test]
fn namespace_with_only_lo_has_no_usable_interface() {
    let ns = Netns::new("empty");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    // A link without addresses does not count either.
    ns.exec(&[
        "ip", "link", "add", "spare0", "type", "veth", "peer", "name", "spare1",
    ]);
    let err = network::scan(&ns.path()).expect_err("empty");
    assert!(matches!(
        err,
        network::Error::Scan(ScanError::NoUsableInterface(_))
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "no usable interface in {} (only loopback or interfaces without addresses)",
            ns.path().display()
        )
    );
}

#[test]
fn a_file_that_is_not_a_network_namespace() {
    let err = network::scan(Path::new("/proc/self/ns/mnt")).expect_err("not netns");
    assert_eq!(
        err.to_string(),
        "/proc/self/ns/mnt is not a network namespace"
    );
    let err = network::scan(Path::new("/etc/hostname")).expect_err("not netns");
    assert_eq!(err.to_string(), "/etc/hostname is not a network namespace");
}

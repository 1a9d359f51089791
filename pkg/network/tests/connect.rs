//! `connect` / `disconnect` against real namespaces: what each model builds, and that the
//! namespace is exactly as before once disconnected (root needed; no VM, no traffic).

mod common;

use std::path::Path;

use common::*;
use network::{ConnectError, Endpoint, Model, TapPair};

fn eth0(pod: &Pod) -> Endpoint {
    let mut endpoints = network::scan(&pod.pod.path()).expect("scan");
    assert_eq!(endpoints.len(), 1);
    endpoints.remove(0)
}

/// `disconnect` as `delete` will call it: from the record saved by `create`.
fn disconnect_from_record(pod: &Pod, pair: &TapPair) {
    let json = serde_json::to_string(pair).expect("json");
    let pair: TapPair = serde_json::from_str(&json).expect("record");
    network::disconnect(&pod.pod.path(), &pair).expect("disconnect");
}

#[test]
fn tcfilter_redirects_both_ways_and_disconnect_restores() {
    let pod = Pod::new("tcf");
    let endpoint = eth0(&pod);
    let before = pod.snapshot();
    let thread_ns = own_netns();

    let pair = network::connect(&pod.pod.path(), &endpoint, Model::TcFilter).expect("connect");
    assert_eq!(
        own_netns(),
        thread_ns,
        "the calling thread changed namespace"
    );
    assert_eq!(pair.model, Model::TcFilter);
    assert_eq!(pair.tap, "tap0_kata");
    assert_eq!(pair.endpoint, "eth0");
    assert_eq!(pair.mac, endpoint.mac, "the guest gets the veth's MAC");
    assert_eq!(pair.mtu, POD_MTU);
    assert_eq!(pair.device, None);

    let tap = pod.link_json("tap0_kata");
    assert_eq!(tap["mtu"].as_u64(), Some(u64::from(POD_MTU)));
    assert_eq!(tap["linkinfo"]["info_kind"].as_str(), Some("tun"));
    assert_eq!(tap["linkinfo"]["info_data"]["type"].as_str(), Some("tap"));
    assert_eq!(tap["linkinfo"]["info_data"]["pi"].as_bool(), Some(false));
    assert_eq!(
        tap["linkinfo"]["info_data"]["multi_queue"].as_bool(),
        Some(false)
    );
    assert_eq!(
        tap["linkinfo"]["info_data"]["persist"].as_bool(),
        Some(true)
    );
    assert!(tap["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .any(|f| f == "UP"));
    assert_eq!(
        u64::from(pair.tap_index),
        tap["ifindex"].as_u64().expect("ifindex")
    );
    let detail = pod.pod.exec(&["ip", "-d", "link", "show", "tap0_kata"]);
    assert!(detail.contains("addrgenmode none"), "{detail}");

    let qdiscs = pod.pod.exec(&["tc", "qdisc", "show", "dev", "eth0"]);
    assert!(qdiscs.contains("qdisc ingress ffff:"), "{qdiscs}");
    let qdiscs = pod.pod.exec(&["tc", "qdisc", "show", "dev", "tap0_kata"]);
    assert!(qdiscs.contains("qdisc ingress ffff:"), "{qdiscs}");
    let filters = pod
        .pod
        .exec(&["tc", "-s", "filter", "show", "dev", "eth0", "ingress"]);
    assert!(filters.contains("protocol all"), "{filters}");
    assert!(
        filters.contains("match 00000000/00000000 at 0"),
        "{filters}"
    );
    assert!(
        filters.contains("mirred (Egress Redirect to device tap0_kata) stolen"),
        "{filters}"
    );
    let filters = pod
        .pod
        .exec(&["tc", "-s", "filter", "show", "dev", "tap0_kata", "ingress"]);
    assert!(
        filters.contains("mirred (Egress Redirect to device eth0) stolen"),
        "{filters}"
    );
    // tcfilter leaves the veth's own configuration alone.
    assert_eq!(pod.mac("eth0"), endpoint.mac);
    let addrs = pod.pod.exec(&["ip", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {POD_IP}/24")), "{addrs}");

    disconnect_from_record(&pod, &pair);
    assert_same(&before, &pod.snapshot());
    // Twice is harmless (delete retried after a crash).
    network::disconnect(&pod.pod.path(), &pair).expect("second disconnect");
    assert_same(&before, &pod.snapshot());
}

#[test]
fn tcfilter_keeps_an_existing_ingress_qdisc_and_its_filters() {
    let pod = Pod::new("tcfq");
    let endpoint = eth0(&pod);
    pod.pod
        .exec(&["tc", "qdisc", "add", "dev", "eth0", "ingress"]);
    pod.pod.exec(&[
        "tc",
        "filter",
        "add",
        "dev",
        "eth0",
        "parent",
        "ffff:",
        "protocol",
        "ip",
        "pref",
        "49152",
        "u32",
        "match",
        "ip",
        "dst",
        "192.0.2.99/32",
        "flowid",
        "ffff:1",
    ]);
    let before = pod.snapshot();

    let pair = network::connect(&pod.pod.path(), &endpoint, Model::TcFilter).expect("connect");
    assert!(!pair.undo.endpoint_ingress_created);
    assert_eq!(pair.undo.endpoint_filter_priority, Some(49151));
    let filters = pod
        .pod
        .exec(&["tc", "filter", "show", "dev", "eth0", "ingress"]);
    assert!(filters.contains("pref 49152"), "{filters}");
    assert!(filters.contains("pref 49151"), "{filters}");

    disconnect_from_record(&pod, &pair);
    assert_same(&before, &pod.snapshot());
}

#[test]
fn second_interface_gets_the_next_tap_name() {
    let pod = Pod::new("two");
    let endpoint = eth0(&pod);
    let before = pod.snapshot();
    let first = network::connect(&pod.pod.path(), &endpoint, Model::TcFilter).expect("first");
    let second = network::connect(&pod.pod.path(), &endpoint, Model::TcFilter).expect("second");
    assert_eq!(first.tap, "tap0_kata");
    assert_eq!(second.tap, "tap1_kata");
    network::disconnect(&pod.pod.path(), &second).expect("disconnect second");
    network::disconnect(&pod.pod.path(), &first).expect("disconnect first");
    assert_same(&before, &pod.snapshot());
}

#[test]
fn macvtap_takes_the_mac_and_disconnect_restores_addresses_and_routes() {
    let pod = Pod::new("mvt");
    let endpoint = eth0(&pod);
    let before = pod.snapshot();

    let pair = network::connect(&pod.pod.path(), &endpoint, Model::MacVtap).expect("connect");
    assert_eq!(pair.model, Model::MacVtap);
    assert_eq!(pair.tap, "tap0_kata");
    assert_eq!(pair.mac, endpoint.mac);
    assert!(pair.tap_index >= 8192, "index {}", pair.tap_index);
    let device = pair.device.clone().expect("macvtap device");
    assert_eq!(device, Path::new(&format!("/dev/tap{}", pair.tap_index)));
    assert!(device.exists(), "{} missing", device.display());

    let tap = pod.link_json("tap0_kata");
    assert_eq!(tap["linkinfo"]["info_kind"].as_str(), Some("macvtap"));
    assert_eq!(
        tap["linkinfo"]["info_data"]["mode"].as_str(),
        Some("bridge")
    );
    assert_eq!(tap["link"].as_str(), Some("eth0"));
    assert_eq!(tap["address"].as_str(), Some(endpoint.mac.as_str()));
    assert_eq!(tap["mtu"].as_u64(), Some(u64::from(POD_MTU)));
    let detail = pod.pod.exec(&["ip", "-d", "link", "show", "tap0_kata"]);
    assert!(
        detail.contains("addrgenmode none"),
        "no link-local twin of the guest's: {detail}"
    );
    // The veth is moved aside: another MAC, no addresses but its IPv6 link-local.
    assert_ne!(pod.mac("eth0"), endpoint.mac);
    let addrs = pod.pod.exec(&["ip", "addr", "show", "dev", "eth0"]);
    assert!(!addrs.contains("inet "), "{addrs}");
    assert!(!addrs.contains(POD_IP6), "{addrs}");
    assert!(addrs.contains("inet6 fe80::"), "{addrs}");
    assert!(!pair.undo.routes.is_empty());
    assert_eq!(pair.undo.removed_addresses.len(), 2);

    disconnect_from_record(&pod, &pair);
    assert!(!device.exists(), "{} left behind", device.display());
    assert_same(&before, &pod.snapshot());
}

#[test]
fn bridged_puts_tap_and_veth_in_a_bridge_and_disconnect_restores() {
    let pod = Pod::new("brg");
    let endpoint = eth0(&pod);
    let before = pod.snapshot();

    let pair = network::connect(&pod.pod.path(), &endpoint, Model::Bridged).expect("connect");
    assert_eq!(pair.bridge.as_deref(), Some("br0_kata"));
    assert_eq!(pair.mac, endpoint.mac);
    let members = pod.pod.exec(&["ip", "link", "show", "master", "br0_kata"]);
    assert!(members.contains("tap0_kata"), "{members}");
    assert!(members.contains("eth0"), "{members}");
    assert_ne!(pod.mac("eth0"), endpoint.mac);
    let addrs = pod.pod.exec(&["ip", "addr", "show", "dev", "eth0"]);
    assert!(!addrs.contains("inet "), "{addrs}");
    let bridge = pod.link_json("br0_kata");
    assert_eq!(bridge["linkinfo"]["info_kind"].as_str(), Some("bridge"));
    assert_eq!(bridge["mtu"].as_u64(), Some(u64::from(POD_MTU)));

    disconnect_from_record(&pod, &pair);
    assert_same(&before, &pod.snapshot());
}

#[test]
fn a_failing_connect_leaves_nothing_behind() {
    let pod = Pod::new("fail");
    let endpoint = eth0(&pod);
    // clsact holds the ingress hook: adding an ingress qdisc fails after the tap exists.
    pod.pod
        .exec(&["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    let before = pod.snapshot();
    let err = network::connect(&pod.pod.path(), &endpoint, Model::TcFilter)
        .expect_err("clsact in the way");
    assert!(
        err.to_string().contains("adding the ingress qdisc"),
        "{err}"
    );
    assert_same(&before, &pod.snapshot());
}

#[test]
fn bad_input_is_refused_clearly() {
    let pod = Pod::new("bad");
    let endpoint = eth0(&pod);
    let before = pod.snapshot();

    let err = "foo".parse::<Model>().expect_err("unknown model");
    assert_eq!(
        err.to_string(),
        "unknown network model \"foo\" (expected tcfilter, macvtap, bridged or none)"
    );

    let err = network::connect(&pod.pod.path(), &endpoint, Model::None).expect_err("none");
    assert!(matches!(
        err,
        network::Error::Connect(ConnectError::NoneModel)
    ));

    let missing = Path::new("/var/run/netns/kt-does-not-exist");
    let err = network::connect(missing, &endpoint, Model::TcFilter).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "network namespace /var/run/netns/kt-does-not-exist does not exist"
    );

    let mut ghost = endpoint.clone();
    ghost.name = "eth9".into();
    let err = network::connect(&pod.pod.path(), &ghost, Model::TcFilter).expect_err("ghost");
    assert_eq!(
        err.to_string(),
        format!("no interface eth9 in {}", pod.pod.path().display())
    );

    let mut nic = endpoint.clone();
    nic.kind = network::LinkKind::Physical {
        pci_address: "0000:3b:00.1".into(),
        driver: "ixgbevf".into(),
    };
    let err = network::connect(&pod.pod.path(), &nic, Model::TcFilter).expect_err("pci");
    assert!(err.to_string().contains("VFIO"), "{err}");

    assert_same(&before, &pod.snapshot());
}

#[test]
fn disconnect_of_a_deleted_namespace_is_a_no_op() {
    let pair = {
        let pod = Pod::new("gone");
        let endpoint = eth0(&pod);
        network::connect(&pod.pod.path(), &endpoint, Model::TcFilter).expect("connect")
        // the namespaces are deleted here
    };
    network::disconnect(Path::new("/var/run/netns/kt-gone-already"), &pair)
        .expect("nothing to undo");
}

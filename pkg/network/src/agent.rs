//! The agent protocol's network messages (Kata 1.x's `Interface`, `Route`, `ARPNeighbor`) to
//! and from this crate's types: the runtime builds them from a scan, the agent reads them.
//! Everything coming from the other side of the VM boundary is checked here.

use std::net::IpAddr;

use protocols::agent as pb;
use protocols::agent::ipaddress::IPFamily;

use crate::guest::{Interface, Neighbor};
use crate::scan::{Endpoint, Family, IpNet, Route};

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("interface {name:?}: bad address {address:?}/{mask:?}")]
    Address {
        name: String,
        address: String,
        mask: String,
    },
    #[error("interface name {0:?} is not a valid Linux interface name")]
    Name(String),
    #[error("route {dest:?} via {gateway:?} dev {device:?}: {problem}")]
    Route {
        dest: String,
        gateway: String,
        device: String,
        problem: &'static str,
    },
    #[error("neighbour {address:?} dev {device:?}: {problem}")]
    Neighbor {
        address: String,
        device: String,
        problem: &'static str,
    },
}

/// `IFF_NOARP` in `raw_flags`.
const IFF_NOARP: u32 = 0x80;
/// `RTPROT_BOOT`: what `ip route add` gives a route; the guest's copies are static ones.
const RTPROT_BOOT: u8 = 3;

/// The guest NIC an endpoint of the pod's namespace becomes.
pub fn endpoint_interface(e: &Endpoint) -> Interface {
    Interface {
        name: e.name.clone(),
        mac: e.mac.clone(),
        mtu: e.mtu,
        addresses: e.addresses.clone(),
        noarp: e.noarp,
    }
}

pub fn interface_to_proto(i: &Interface) -> pb::Interface {
    let mut p = pb::Interface::new();
    p.device = i.name.clone();
    p.name = i.name.clone();
    p.mtu = u64::from(i.mtu);
    p.hwAddr = i.mac.clone();
    p.raw_flags = if i.noarp { IFF_NOARP } else { 0 };
    p.IPAddresses = i
        .addresses
        .iter()
        .map(|a| {
            let mut ip = pb::IPAddress::new();
            ip.family = match a.address {
                IpAddr::V4(_) => IPFamily::v4,
                IpAddr::V6(_) => IPFamily::v6,
            }
            .into();
            ip.address = a.address.to_string();
            ip.mask = a.prefix_len.to_string();
            ip
        })
        .collect();
    p
}

/// A valid Linux interface name: 1-15 bytes, no '/', ':', whitespace (dev_valid_name).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

pub fn interface_from_proto(p: &pb::Interface) -> Result<Interface, ProtoError> {
    let name = if p.name.is_empty() {
        &p.device
    } else {
        &p.name
    };
    if !valid_ifname(name) {
        return Err(ProtoError::Name(name.clone()));
    }
    let addresses = p
        .IPAddresses
        .iter()
        .map(|a| {
            let bad = || ProtoError::Address {
                name: name.clone(),
                address: a.address.clone(),
                mask: a.mask.clone(),
            };
            let address: IpAddr = a.address.parse().map_err(|_| bad())?;
            let prefix_len: u8 = a.mask.parse().map_err(|_| bad())?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix_len > max {
                return Err(bad());
            }
            Ok(IpNet {
                address,
                prefix_len,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Interface {
        name: name.clone(),
        mac: p.hwAddr.to_ascii_lowercase(),
        mtu: u32::try_from(p.mtu).unwrap_or(0),
        addresses,
        noarp: p.raw_flags & IFF_NOARP != 0,
    })
}

pub fn route_to_proto(r: &Route) -> pb::Route {
    let mut p = pb::Route::new();
    p.dest = r.destination.map(|d| d.to_string()).unwrap_or_default();
    p.gateway = r.gateway.map(|g| g.to_string()).unwrap_or_default();
    p.device = r.device.clone();
    p.source = r.source.map(|s| s.to_string()).unwrap_or_default();
    p.scope = u32::from(r.scope);
    p
}

pub fn route_from_proto(p: &pb::Route) -> Result<Route, ProtoError> {
    let bad = |problem| ProtoError::Route {
        dest: p.dest.clone(),
        gateway: p.gateway.clone(),
        device: p.device.clone(),
        problem,
    };
    if !valid_ifname(&p.device) {
        return Err(bad("bad device name"));
    }
    let destination = match p.dest.as_str() {
        "" | "default" => None,
        text => {
            let (addr, len) = text.split_once('/').unwrap_or((text, ""));
            let address: IpAddr = addr.parse().map_err(|_| bad("bad destination"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix_len = if len.is_empty() {
                max
            } else {
                len.parse().map_err(|_| bad("bad prefix length"))?
            };
            if prefix_len > max {
                return Err(bad("bad prefix length"));
            }
            Some(IpNet {
                address,
                prefix_len,
            })
        }
    };
    let ip = |text: &str, what| -> Result<Option<IpAddr>, ProtoError> {
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse().map(Some).map_err(|_| bad(what))
        }
    };
    let gateway = ip(&p.gateway, "bad gateway")?;
    let source = ip(&p.source, "bad source")?;
    let v6 = [destination.map(|d| d.address), gateway, source]
        .into_iter()
        .flatten()
        .map(|a| a.is_ipv6())
        .collect::<Vec<_>>();
    if v6.windows(2).any(|w| w[0] != w[1]) {
        return Err(bad("mixes IPv4 and IPv6"));
    }
    Ok(Route {
        family: if v6.first().copied().unwrap_or(false) {
            Family::Ipv6
        } else {
            Family::Ipv4
        },
        destination,
        gateway,
        device: p.device.clone(),
        source,
        scope: u8::try_from(p.scope).map_err(|_| bad("bad scope"))?,
        protocol: RTPROT_BOOT,
        metric: None,
        onlink: false,
    })
}

pub fn neighbor_to_proto(n: &Neighbor) -> pb::ARPNeighbor {
    let mut p = pb::ARPNeighbor::new();
    let mut ip = pb::IPAddress::new();
    ip.family = if n.address.is_ipv4() {
        IPFamily::v4
    } else {
        IPFamily::v6
    }
    .into();
    ip.address = n.address.to_string();
    p.toIPAddress = Some(ip).into();
    p.device = n.device.clone();
    p.lladdr = n.lladdr.clone();
    p.state = i32::from(n.state);
    p.flags = i32::from(n.flags);
    p
}

pub fn neighbor_from_proto(p: &pb::ARPNeighbor) -> Result<Neighbor, ProtoError> {
    let text = p
        .toIPAddress
        .as_ref()
        .map(|a| a.address.clone())
        .unwrap_or_default();
    let bad = |problem| ProtoError::Neighbor {
        address: text.clone(),
        device: p.device.clone(),
        problem,
    };
    if !valid_ifname(&p.device) {
        return Err(bad("bad device name"));
    }
    Ok(Neighbor {
        address: text.parse().map_err(|_| bad("bad address"))?,
        device: p.device.clone(),
        lladdr: p.lladdr.clone(),
        state: u16::try_from(p.state).map_err(|_| bad("bad state"))?,
        flags: u8::try_from(p.flags).map_err(|_| bad("bad flags"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface() -> Interface {
        Interface {
            name: "eth0".into(),
            mac: "02:42:0a:c8:01:02".into(),
            mtu: 1450,
            addresses: vec![
                IpNet {
                    address: "10.200.1.2".parse().unwrap(),
                    prefix_len: 24,
                },
                IpNet {
                    address: "fd00::2".parse().unwrap(),
                    prefix_len: 64,
                },
            ],
            noarp: true,
        }
    }

    #[test]
    fn interface_round_trip() {
        let p = interface_to_proto(&iface());
        assert_eq!(p.IPAddresses[0].mask, "24");
        assert_eq!(p.raw_flags, IFF_NOARP);
        assert_eq!(interface_from_proto(&p).unwrap(), iface());
    }

    #[test]
    fn hostile_interfaces_are_refused() {
        let mut p = interface_to_proto(&iface());
        p.name = "../eth0".into();
        assert!(interface_from_proto(&p).is_err());
        let mut p = interface_to_proto(&iface());
        p.IPAddresses[0].mask = "33".into();
        assert!(interface_from_proto(&p).is_err());
        let mut p = interface_to_proto(&iface());
        p.IPAddresses[1].address = "not-an-ip".into();
        assert!(interface_from_proto(&p).is_err());
    }

    #[test]
    fn routes_round_trip_and_checks() {
        let r = Route {
            family: Family::Ipv4,
            destination: None,
            gateway: Some("10.200.1.1".parse().unwrap()),
            device: "eth0".into(),
            source: None,
            scope: 0,
            protocol: RTPROT_BOOT,
            metric: None,
            onlink: false,
        };
        assert_eq!(route_from_proto(&route_to_proto(&r)).unwrap(), r);
        let mut net = r.clone();
        net.destination = Some(IpNet {
            address: "192.168.5.0".parse().unwrap(),
            prefix_len: 24,
        });
        net.gateway = None;
        net.scope = 253;
        let p = route_to_proto(&net);
        assert_eq!(p.dest, "192.168.5.0/24");
        assert_eq!(route_from_proto(&p).unwrap(), net);

        let mut p = route_to_proto(&r);
        p.gateway = "fd00::1".into();
        p.dest = "10.0.0.0/8".into();
        assert!(route_from_proto(&p).is_err());
        p.dest = "10.0.0.0/40".into();
        assert!(route_from_proto(&p).is_err());
        let mut p = route_to_proto(&r);
        p.device = String::new();
        assert!(route_from_proto(&p).is_err());
    }

    #[test]
    fn neighbors_round_trip() {
        let n = Neighbor {
            address: "10.200.1.1".parse().unwrap(),
            device: "eth0".into(),
            lladdr: "02:00:00:00:00:01".into(),
            state: 0x80,
            flags: 0,
        };
        assert_eq!(neighbor_from_proto(&neighbor_to_proto(&n)).unwrap(), n);
    }
}

//! What the caller (a CNI plugin, podman, containerd CRI) put in the pod's network namespace:
//! its interfaces with their addresses and routes, as Kata 1.x's `createEndpointsFromScan`
//! read them (skip `lo` and links without addresses).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use serde::{Deserialize, Serialize};

use crate::netns::{self, NetnsError};
use crate::nl;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("listing {what} in {path}: {source}")]
    Netlink {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no usable interface in {0} (only loopback or interfaces without addresses)")]
    NoUsableInterface(PathBuf),
}

/// An interface of the pod's network namespace, as the VM must reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Interface name in the namespace (`eth0`); the guest NIC gets the same name.
    pub name: String,
    /// Interface index in the namespace (informative: names are what `connect` looks up).
    pub index: u32,
    /// `aa:bb:cc:dd:ee:ff`: the MAC the guest NIC must have.
    pub mac: String,
    pub mtu: u32,
    /// IPv4 and IPv6 addresses, IPv6 link-local included (as Kata listed them).
    pub addresses: Vec<IpNet>,
    /// The main-table unicast routes whose output device is this interface.
    pub routes: Vec<Route>,
    pub kind: LinkKind,
    /// The interface has `IFF_NOARP` (Kata passed it on in the guest interface's raw flags).
    #[serde(default)]
    pub noarp: bool,
    /// Static (`nud permanent`) neighbour entries on this interface: the guest gets them too.
    #[serde(default)]
    pub neighbors: Vec<crate::guest::Neighbor>,
}

/// An address with its prefix length, `10.88.0.2/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpNet {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// A route of the main table, in the terms the agent's UpdateRoutes takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub family: Family,
    /// `None` for the default route.
    pub destination: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// The output interface's name.
    pub device: String,
    /// Preferred source address (`src` in `ip route`).
    pub source: Option<IpAddr>,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
    /// `RTPROT_*`: 2 kernel (made by the kernel from an address: the guest kernel makes its
    /// own, Kata skipped them), 3 boot, 4 static...
    pub protocol: u8,
    /// Route metric (`RTA_PRIORITY`), when set.
    #[serde(default)]
    pub metric: Option<u32>,
    /// The gateway is declared on-link (`onlink`).
    #[serde(default)]
    pub onlink: bool,
}

impl Route {
    pub const PROTOCOL_KERNEL: u8 = 2;
}

/// What backs an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinkKind {
    /// One end of a veth pair (what CNI's bridge/ptp plugins, podman and Docker make).
    Veth,
    /// A NIC on a PCI bus (physical or an SR-IOV VF): the candidate for VFIO pass-through,
    /// never bridged through a tap.
    Physical {
        /// PCI address (`0000:3b:00.1`), from the driver's bus info.
        pci_address: String,
        driver: String,
    },
    /// Anything else, named by its netlink `IFLA_INFO_KIND` (`macvlan`, `ipvlan`, `tun`,
    /// `dummy`...; empty when the kernel reports none and no PCI bus is known).
    Other { kind: String },
}

/// Lists the usable interfaces of the network namespace at `netns_path`, sorted by name.
/// An empty namespace (only `lo`) is [`ScanError::NoUsableInterface`]: a caller for whom that is
/// normal (a namespace it just created) matches that variant.
pub fn scan(netns_path: &Path) -> Result<Vec<Endpoint>, ScanError> {
    let path = netns_path.to_path_buf();
    let endpoints = netns::with_netlink(netns_path, |mut handle| async move {
        let err = |what: &'static str| {
            let path = path.clone();
            move |source| ScanError::Netlink { what, path, source }
        };
        let links = nl::links(&mut handle).await.map_err(err("links"))?;
        let addresses = nl::addresses(&mut handle).await.map_err(err("addresses"))?;
        let routes = nl::routes(&mut handle).await.map_err(err("routes"))?;
        let neighbors = nl::neighbors(&mut handle)
            .await
            .map_err(err("neighbours"))?;
        let mut endpoints = endpoints_from(&links, &addresses, &routes);
        for e in &mut endpoints {
            e.neighbors = permanent_neighbors(&neighbors, e.index, &e.name);
        }
        Ok::<_, ScanError>(endpoints)
    })??;
    if endpoints.is_empty() {
        return Err(ScanError::NoUsableInterface(netns_path.to_path_buf()));
    }
    log::debug!(
        "scan {}: {}",
        netns_path.display(),
        endpoints
            .iter()
            .map(|e| format!("{} {} {:?}", e.name, e.mac, e.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(endpoints)
}

/// Builds the endpoints from the three dumps. Runs inside the namespace (the PCI check asks
/// the driver through a socket of that namespace).
fn endpoints_from(
    links: &[LinkMessage],
    addresses: &[AddressMessage],
    routes: &[RouteMessage],
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for link in links {
        let index = link.header.index;
        let Some(name) = nl::link_name(link) else {
            continue;
        };
        if link.header.flags.contains(LinkFlags::Loopback) || name == "lo" {
            continue;
        }
        let addrs: Vec<IpNet> = addresses
            .iter()
            .filter(|a| a.header.index == index)
            .filter_map(|a| {
                Some(IpNet {
                    address: nl::address_ip(a)?,
                    prefix_len: a.header.prefix_len,
                })
            })
            .collect();
        // Unconfigured links: base tunnel devices (gre0, sit0, tunl0...) or half-made ones.
        if addrs.is_empty() {
            continue;
        }
        let routes = routes
            .iter()
            .filter_map(|r| route_from(r, index, name))
            .collect();
        let kind = match nl::link_kind(link) {
            Some(kind) if kind == "veth" => LinkKind::Veth,
            other => match ethtool_driver_info(name) {
                Some((driver, bus)) if is_pci_address(&bus) => LinkKind::Physical {
                    pci_address: bus,
                    driver,
                },
                _ => LinkKind::Other {
                    kind: other.unwrap_or_default(),
                },
            },
        };
        endpoints.push(Endpoint {
            name: name.to_string(),
            index,
            mac: nl::link_mac(link).map(nl::format_mac).unwrap_or_default(),
            mtu: nl::link_mtu(link).unwrap_or(1500),
            addresses: addrs,
            routes,
            kind,
            noarp: link.header.flags.contains(LinkFlags::Noarp),
            neighbors: Vec::new(),
        });
    }
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    endpoints
}

/// The permanent neighbour entries of link `index` (named `device`).
fn permanent_neighbors(
    all: &[rtnetlink::packet_route::neighbour::NeighbourMessage],
    index: u32,
    device: &str,
) -> Vec<crate::guest::Neighbor> {
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourState,
    };
    all.iter()
        .filter(|n| n.header.ifindex == index && n.header.state == NeighbourState::Permanent)
        .filter_map(|n| {
            let mut address = None;
            let mut lladdr = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        address = Some(IpAddr::V4(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        address = Some(IpAddr::V6(*v6))
                    }
                    NeighbourAttribute::LinkLocalAddress(mac) if mac.len() == 6 => {
                        lladdr = Some(nl::format_mac(mac))
                    }
                    _ => {}
                }
            }
            Some(crate::guest::Neighbor {
                address: address?,
                device: device.to_string(),
                lladdr: lladdr?,
                state: u16::from(NeighbourState::Permanent),
                flags: n.header.flags.bits(),
            })
        })
        .collect()
}

/// The main-table unicast route `r` if its output device is link `index`.
pub(crate) fn route_from(r: &RouteMessage, index: u32, device: &str) -> Option<Route> {
    let h = &r.header;
    if h.kind != RouteType::Unicast || route_table(r) != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let oif = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    if oif != Some(index) {
        return None;
    }
    let family = match h.address_family {
        AddressFamily::Inet => Family::Ipv4,
        AddressFamily::Inet6 => Family::Ipv6,
        _ => return None,
    };
    let mut route = Route {
        family,
        destination: None,
        gateway: None,
        device: device.to_string(),
        source: None,
        scope: h.scope.into(),
        protocol: h.protocol.into(),
        metric: None,
        onlink: h.flags.contains(RouteFlags::Onlink),
    };
    for attr in &r.attributes {
        match attr {
            RouteAttribute::Destination(d) => {
                route.destination = nl::route_address(d).map(|address| IpNet {
                    address,
                    prefix_len: h.destination_prefix_length,
                });
            }
            RouteAttribute::Gateway(g) => route.gateway = nl::route_address(g),
            RouteAttribute::PrefSource(s) => route.source = nl::route_address(s),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            _ => {}
        }
    }
    Some(route)
}

/// The route's table: `RTA_TABLE` when present (tables above 255), else the header's.
pub(crate) fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// `dddd:bb:dd.f`, the form of a PCI bus info.
fn is_pci_address(bus: &str) -> bool {
    let parts: Vec<&str> = bus.split(':').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [domain, bus, devfn] => {
            let mut df = devfn.split('.');
            hex(domain, 4)
                && hex(bus, 2)
                && df.next().is_some_and(|d| hex(d, 2))
                && df.next().is_some_and(|f| f.len() == 1 && hex(f, 1))
                && df.next().is_none()
        }
        _ => false,
    }
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver name and bus info of interface `name` (`ethtool -i`), asked through a socket of
/// the current thread's network namespace.
///
/// This is how the namespace's own view is read: `/sys/class/net/<if>/device` would show the
/// namespace of whoever mounted `/sys` (the host's), not the one this thread entered, unless
/// a fresh sysfs were mounted in a private mount namespace.
fn ethtool_driver_info(name: &str) -> Option<(String, String)> {
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: an all-zero ifreq is valid; the name fits (checked above) with its NUL.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq and writes an ethtool_drvinfo into `info`, which
    // outlives the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            SIOCETHTOOL as _,
            &mut ifr,
        )
    };
    if rc < 0 {
        return None;
    }
    let text = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some((text(&info.driver), text(&info.bus_info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:3b:00.1"));
        assert!(is_pci_address("0000:00:1f.6"));
        assert!(!is_pci_address(""));
        assert!(!is_pci_address("N/A"));
        assert!(!is_pci_address("virtio0"));
        assert!(!is_pci_address("0000:3b:00"));
        assert!(!is_pci_address("0000:3b:00.12"));
        assert!(!is_pci_address("usb-0000:00:14.0-1"));
    }

    #[test]
    fn endpoint_json_round_trip() {
        let ep = Endpoint {
            name: "eth0".into(),
            index: 2,
            mac: "02:42:ac:11:00:02".into(),
            mtu: 1450,
            addresses: vec![IpNet {
                address: "10.88.0.2".parse().expect("ip"),
                prefix_len: 16,
            }],
            routes: vec![Route {
                family: Family::Ipv4,
                destination: None,
                gateway: Some("10.88.0.1".parse().expect("ip")),
                device: "eth0".into(),
                source: None,
                scope: 0,
                protocol: 4,
                metric: None,
                onlink: false,
            }],
            kind: LinkKind::Physical {
                pci_address: "0000:3b:00.1".into(),
                driver: "ixgbevf".into(),
            },
            noarp: false,
            neighbors: vec![],
        };
        let json = serde_json::to_string(&ep).expect("serialize");
        assert!(json.contains(r#""kind":{"type":"physical","pci_address":"0000:3b:00.1""#));
        let back: Endpoint = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, ep);
        assert_eq!(ep.addresses[0].to_string(), "10.88.0.2/16");
    }
}

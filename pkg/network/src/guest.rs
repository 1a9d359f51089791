//! The guest side: kata-agent makes the VM's NICs look like the pod's interfaces (name, MAC,
//! MTU, addresses), installs the pod's routes and static ARP neighbours, and lists what it has.
//!
//! Runs in the agent's own network namespace (the VM's), with the same rtnetlink helpers the
//! host side uses.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkUnspec};
use serde::{Deserialize, Serialize};

use crate::connect::{address_message, errno_in, main_routes, route_message, SavedAddress};
use crate::netns::{self, NetnsError};
use crate::nl;
use crate::scan::{IpNet, Route};

/// The agent's own namespace: entering it from a helper thread changes nothing.
const OWN_NETNS: &str = "/proc/self/ns/net";

#[derive(Debug, thiserror::Error)]
pub enum GuestNetError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("no network interface with MAC {mac} appeared within {waited:?} (is the virtio-net driver loaded?)")]
    NoSuchMac { mac: String, waited: Duration },
    #[error("bad MAC address {0:?}")]
    BadMac(String),
    #[error("route {route}: no interface {device}")]
    NoDevice { route: String, device: String },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: std::io::Error,
    },
}

fn nl_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestNetError {
    let what = what.into();
    move |source| GuestNetError::Netlink { what, source }
}

/// A guest interface as the pod's namespace had it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub addresses: Vec<IpNet>,
    /// `IFF_NOARP`.
    #[serde(default)]
    pub noarp: bool,
}

/// A static neighbour entry (`ip neigh add ... lladdr ... nud permanent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    pub address: IpAddr,
    pub device: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub lladdr: String,
    /// `NUD_*` (0: permanent).
    pub state: u16,
    /// `NTF_*`.
    pub flags: u8,
}

/// Gives the NIC with `want.mac` the name, MTU and addresses of `want` and sets it up. The NIC
/// may still be probing (driver loading, hot-plug): it is waited for up to `wait`.
pub fn update_interface(want: &Interface, wait: Duration) -> Result<Interface, GuestNetError> {
    let mac = nl::parse_mac(&want.mac).ok_or_else(|| GuestNetError::BadMac(want.mac.clone()))?;
    let started = Instant::now();
    let index = loop {
        let links = netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
            nl::links(&mut h).await
        })?
        .map_err(nl_err("listing links"))?;
        if let Some(l) = links
            .iter()
            .find(|l| nl::link_mac(l) == Some(mac.as_slice()))
        {
            break l.header.index;
        }
        if started.elapsed() >= wait {
            return Err(GuestNetError::NoSuchMac {
                mac: want.mac.clone(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let want2 = want.clone();
    netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
        configure(&mut h, index, &want2).await
    })??;
    list_interfaces()?
        .into_iter()
        .find(|i| i.mac.eq_ignore_ascii_case(&want.mac))
        .ok_or_else(|| GuestNetError::NoSuchMac {
            mac: want.mac.clone(),
            waited: wait,
        })
}

async fn configure(h: &mut Handle, index: u32, want: &Interface) -> Result<(), GuestNetError> {
    let name = &want.name;
    // Renaming and some MTU changes need the link down.
    set_link(h, LinkUnspec::new_with_index(index).down().build(), name).await?;
    let mut msg = LinkUnspec::new_with_index(index);
    if !want.name.is_empty() {
        msg = msg.name(want.name.clone());
    }
    if want.mtu > 0 {
        msg = msg.mtu(want.mtu);
    }
    set_link(h, msg.arp(!want.noarp).build(), name).await?;
    // The pod's addresses replace whatever the guest has (an IPv6 link-local made from the same
    // MAC is the same address: EEXIST is fine).
    let present: Vec<AddressMessage> = nl::addresses(h)
        .await
        .map_err(nl_err("listing addresses"))?
        .into_iter()
        .filter(|a| a.header.index == index)
        .collect();
    for a in present {
        let Some(ip) = nl::address_ip(&a) else {
            continue;
        };
        if want.addresses.iter().any(|w| w.address == ip) {
            continue;
        }
        nl::request(h, RouteNetlinkMessage::DelAddress(a), 0)
            .await
            .map_err(nl_err(format!("removing {ip} from {name}")))?;
    }
    for addr in &want.addresses {
        let saved = SavedAddress {
            address: *addr,
            broadcast: None,
            label: None,
            flags: 0,
            scope: if is_link_local(addr.address) { 253 } else { 0 },
        };
        let r = nl::request(
            h,
            RouteNetlinkMessage::NewAddress(address_message(&saved, index)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await;
        match r {
            Err(e) if errno_in(&e, &[libc::EEXIST]) => {}
            r => r.map_err(nl_err(format!("adding {addr} to {name}")))?,
        }
    }
    set_link(h, LinkUnspec::new_with_index(index).up().build(), name).await
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

async fn set_link(h: &mut Handle, msg: LinkMessage, name: &str) -> Result<(), GuestNetError> {
    nl::request(h, RouteNetlinkMessage::SetLink(msg), 0)
        .await
        .map_err(nl_err(format!("configuring link {name}")))
}

/// The guest's interfaces but `lo`, sorted by name.
pub fn list_interfaces() -> Result<Vec<Interface>, GuestNetError> {
    netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
        let links = nl::links(&mut h).await.map_err(nl_err("listing links"))?;
        let addresses = nl::addresses(&mut h)
            .await
            .map_err(nl_err("listing addresses"))?;
        let mut out: Vec<Interface> = links
            .iter()
            .filter(|l| !l.header.flags.contains(LinkFlags::Loopback))
            .filter_map(|l| {
                Some(Interface {
                    name: nl::link_name(l)?.to_string(),
                    mac: nl::link_mac(l).map(nl::format_mac).unwrap_or_default(),
                    mtu: nl::link_mtu(l).unwrap_or(0),
                    addresses: addresses
                        .iter()
                        .filter(|a| a.header.index == l.header.index)
                        .filter_map(|a| {
                            Some(IpNet {
                                address: nl::address_ip(a)?,
                                prefix_len: a.header.prefix_len,
                            })
                        })
                        .collect(),
                    noarp: l.header.flags.contains(LinkFlags::Noarp),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok::<_, GuestNetError>(out)
    })?
}

/// The guest's main-table unicast routes.
pub fn list_routes() -> Result<Vec<Route>, GuestNetError> {
    netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
        main_routes(&mut h)
            .await
            .map_err(|e| GuestNetError::Netlink {
                what: "listing routes".into(),
                source: std::io::Error::other(e.to_string()),
            })
    })?
}

/// Replaces the guest's routes by `routes` (Kata's UpdateRoutes): every main-table route the
/// kernel did not make itself goes, then the new ones are added, on-link routes first so that
/// the gateways of the others are reachable. Kernel routes in `routes` are skipped (the guest
/// kernel made its own from the addresses). Returns the routes now in place.
pub fn update_routes(routes: &[Route]) -> Result<Vec<Route>, GuestNetError> {
    let routes = routes.to_vec();
    netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
        let links = nl::links(&mut h).await.map_err(nl_err("listing links"))?;
        let existing = nl::routes(&mut h).await.map_err(nl_err("listing routes"))?;
        for r in existing {
            let protocol: u8 = r.header.protocol.into();
            if protocol == Route::PROTOCOL_KERNEL
                || crate::scan::route_table(&r) != 254
                || r.attributes
                    .iter()
                    .all(|a| !matches!(a, RouteAttribute::Oif(_)))
            {
                continue;
            }
            let r = nl::request(&mut h, RouteNetlinkMessage::DelRoute(r), 0).await;
            match r {
                Err(e) if errno_in(&e, &[libc::ESRCH, libc::ENOENT]) => {}
                r => r.map_err(nl_err("removing an old route"))?,
            }
        }
        let mut ordered: Vec<&Route> = routes
            .iter()
            .filter(|r| r.protocol != Route::PROTOCOL_KERNEL)
            .collect();
        ordered.sort_by_key(|r| r.gateway.is_some());
        for route in ordered {
            let text = route_text(route);
            let oif = links
                .iter()
                .find(|l| nl::link_name(l) == Some(route.device.as_str()))
                .map(|l| l.header.index)
                .ok_or_else(|| GuestNetError::NoDevice {
                    route: text.clone(),
                    device: route.device.clone(),
                })?;
            nl::request(
                &mut h,
                RouteNetlinkMessage::NewRoute(route_message(route, oif)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(nl_err(format!("adding route {text}")))?;
        }
        Ok::<_, GuestNetError>(())
    })??;
    list_routes()
}

fn route_text(r: &Route) -> String {
    let dest = r.destination.map_or("default".into(), |d| d.to_string());
    match r.gateway {
        Some(g) => format!("{dest} via {g} dev {}", r.device),
        None => format!("{dest} dev {}", r.device),
    }
}

/// Adds static neighbour entries (replacing entries for the same address).
pub fn add_neighbors(neighbors: &[Neighbor]) -> Result<(), GuestNetError> {
    let neighbors = neighbors.to_vec();
    netns::with_netlink(Path::new(OWN_NETNS), |mut h| async move {
        let links = nl::links(&mut h).await.map_err(nl_err("listing links"))?;
        for n in &neighbors {
            let text = format!(
                "neighbour {} lladdr {} dev {}",
                n.address, n.lladdr, n.device
            );
            let index = links
                .iter()
                .find(|l| nl::link_name(l) == Some(n.device.as_str()))
                .map(|l| l.header.index)
                .ok_or_else(|| GuestNetError::NoDevice {
                    route: text.clone(),
                    device: n.device.clone(),
                })?;
            let lladdr =
                nl::parse_mac(&n.lladdr).ok_or_else(|| GuestNetError::BadMac(n.lladdr.clone()))?;
            let mut msg = NeighbourMessage::default();
            msg.header.ifindex = index;
            msg.header.state = if n.state == 0 {
                NeighbourState::Permanent
            } else {
                NeighbourState::from(n.state)
            };
            msg.header.flags =
                rtnetlink::packet_route::neighbour::NeighbourFlags::from_bits_retain(n.flags);
            let (family, address) = match n.address {
                IpAddr::V4(v4) => (AddressFamily::Inet, NeighbourAddress::Inet(v4)),
                IpAddr::V6(v6) => (AddressFamily::Inet6, NeighbourAddress::Inet6(v6)),
            };
            msg.header.family = family;
            msg.attributes
                .push(NeighbourAttribute::Destination(address));
            msg.attributes
                .push(NeighbourAttribute::LinkLocalAddress(lladdr));
            nl::request(
                &mut h,
                RouteNetlinkMessage::NewNeighbour(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
            .map_err(nl_err(format!("adding {text}")))?;
        }
        Ok::<_, GuestNetError>(())
    })?
}

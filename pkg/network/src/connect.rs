//! Connecting an interface of the pod's namespace to a tap the VM's NIC uses, by Kata 1.x's
//! interworking models, and undoing exactly that.
//!
//! - `tcfilter` (default): a tap `tapN_kata`, an ingress qdisc on both, and on each a u32
//!   match-all filter redirecting (mirred egress) every packet to the other. The interface keeps
//!   its MAC and addresses; nothing reaches its own stack any more, so the guest, with the same
//!   MAC and IP, owns the traffic.
//! - `macvtap`: a macvtap `tapN_kata` in bridge mode on the interface, with the interface's MAC;
//!   the interface gets a random MAC and loses its addresses (IPv4 and global IPv6: its stack
//!   would otherwise answer ARP/NDP for the guest's address). QEMU opens `/dev/tapI` (I: the
//!   macvtap's index). The macvtap gets a random index at or above 8192: `/dev/tapI` is global
//!   to the host while indexes are per namespace (Kata's workaround).
//! - `bridged`: a tap and a bridge `brN_kata` holding the tap and the interface; the interface
//!   gets a random MAC and loses its addresses, as for macvtap.
//!
//! Whatever was changed is recorded in the returned [`TapPair`] (serializable: it goes in the
//! sandbox record), and [`disconnect`] puts it back: the addresses, the routes their removal
//! took with them, the MAC, the up/down state. A failing `connect` undoes its own steps.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkFlags, LinkMessage, MacVtapMode,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMacVtap, LinkMessageBuilder, LinkUnspec};
use serde::{Deserialize, Serialize};

use crate::netns::{self, NetnsError};
use crate::nl;
use crate::scan::{self, Endpoint, Family, IpNet, LinkKind, Route};
use crate::tap::{self, TapError};
use crate::tc::{self, TcError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("unknown network model \"{0}\" (expected tcfilter, macvtap, bridged or none)")]
    UnknownModel(String),
    #[error("network model \"none\" connects no interface")]
    NoneModel,
    #[error("no interface {name} in {netns}")]
    NoSuchInterface { name: String, netns: PathBuf },
    #[error(
        "interface {name} is a PCI NIC ({pci_address}): it is passed to the VM with VFIO, \
         not through a tap"
    )]
    Physical { name: String, pci_address: String },
    #[error("no free tapN_kata name in {0}")]
    NoFreeName(PathBuf),
    #[error("{what}: {source}")]
    Netlink { what: String, source: io::Error },
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Tc(#[from] TcError),
    #[error("macvtap {name}: character device {path} did not appear (is /dev a devtmpfs?)")]
    MacvtapDevice { name: String, path: PathBuf },
}

fn nl_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ConnectError {
    let what = what.into();
    move |source| ConnectError::Netlink { what, source }
}

/// How the interface reaches the VM (Kata's `internetworking_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    #[default]
    TcFilter,
    MacVtap,
    Bridged,
    /// No interface is connected (Kata: the VM in the host's namespace); `connect` refuses it.
    None,
}

impl FromStr for Model {
    type Err = ConnectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcfilter" | "default" | "" => Ok(Model::TcFilter),
            "macvtap" => Ok(Model::MacVtap),
            "bridged" => Ok(Model::Bridged),
            "none" => Ok(Model::None),
            other => Err(ConnectError::UnknownModel(other.to_string())),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::TcFilter => "tcfilter",
            Model::MacVtap => "macvtap",
            Model::Bridged => "bridged",
            Model::None => "none",
        })
    }
}

/// An interface of the namespace connected to the tap the VM uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapPair {
    pub model: Model,
    /// The namespace's interface (the veth), by name.
    pub endpoint: String,
    /// `tapN_kata`: a persistent tap (tcfilter, bridged) or the macvtap.
    pub tap: String,
    pub tap_index: u32,
    /// The MAC the guest NIC must have: the interface's MAC as it was found.
    pub mac: String,
    /// The interface's MTU, given to the tap (and to the guest NIC).
    pub mtu: u32,
    /// macvtap only: the character device QEMU opens (`-netdev tap,fd=N` on an open file).
    pub device: Option<PathBuf>,
    /// bridged only: `brN_kata`.
    pub bridge: Option<String>,
    /// What `disconnect` must put back; not for other uses.
    pub undo: Undo,
}

/// The changes `connect` made, for `disconnect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub tap_created: bool,
    pub bridge_created: bool,
    /// The interface had no ingress qdisc and `connect` added one.
    pub endpoint_ingress_created: bool,
    /// Priority of the redirect filter added under the interface's ingress qdisc.
    pub endpoint_filter_priority: Option<u16>,
    /// The interface was enslaved to the bridge.
    pub endpoint_enslaved: bool,
    /// The interface's MAC before `connect` replaced it.
    pub endpoint_mac: Option<String>,
    /// The interface was down and `connect` set it up.
    pub endpoint_was_down: bool,
    /// Addresses taken from the interface, in their original order.
    pub removed_addresses: Vec<SavedAddress>,
    /// The namespace's main-table routes before the addresses were removed (removing an
    /// interface's last IPv4 address drops every route through it, the default route too).
    pub routes: Vec<Route>,
}

/// An address as the kernel listed it, enough to add it back the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAddress {
    pub address: IpNet,
    pub broadcast: Option<Ipv4Addr>,
    pub label: Option<String>,
    /// `IFA_F_*` flags.
    pub flags: u32,
    /// `RT_SCOPE_*`.
    pub scope: u8,
}

const TAP_SUFFIX: &str = "_kata";
/// macvtap indexes: at or above this, below `MACVTAP_INDEX_BASE + 0x10000`.
const MACVTAP_INDEX_BASE: u32 = 8192;
const MACVTAP_TRIES: usize = 128;

/// Connects `endpoint` (from [`scan`](crate::scan())) of the namespace at `netns_path` to a new
/// tap by `model`. See the module documentation for what each model changes.
pub fn connect(
    netns_path: &Path,
    endpoint: &Endpoint,
    model: Model,
) -> Result<TapPair, ConnectError> {
    if model == Model::None {
        return Err(ConnectError::NoneModel);
    }
    if let LinkKind::Physical { pci_address, .. } = &endpoint.kind {
        return Err(ConnectError::Physical {
            name: endpoint.name.clone(),
            pci_address: pci_address.clone(),
        });
    }
    let path = netns_path.to_path_buf();
    let pair = netns::with_netlink(netns_path, |mut handle| async move {
        let link = nl::link_by_name(&mut handle, &endpoint.name)
            .await
            .map_err(nl_err("listing links"))?
            .ok_or_else(|| ConnectError::NoSuchInterface {
                name: endpoint.name.clone(),
                netns: path.clone(),
            })?;
        let n = free_number(&mut handle, &path).await?;
        let mut pair = TapPair {
            model,
            endpoint: endpoint.name.clone(),
            tap: format!("tap{n}{TAP_SUFFIX}"),
            tap_index: 0,
            mac: nl::link_mac(&link).map(nl::format_mac).unwrap_or_default(),
            mtu: nl::link_mtu(&link).unwrap_or(1500),
            device: None,
            bridge: (model == Model::Bridged).then(|| format!("br{n}{TAP_SUFFIX}")),
            undo: Undo::default(),
        };
        let result = match model {
            Model::TcFilter => tcfilter(&mut handle, &link, &mut pair).await,
            Model::MacVtap => macvtap(&mut handle, &link, &mut pair).await,
            Model::Bridged => bridged(&mut handle, &link, &mut pair).await,
            Model::None => Err(ConnectError::NoneModel),
        };
        match result {
            Ok(()) => Ok(pair),
            Err(e) => {
                if let Err(undo) = undo(&mut handle, &pair).await {
                    log::warn!("undoing a failed connect of {}: {undo}", pair.endpoint);
                }
                Err(e)
            }
        }
    })??;
    log::info!(
        "connected {} to {} ({}, mac {}, mtu {})",
        pair.endpoint,
        pair.tap,
        pair.model,
        pair.mac,
        pair.mtu
    );
    Ok(pair)
}

/// Removes what `connect` made for `pair` and restores the interface as it was found. Steps
/// whose object is already gone are skipped; every step is tried, the first failure returned.
/// A namespace that no longer exists took everything with it: nothing to do.
pub fn disconnect(netns_path: &Path, pair: &TapPair) -> Result<(), ConnectError> {
    let result = netns::with_netlink(netns_path, |mut handle| async move {
        undo(&mut handle, pair).await
    });
    match result {
        Ok(undone) => undone?,
        Err(NetnsError::Missing(p)) => {
            log::info!(
                "disconnect {}: network namespace {} is gone",
                pair.tap,
                p.display()
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    log::info!("disconnected {} from {}", pair.endpoint, pair.tap);
    Ok(())
}

/// The smallest N for which neither `tapN_kata` nor `brN_kata` exists.
async fn free_number(handle: &mut Handle, netns: &Path) -> Result<u32, ConnectError> {
    let links = nl::links(handle).await.map_err(nl_err("listing links"))?;
    let names: Vec<&str> = links.iter().filter_map(nl::link_name).collect();
    (0..1024)
        .find(|n| {
            !names.contains(&format!("tap{n}{TAP_SUFFIX}").as_str())
                && !names.contains(&format!("br{n}{TAP_SUFFIX}").as_str())
        })
        .ok_or_else(|| ConnectError::NoFreeName(netns.to_path_buf()))
}

async fn tcfilter(
    handle: &mut Handle,
    link: &LinkMessage,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    let index = link.header.index;
    pair.tap_index = create_tap(handle, pair).await?;
    set_link(
        handle,
        LinkUnspec::new_with_index(pair.tap_index).up().build(),
        format!("setting {} up", pair.tap),
    )
    .await?;

    // tap -> interface. The tap is new: its qdisc and filter go when it is deleted.
    tc::add_ingress(handle, pair.tap_index).await?;
    let priority = tc::free_priority(handle, pair.tap_index).await?;
    tc::add_redirect(handle, pair.tap_index, index, priority).await?;

    // interface -> tap, last: from here on the interface's traffic goes to the VM.
    if !tc::has_ingress(handle, index).await? {
        tc::add_ingress(handle, index).await?;
        pair.undo.endpoint_ingress_created = true;
    }
    let priority = tc::free_priority(handle, index).await?;
    tc::add_redirect(handle, index, pair.tap_index, priority).await?;
    pair.undo.endpoint_filter_priority = Some(priority);
    Ok(())
}

async fn macvtap(
    handle: &mut Handle,
    link: &LinkMessage,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    let index = link.header.index;
    pair.undo.routes = main_routes(handle).await?;
    let mac = nl::parse_mac(&pair.mac).unwrap_or_default();

    let mut last_err = None;
    for _ in 0..MACVTAP_TRIES {
        let mut r = [0u8; 2];
        nl::random_bytes(&mut r).map_err(nl_err("picking a macvtap index"))?;
        let tap_index = MACVTAP_INDEX_BASE + u32::from(u16::from_ne_bytes(r));
        let msg = LinkMacVtap::new(&pair.tap, index, MacVtapMode::Bridge)
            .index(tap_index)
            .mtu(pair.mtu)
            .address(mac.clone())
            .build();
        match nl::request(
            handle,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        {
            Ok(()) => {
                pair.undo.tap_created = true;
                pair.tap_index = tap_index;
                last_err = None;
                break;
            }
            // The index is taken here, or its /dev/tapI by another namespace's macvtap.
            Err(e) if errno_in(&e, &[libc::EEXIST, libc::EBUSY]) => last_err = Some(e),
            Err(e) => return Err(nl_err(format!("creating macvtap {}", pair.tap))(e)),
        }
    }
    if let Some(e) = last_err {
        return Err(nl_err(format!("creating macvtap {}", pair.tap))(e));
    }

    no_ipv6_autoconf(handle, pair.tap_index, &pair.tap).await?;
    move_aside(handle, link, pair).await?;
    set_link(
        handle,
        LinkUnspec::new_with_index(pair.tap_index).up().build(),
        format!("setting {} up", pair.tap),
    )
    .await?;
    remove_addresses(handle, index, pair).await?;
    set_up_if_down(handle, link, pair).await?;

    // devtmpfs makes the node while the link registers; it is there now or never.
    let device = PathBuf::from(format!("/dev/tap{}", pair.tap_index));
    if !device.exists() {
        return Err(ConnectError::MacvtapDevice {
            name: pair.tap.clone(),
            path: device,
        });
    }
    pair.device = Some(device);
    Ok(())
}

async fn bridged(
    handle: &mut Handle,
    link: &LinkMessage,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    let index = link.header.index;
    let bridge = pair.bridge.clone().unwrap_or_default();
    pair.undo.routes = main_routes(handle).await?;
    pair.tap_index = create_tap(handle, pair).await?;

    nl::request(
        handle,
        RouteNetlinkMessage::NewLink(
            LinkMessageBuilder::<LinkBridge>::new(&bridge)
                .mtu(pair.mtu)
                .build(),
        ),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    .map_err(nl_err(format!("creating bridge {bridge}")))?;
    pair.undo.bridge_created = true;
    let bridge_index = nl::link_by_name(handle, &bridge)
        .await
        .map_err(nl_err("listing links"))?
        .map(|l| l.header.index)
        .ok_or_else(|| ConnectError::Netlink {
            what: format!("finding bridge {bridge}"),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
    no_ipv6_autoconf(handle, bridge_index, &bridge).await?;

    set_link(
        handle,
        LinkUnspec::new_with_index(pair.tap_index)
            .controller(bridge_index)
            .up()
            .build(),
        format!("adding {} to {bridge}", pair.tap),
    )
    .await?;
    move_aside(handle, link, pair).await?;
    pair.undo.endpoint_enslaved = true;
    set_link(
        handle,
        LinkUnspec::new_with_index(index)
            .controller(bridge_index)
            .build(),
        format!("adding {} to {bridge}", pair.endpoint),
    )
    .await?;
    remove_addresses(handle, index, pair).await?;
    set_up_if_down(handle, link, pair).await?;
    set_link(
        handle,
        LinkUnspec::new_with_index(bridge_index).up().build(),
        format!("setting {bridge} up"),
    )
    .await
}

/// Creates the persistent tap `pair.tap` with the interface's MTU; returns its index.
async fn create_tap(handle: &mut Handle, pair: &mut TapPair) -> Result<u32, ConnectError> {
    tap::create_persistent(&pair.tap)?;
    pair.undo.tap_created = true;
    let index = nl::link_by_name(handle, &pair.tap)
        .await
        .map_err(nl_err("listing links"))?
        .map(|l| l.header.index)
        .ok_or_else(|| ConnectError::Netlink {
            what: format!("finding tap {}", pair.tap),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
    set_link(
        handle,
        LinkUnspec::new_with_index(index).mtu(pair.mtu).build(),
        format!("setting the MTU of {} to {}", pair.tap, pair.mtu),
    )
    .await?;
    no_ipv6_autoconf(handle, index, &pair.tap).await?;
    Ok(index)
}

/// Gives the interface a random MAC: the guest NIC takes its own.
async fn move_aside(
    handle: &mut Handle,
    link: &LinkMessage,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    let random = nl::random_mac().map_err(nl_err("making a random MAC"))?;
    pair.undo.endpoint_mac = Some(pair.mac.clone());
    set_link(
        handle,
        LinkUnspec::new_with_index(link.header.index)
            .address(random)
            .build(),
        format!("changing the MAC of {}", pair.endpoint),
    )
    .await
}

/// Removes the interface's IPv4 and non-link-local IPv6 addresses, recording them.
async fn remove_addresses(
    handle: &mut Handle,
    index: u32,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    let addresses = nl::addresses(handle)
        .await
        .map_err(nl_err("listing addresses"))?;
    for addr in addresses.into_iter().filter(|a| a.header.index == index) {
        let Some(ip) = nl::address_ip(&addr) else {
            continue;
        };
        if let IpAddr::V6(v6) = ip {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        pair.undo.removed_addresses.push(saved_address(&addr, ip));
        let what = format!(
            "removing {ip}/{} from {}",
            addr.header.prefix_len, pair.endpoint
        );
        nl::request(handle, RouteNetlinkMessage::DelAddress(addr), 0)
            .await
            .map_err(nl_err(what))?;
    }
    Ok(())
}

async fn set_up_if_down(
    handle: &mut Handle,
    link: &LinkMessage,
    pair: &mut TapPair,
) -> Result<(), ConnectError> {
    if link.header.flags.contains(LinkFlags::Up) {
        return Ok(());
    }
    pair.undo.endpoint_was_down = true;
    set_link(
        handle,
        LinkUnspec::new_with_index(link.header.index).up().build(),
        format!("setting {} up", pair.endpoint),
    )
    .await
}

async fn set_link(handle: &mut Handle, msg: LinkMessage, what: String) -> Result<(), ConnectError> {
    nl::request(handle, RouteNetlinkMessage::SetLink(msg), 0)
        .await
        .map_err(nl_err(what))
}

/// `addrgenmode none`: a link the runtime adds gets no IPv6 link-local address of its own, so
/// its host-side stack stays silent (a macvtap would otherwise get the same link-local as the
/// guest, both coming from the same MAC). Set before the link goes up.
async fn no_ipv6_autoconf(handle: &mut Handle, index: u32, name: &str) -> Result<(), ConnectError> {
    const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
    set_link(
        handle,
        LinkUnspec::new_with_index(index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(IN6_ADDR_GEN_MODE_NONE)],
            )]))
            .build(),
        format!("disabling IPv6 address generation on {name}"),
    )
    .await
}

pub(crate) fn errno_in(e: &io::Error, errnos: &[i32]) -> bool {
    e.raw_os_error().is_some_and(|n| errnos.contains(&n))
}

/// Errors of a removal whose object is already gone.
const GONE: &[i32] = &[libc::ENODEV, libc::ENOENT, libc::EADDRNOTAVAIL, libc::ESRCH];

/// The namespace's main-table unicast routes (of every interface).
pub(crate) async fn main_routes(handle: &mut Handle) -> Result<Vec<Route>, ConnectError> {
    let links = nl::links(handle).await.map_err(nl_err("listing links"))?;
    let routes = nl::routes(handle).await.map_err(nl_err("listing routes"))?;
    Ok(routes
        .iter()
        .filter_map(|r| {
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })?;
            let name = links
                .iter()
                .find(|l| l.header.index == oif)
                .and_then(nl::link_name)?;
            scan::route_from(r, oif, name)
        })
        .collect())
}

fn saved_address(addr: &AddressMessage, ip: IpAddr) -> SavedAddress {
    let mut saved = SavedAddress {
        address: IpNet {
            address: ip,
            prefix_len: addr.header.prefix_len,
        },
        broadcast: None,
        label: None,
        flags: u32::from(addr.header.flags.bits()),
        scope: addr.header.scope.into(),
    };
    for attr in &addr.attributes {
        match attr {
            AddressAttribute::Broadcast(b) => saved.broadcast = Some(*b),
            AddressAttribute::Label(l) => saved.label = Some(l.clone()),
            AddressAttribute::Flags(f) => saved.flags = f.bits(),
            _ => {}
        }
    }
    saved
}

/// Flags a user may set on an address (the rest are the kernel's own state).
const ADDRESS_FLAGS_SETTABLE: u32 = 0x02 /* NODAD */
    | 0x10 /* HOMEADDRESS */
    | 0x100 /* MANAGETEMPADDR */
    | 0x200 /* NOPREFIXROUTE */
    | 0x400 /* MCAUTOJOIN */;

pub(crate) fn address_message(saved: &SavedAddress, index: u32) -> AddressMessage {
    let mut msg = AddressMessage::default();
    let flags = saved.flags & ADDRESS_FLAGS_SETTABLE;
    msg.header.family = match saved.address.address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    msg.header.prefix_len = saved.address.prefix_len;
    msg.header.index = index;
    msg.header.scope = saved.scope.into();
    msg.header.flags = AddressHeaderFlags::from_bits_retain((flags & 0xff) as u8);
    let ip = saved.address.address;
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    if let Some(b) = saved.broadcast {
        msg.attributes.push(AddressAttribute::Broadcast(b));
    }
    if let Some(l) = &saved.label {
        msg.attributes.push(AddressAttribute::Label(l.clone()));
    }
    msg.attributes
        .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
            flags,
        )));
    msg
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

pub(crate) fn route_message(route: &Route, oif: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = match route.family {
        Family::Ipv4 => AddressFamily::Inet,
        Family::Ipv6 => AddressFamily::Inet6,
    };
    h.destination_prefix_length = route.destination.map_or(0, |d| d.prefix_len);
    h.table = RouteHeader::RT_TABLE_MAIN;
    h.protocol = RouteProtocol::from(route.protocol);
    h.scope = RouteScope::from(route.scope);
    h.kind = RouteType::Unicast;
    if route.onlink {
        h.flags = RouteFlags::Onlink;
    }
    if let Some(d) = route.destination {
        msg.attributes
            .push(RouteAttribute::Destination(route_address(d.address)));
    }
    if let Some(g) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(route_address(g)));
    }
    if let Some(s) = route.source {
        msg.attributes
            .push(RouteAttribute::PrefSource(route_address(s)));
    }
    msg.attributes.push(RouteAttribute::Oif(oif));
    if let Some(m) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    msg
}

/// Keeps the first error, logs every one.
fn keep(first: &mut Option<ConnectError>, result: Result<(), ConnectError>) {
    if let Err(e) = result {
        log::warn!("network teardown: {e}");
        first.get_or_insert(e);
    }
}

/// Turns "already gone" into success.
fn gone_ok(result: Result<(), ConnectError>) -> Result<(), ConnectError> {
    match result {
        Err(ConnectError::Netlink { source, .. }) if errno_in(&source, GONE) => Ok(()),
        Err(ConnectError::Tc(TcError::Netlink { source, .. }))
            if errno_in(&source, GONE) || errno_in(&source, &[libc::EINVAL]) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn undo(handle: &mut Handle, pair: &TapPair) -> Result<(), ConnectError> {
    let u = &pair.undo;
    let mut first = None;
    let links = nl::links(handle).await.map_err(nl_err("listing links"))?;
    let find = |name: &str| {
        links
            .iter()
            .find(|l| nl::link_name(l) == Some(name))
            .map(|l| l.header.index)
    };
    let endpoint = find(&pair.endpoint);
    if endpoint.is_none() {
        log::info!("disconnect: {} is gone", pair.endpoint);
    }

    if let Some(index) = endpoint {
        if let Some(priority) = u.endpoint_filter_priority {
            let r = tc::del_filter(handle, index, priority).await;
            keep(&mut first, gone_ok(r.map_err(Into::into)));
        }
        if u.endpoint_ingress_created {
            let r = tc::del_ingress(handle, index).await;
            keep(&mut first, gone_ok(r.map_err(Into::into)));
        }
        if u.endpoint_enslaved {
            let r = set_link(
                handle,
                LinkUnspec::new_with_index(index).nocontroller().build(),
                format!("taking {} out of its bridge", pair.endpoint),
            )
            .await;
            keep(&mut first, gone_ok(r));
        }
    }
    let delete = |name: Option<&String>, created: bool| {
        let index = name.filter(|_| created).and_then(|n| find(n));
        let what = format!("deleting {}", name.map_or("", |n| n.as_str()));
        (index, what)
    };
    for (index, what) in [
        delete(pair.bridge.as_ref(), u.bridge_created),
        delete(Some(&pair.tap), u.tap_created),
    ] {
        if let Some(index) = index {
            let r = nl::request(
                handle,
                RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build()),
                0,
            )
            .await
            .map_err(nl_err(what));
            keep(&mut first, gone_ok(r));
        }
    }

    if let Some(index) = endpoint {
        if let Some(mac) = u.endpoint_mac.as_deref().and_then(nl::parse_mac) {
            let r = set_link(
                handle,
                LinkUnspec::new_with_index(index).address(mac).build(),
                format!("restoring the MAC of {}", pair.endpoint),
            )
            .await;
            keep(&mut first, gone_ok(r));
        }
        for saved in &u.removed_addresses {
            let r = nl::request(
                handle,
                RouteNetlinkMessage::NewAddress(address_message(saved, index)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await;
            let r = match r {
                Err(e) if errno_in(&e, &[libc::EEXIST]) => Ok(()),
                r => r.map_err(nl_err(format!(
                    "restoring {} on {}",
                    saved.address, pair.endpoint
                ))),
            };
            keep(&mut first, r);
        }
    }
    if !u.routes.is_empty() {
        keep(&mut first, restore_routes(handle, &u.routes).await);
    }
    if let (Some(index), true) = (endpoint, u.endpoint_was_down) {
        let r = set_link(
            handle,
            LinkUnspec::new_with_index(index).down().build(),
            format!("setting {} down again", pair.endpoint),
        )
        .await;
        keep(&mut first, gone_ok(r));
    }
    first.map_or(Ok(()), Err)
}

/// Adds back the routes of `before` that are missing now (in their original order, so that a
/// gateway's own route comes first).
async fn restore_routes(handle: &mut Handle, before: &[Route]) -> Result<(), ConnectError> {
    let now = main_routes(handle).await?;
    let links = nl::links(handle).await.map_err(nl_err("listing links"))?;
    let mut first = None;
    for route in before.iter().filter(|r| !now.contains(r)) {
        let Some(oif) = links
            .iter()
            .find(|l| nl::link_name(l) == Some(route.device.as_str()))
            .map(|l| l.header.index)
        else {
            continue;
        };
        let r = nl::request(
            handle,
            RouteNetlinkMessage::NewRoute(route_message(route, oif)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await;
        let r = match r {
            Err(e) if errno_in(&e, &[libc::EEXIST]) => Ok(()),
            r => r.map_err(nl_err(format!(
                "restoring route {} via {:?} dev {}",
                route
                    .destination
                    .map_or("default".to_string(), |d| d.to_string()),
                route.gateway,
                route.device
            ))),
        };
        keep(&mut first, r);
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_parse_and_print() {
        for (text, model) in [
            ("tcfilter", Model::TcFilter),
            ("macvtap", Model::MacVtap),
            ("bridged", Model::Bridged),
            ("none", Model::None),
        ] {
            assert_eq!(text.parse::<Model>().expect("known"), model);
            assert_eq!(model.to_string(), text);
            assert_eq!(
                serde_json::to_string(&model).expect("json"),
                format!("\"{text}\"")
            );
        }
        assert_eq!(
            "default".parse::<Model>().expect("default"),
            Model::TcFilter
        );
        assert_eq!(Model::default(), Model::TcFilter);
        let err = "foo".parse::<Model>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown network model \"foo\" (expected tcfilter, macvtap, bridged or none)"
        );
    }

    fn pair(model: Model) -> TapPair {
        TapPair {
            model,
            endpoint: "eth0".into(),
            tap: "tap0_kata".into(),
            tap_index: 8200,
            mac: "02:42:ac:11:00:02".into(),
            mtu: 1500,
            device: None,
            bridge: None,
            undo: Undo::default(),
        }
    }

    #[test]
    fn tap_pair_json_round_trip() {
        let mut p = pair(Model::Bridged);
        p.bridge = Some("br0_kata".into());
        p.undo.removed_addresses.push(SavedAddress {
            address: IpNet {
                address: "10.0.0.2".parse().expect("ip"),
                prefix_len: 24,
            },
            broadcast: Some("10.0.0.255".parse().expect("ip")),
            label: Some("eth0".into()),
            flags: 0x80,
            scope: 0,
        });
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(serde_json::from_str::<TapPair>(&json).expect("back"), p);
    }

    #[test]
    fn address_message_keeps_only_settable_flags() {
        let saved = SavedAddress {
            address: IpNet {
                address: "10.0.0.2".parse().expect("ip"),
                prefix_len: 24,
            },
            broadcast: None,
            label: None,
            flags: 0x80 | 0x200, // permanent (the kernel's) | noprefixroute
            scope: 0,
        };
        let msg = address_message(&saved, 7);
        assert_eq!(msg.header.index, 7);
        assert!(msg
            .attributes
            .contains(&AddressAttribute::Flags(AddressFlags::from_bits_retain(
                0x200
            ))));
    }
}

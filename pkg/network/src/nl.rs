//! Thin rtnetlink helpers shared by the other modules: a request that waits for the kernel's
//! acknowledgement, a dump, and small decoders. Errors are `io::Error`s carrying the kernel's
//! errno, so callers can match `EEXIST`/`ENOENT`/`ENODEV` and print the usual text.

use std::io;
use std::net::IpAddr;

use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteMessage};
use rtnetlink::packet_route::tc::TcMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

/// Sends `message` with `flags` (plus REQUEST and ACK) and waits for the kernel's answer.
pub async fn request(
    handle: &mut Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> io::Result<()> {
    let mut req = NetlinkMessage::from(message);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut response = handle
        .request(req)
        .map_err(|e| io::Error::other(e.to_string()))?;
    while let Some(msg) = response.next().await {
        if let NetlinkPayload::Error(err) = msg.payload {
            if err.code.is_some() {
                return Err(err.to_io());
            }
        }
    }
    Ok(())
}

/// Dumps the objects selected by `message` (a GET message with the filter fields set).
pub async fn dump(
    handle: &mut Handle,
    message: RouteNetlinkMessage,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut req = NetlinkMessage::from(message);
    req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut response = handle
        .request(req)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(msg) = response.next().await {
        match msg.payload {
            NetlinkPayload::InnerMessage(inner) => out.push(inner),
            NetlinkPayload::Error(err) if err.code.is_some() => return Err(err.to_io()),
            _ => {}
        }
    }
    Ok(out)
}

pub async fn links(handle: &mut Handle) -> io::Result<Vec<LinkMessage>> {
    let msgs = dump(handle, RouteNetlinkMessage::GetLink(LinkMessage::default())).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

pub async fn link_by_name(handle: &mut Handle, name: &str) -> io::Result<Option<LinkMessage>> {
    Ok(links(handle)
        .await?
        .into_iter()
        .find(|l| link_name(l) == Some(name)))
}

pub async fn addresses(handle: &mut Handle) -> io::Result<Vec<AddressMessage>> {
    let msgs = dump(
        handle,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )
    .await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })
        .collect())
}

/// Every neighbour entry of every link and family (callers filter).
pub async fn neighbors(
    handle: &mut Handle,
) -> io::Result<Vec<rtnetlink::packet_route::neighbour::NeighbourMessage>> {
    let msgs = dump(
        handle,
        RouteNetlinkMessage::GetNeighbour(Default::default()),
    )
    .await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewNeighbour(n) => Some(n),
            _ => None,
        })
        .collect())
}

/// Every route of every table and family (callers filter).
pub async fn routes(handle: &mut Handle) -> io::Result<Vec<RouteMessage>> {
    let msgs = dump(
        handle,
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
    )
    .await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        })
        .collect())
}

/// All qdiscs of the namespace (the kernel ignores the index of a dump request; callers filter).
pub async fn qdiscs(handle: &mut Handle) -> io::Result<Vec<TcMessage>> {
    let msgs = dump(
        handle,
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
    )
    .await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q) => Some(q),
            _ => None,
        })
        .collect())
}

/// The filters attached under `parent` of link `index`.
pub async fn filters(handle: &mut Handle, index: u32, parent: u32) -> io::Result<Vec<TcMessage>> {
    let mut msg = TcMessage::with_index(index_i32(index)?);
    msg.header.parent = parent.into();
    let msgs = dump(handle, RouteNetlinkMessage::GetTrafficFilter(msg)).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewTrafficFilter(f) => Some(f),
            _ => None,
        })
        .collect())
}

pub fn index_i32(index: u32) -> io::Result<i32> {
    i32::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"))
}

pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

pub fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

pub fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// `IFLA_INFO_KIND` ("veth", "macvlan", "tun", ...); physical NICs have none.
pub fn link_kind(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// The address of an `AddressMessage`: `IFA_LOCAL` when present (the interface's own address
/// on point-to-point links), else `IFA_ADDRESS`.
pub fn address_ip(addr: &AddressMessage) -> Option<IpAddr> {
    let local = addr.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        addr.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

pub fn route_address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = text
        .split(':')
        .map(|part| {
            if part.len() == 2 {
                u8::from_str_radix(part, 16).ok()
            } else {
                None
            }
        })
        .collect();
    bytes.filter(|b| b.len() == 6)
}

/// Fills `buf` from the kernel's random pool.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// A random locally administered unicast MAC (as Kata 1.x gave the veth it moved aside).
pub fn random_mac() -> io::Result<Vec<u8>> {
    let mut mac = vec![0u8; 6];
    random_bytes(&mut mac)?;
    mac[0] = (mac[0] | 0x02) & 0xfe;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trip() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x0f];
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:0f");
        assert_eq!(parse_mac("02:42:ac:11:00:0f"), Some(mac.to_vec()));
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:0g"), None);
        assert_eq!(parse_mac("2:42:ac:11:00:0f"), None);
    }

    #[test]
    fn random_mac_is_local_unicast() {
        for _ in 0..32 {
            let mac = random_mac().expect("getrandom");
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        }
    }
}

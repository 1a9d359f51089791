//! Traffic control over netlink (no `tc` binary): the ingress qdisc and the u32 match-all
//! filter with a mirred egress redirect, which is what Kata 1.x's tcfilter model installs:
//!
//! ```text
//! tc qdisc add dev SRC ingress
//! tc filter add dev SRC parent ffff: protocol all pref PRIO u32 match u8 0 0 \
//!     action mirred egress redirect dev DST
//! ```
//!
//! Filters are added with an explicit priority chosen among the free ones, so that removing
//! them removes exactly ours even when the device already had an ingress qdisc with filters.

use std::io;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirror, TcActionMirrorOption,
    TcActionOption, TcActionType, TcAttribute, TcFilterU32, TcFilterU32Option, TcHandle, TcMessage,
    TcMirror, TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use crate::nl;

/// `ffff:` — the ingress qdisc's handle, and the parent of its filters.
pub const INGRESS_HANDLE: u32 = 0xffff_0000;
/// `ffff:fff1` — where the ingress qdisc hangs.
const INGRESS_PARENT: u32 = 0xffff_fff1;
/// The priority the kernel would pick for a first filter; we go down from here.
const FIRST_PRIORITY: u16 = 0xc000;

#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error("{what} on interface index {index}: {source}")]
    Netlink {
        what: &'static str,
        index: u32,
        source: io::Error,
    },
    #[error("no free filter priority on interface index {0}")]
    NoFreePriority(u32),
}

fn err(what: &'static str, index: u32) -> impl FnOnce(io::Error) -> TcError {
    move |source| TcError::Netlink {
        what,
        index,
        source,
    }
}

/// `tcm_info` of a filter: priority in the high half, protocol (network order) in the low.
fn filter_info(priority: u16) -> u32 {
    (u32::from(priority) << 16) | u32::from((libc::ETH_P_ALL as u16).to_be())
}

/// Whether link `index` has an ingress qdisc.
pub async fn has_ingress(handle: &mut Handle, index: u32) -> Result<bool, TcError> {
    let qdiscs = nl::qdiscs(handle)
        .await
        .map_err(err("listing qdiscs", index))?;
    Ok(qdiscs.iter().any(|q| {
        u32::try_from(q.header.index) == Ok(index)
            && u32::from(q.header.handle) == INGRESS_HANDLE
            && q.attributes
                .iter()
                .any(|a| matches!(a, TcAttribute::Kind(k) if k == "ingress"))
    }))
}

/// `tc qdisc add dev INDEX ingress`.
pub async fn add_ingress(handle: &mut Handle, index: u32) -> Result<(), TcError> {
    let mut msg = TcMessage::with_index(nl::index_i32(index).map_err(err("ingress qdisc", index))?);
    msg.header.parent = INGRESS_PARENT.into();
    msg.header.handle = INGRESS_HANDLE.into();
    msg.attributes.push(TcAttribute::Kind("ingress".into()));
    nl::request(
        handle,
        RouteNetlinkMessage::NewQueueDiscipline(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    .map_err(err("adding the ingress qdisc", index))
}

/// `tc qdisc del dev INDEX ingress` (its filters go with it).
pub async fn del_ingress(handle: &mut Handle, index: u32) -> Result<(), TcError> {
    let mut msg = TcMessage::with_index(nl::index_i32(index).map_err(err("ingress qdisc", index))?);
    msg.header.parent = INGRESS_PARENT.into();
    msg.header.handle = INGRESS_HANDLE.into();
    nl::request(handle, RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
        .await
        .map_err(err("deleting the ingress qdisc", index))
}

/// The highest priority at or below 0xc000 that no filter under `ffff:` of `index` uses.
pub async fn free_priority(handle: &mut Handle, index: u32) -> Result<u16, TcError> {
    let filters = nl::filters(handle, index, INGRESS_HANDLE)
        .await
        .map_err(err("listing ingress filters", index))?;
    let used: Vec<u16> = filters
        .iter()
        .map(|f| (f.header.info >> 16) as u16)
        .collect();
    (1..=FIRST_PRIORITY)
        .rev()
        .find(|p| !used.contains(p))
        .ok_or(TcError::NoFreePriority(index))
}

/// Adds, under the ingress qdisc of `src`, a u32 filter matching every packet with the action
/// `mirred egress redirect dev dst` (the packet is stolen from `src`'s stack).
pub async fn add_redirect(
    handle: &mut Handle,
    src: u32,
    dst: u32,
    priority: u16,
) -> Result<(), TcError> {
    let mut msg = TcMessage::with_index(nl::index_i32(src).map_err(err("redirect filter", src))?);
    msg.header.parent = INGRESS_HANDLE.into();
    msg.header.info = filter_info(priority);

    // `match u8 0 0`: one key with mask 0, so every packet matches.
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = 1;
    selector.keys = vec![TcU32Key::default()];

    let mut mirror = TcMirror::default();
    mirror.generic = TcActionGeneric::default();
    mirror.generic.action = TcActionType::Stolen;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = dst;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind(TcActionMirror::KIND.to_string()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    msg.attributes
        .push(TcAttribute::Kind(TcFilterU32::KIND.to_string()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(selector)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    nl::request(
        handle,
        RouteNetlinkMessage::NewTrafficFilter(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    .map_err(err("adding the redirect filter", src))
}

/// Removes the filters of priority `priority` under the ingress qdisc of `index`.
pub async fn del_filter(handle: &mut Handle, index: u32, priority: u16) -> Result<(), TcError> {
    let mut msg = TcMessage::with_index(nl::index_i32(index).map_err(err("filter", index))?);
    msg.header.parent = INGRESS_HANDLE.into();
    msg.header.info = filter_info(priority);
    msg.header.handle = TcHandle::UNSPEC;
    nl::request(handle, RouteNetlinkMessage::DelTrafficFilter(msg), 0)
        .await
        .map_err(err("deleting the redirect filter", index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_holds_priority_and_protocol_all() {
        let info = filter_info(0xc000);
        assert_eq!(info >> 16, 0xc000);
        // ETH_P_ALL (3) in network byte order, as `tc ... protocol all` sends it.
        assert_eq!((info & 0xffff) as u16, 3u16.to_be());
    }
}

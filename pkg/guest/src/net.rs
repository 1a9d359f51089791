//! The agent's network calls (UpdateInterface, UpdateRoutes, ListInterfaces, ListRoutes,
//! AddARPNeighbors): the requests are checked, then applied with `network::guest`.

use network::agent as conv;
use network::guest;
use protocols::agent as pb;
use std::time::Duration;
use ttrpc::Code;

/// How long a NIC may take to show up: the virtio-net driver loads in the background at boot,
/// and a hot-plugged NIC is probed after `device_add` returns.
const NIC_WAIT: Duration = Duration::from_secs(10);

fn status(code: Code, e: impl ToString) -> ttrpc::Error {
    let msg = e.to_string();
    log::warn!("{msg}");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

pub fn update_interface(req: &pb::UpdateInterfaceRequest) -> ttrpc::Result<pb::Interface> {
    let Some(wanted) = req.interface.as_ref() else {
        return Err(status(
            Code::INVALID_ARGUMENT,
            "UpdateInterface without an interface",
        ));
    };
    let wanted =
        conv::interface_from_proto(wanted).map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
    let got = guest::update_interface(&wanted, NIC_WAIT).map_err(|e| status(Code::INTERNAL, e))?;
    log::info!(
        "interface {} ({}) mtu {} addresses {:?}",
        got.name,
        got.mac,
        got.mtu,
        got.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    Ok(conv::interface_to_proto(&got))
}

pub fn update_routes(req: &pb::UpdateRoutesRequest) -> ttrpc::Result<pb::Routes> {
    let routes = req
        .routes
        .as_ref()
        .map(|r| {
            r.Routes
                .iter()
                .map(conv::route_from_proto)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| status(Code::INVALID_ARGUMENT, e))?
        .unwrap_or_default();
    let now = guest::update_routes(&routes).map_err(|e| status(Code::INTERNAL, e))?;
    Ok(routes_proto(&now))
}

pub fn list_interfaces() -> ttrpc::Result<pb::Interfaces> {
    let list = guest::list_interfaces().map_err(|e| status(Code::INTERNAL, e))?;
    let mut out = pb::Interfaces::new();
    out.Interfaces = list.iter().map(conv::interface_to_proto).collect();
    Ok(out)
}

pub fn list_routes() -> ttrpc::Result<pb::Routes> {
    let list = guest::list_routes().map_err(|e| status(Code::INTERNAL, e))?;
    Ok(routes_proto(&list))
}

pub fn add_neighbors(req: &pb::AddARPNeighborsRequest) -> ttrpc::Result<pb::Empty> {
    let neighbors = req
        .neighbors
        .as_ref()
        .map(|n| {
            n.ARPNeighbors
                .iter()
                .map(conv::neighbor_from_proto)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| status(Code::INVALID_ARGUMENT, e))?
        .unwrap_or_default();
    guest::add_neighbors(&neighbors).map_err(|e| status(Code::INTERNAL, e))?;
    Ok(pb::Empty::new())
}

fn routes_proto(routes: &[network::Route]) -> pb::Routes {
    let mut out = pb::Routes::new();
    out.Routes = routes.iter().map(conv::route_to_proto).collect();
    out
}

/// Counters of the guest's interfaces (the pod's network: containers share the guest's
/// namespace), loopback left out as runc does.
pub fn interface_stats() -> Vec<pb::NetworkStats> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<pb::NetworkStats> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name != "lo")
        .map(|name| {
            let counter = |c: &str| -> u64 {
                std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{c}"))
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            let mut s = pb::NetworkStats::new();
            s.rx_bytes = counter("rx_bytes");
            s.rx_packets = counter("rx_packets");
            s.rx_errors = counter("rx_errors");
            s.rx_dropped = counter("rx_dropped");
            s.tx_bytes = counter("tx_bytes");
            s.tx_packets = counter("tx_packets");
            s.tx_errors = counter("tx_errors");
            s.tx_dropped = counter("tx_dropped");
            s.name = name;
            s
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

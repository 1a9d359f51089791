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

//! `kata-runtime kata-network ...` (Kata 1.x's verbs): add or remove an interface of the pod's
//! namespace to or from the running VM (NIC hot-plug over QMP), list the guest's interfaces and
//! routes, replace its routes. The JSON shapes are Kata 1.x's (`IPAddresses`, `hwAddr`...).

use agent_client::messages as msg;
use hypervisor::{Qemu, QemuState};
use network::agent as conv;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use store::{LockMode, SandboxRecord, Status};

use crate::network::{self as net, SandboxNetwork};
use crate::rollback::Rollback;
use crate::{Error, Result, Runtime};

/// An interface as the kata-network verbs read and print it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InterfaceJson {
    /// The link in the pod's namespace (default: `name`).
    #[serde(default)]
    pub device: String,
    /// The interface's name in the guest.
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "IPAddresses")]
    pub ip_addresses: Vec<IpAddressJson>,
    #[serde(default)]
    pub mtu: u64,
    #[serde(default, rename = "hwAddr")]
    pub hw_addr: String,
    #[serde(default, rename = "pciAddr")]
    pub pci_addr: String,
    #[serde(default, rename = "linkType")]
    pub link_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IpAddressJson {
    /// Informative (the address says its family): 0 or 2 IPv4, 1 or 10 IPv6.
    #[serde(default)]
    pub family: i32,
    pub address: String,
    /// Prefix length, as text (`"24"`).
    #[serde(default)]
    pub mask: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteJson {
    /// `10.0.0.0/24`; empty for the default route.
    #[serde(default)]
    pub dest: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub scope: u32,
}

fn bad_json(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Network(format!("malformed {what} JSON: {e}"))
}

fn to_proto(i: &InterfaceJson) -> msg::Interface {
    let mut p = msg::Interface::new();
    p.device = i.device.clone();
    p.name = if i.name.is_empty() {
        i.device.clone()
    } else {
        i.name.clone()
    };
    p.mtu = i.mtu;
    p.hwAddr = i.hw_addr.clone();
    p.pciAddr = i.pci_addr.clone();
    p.type_ = i.link_type.clone();
    p.IPAddresses = i
        .ip_addresses
        .iter()
        .map(|a| {
            let mut ip = msg::IPAddress::new();
            ip.address = a.address.clone();
            ip.mask = a.mask.clone();
            ip
        })
        .collect();
    p
}

fn from_proto(p: &msg::Interface) -> InterfaceJson {
    InterfaceJson {
        device: p.device.clone(),
        name: p.name.clone(),
        ip_addresses: p
            .IPAddresses
            .iter()
            .map(|a| IpAddressJson {
                family: if a.address.contains(':') { 10 } else { 2 },
                address: a.address.clone(),
                mask: a.mask.clone(),
            })
            .collect(),
        mtu: p.mtu,
        hw_addr: p.hwAddr.clone(),
        pci_addr: p.pciAddr.clone(),
        link_type: p.type_.clone(),
    }
}

fn route_json(p: &msg::Route) -> RouteJson {
    RouteJson {
        dest: p.dest.clone(),
        gateway: p.gateway.clone(),
        device: p.device.clone(),
        source: p.source.clone(),
        scope: p.scope,
    }
}

/// The sandbox of container `id`, locked, with its VM running.
fn sandbox_of(
    rt: &Runtime,
    id: &str,
    mode: LockMode,
) -> Result<(SandboxRecord, store::SandboxLock)> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    let lock = rt.store.lock(&rec.sandbox_id, mode)?;
    let rec = rt.store.load_container(id)?;
    let status = crate::state::effective_status(&rec);
    if status == Status::Stopped {
        return Err(Error::BadState {
            id: id.into(),
            status,
            action: "its VM is not running",
        });
    }
    Ok((rt.store.load_sandbox(&rec.sandbox_id)?, lock))
}

fn recorded_network(sb: &SandboxRecord) -> Result<SandboxNetwork> {
    if sb.network.is_null() {
        return Ok(SandboxNetwork::default());
    }
    serde_json::from_value(sb.network.clone())
        .map_err(|e| Error::Network(format!("sandbox {}: unreadable network record: {e}", sb.id)))
}

fn qemu_of(sb: &SandboxRecord) -> Result<Qemu> {
    let state: QemuState = serde_json::from_value(sb.hypervisor.clone())
        .map_err(|e| Error::Unsupported(format!("sandbox {}: hypervisor state: {e}", sb.id)))?;
    Ok(Qemu::from_state(state))
}

fn save_network(rt: &Runtime, mut sb: SandboxRecord, n: &SandboxNetwork) -> Result<()> {
    sb.network =
        serde_json::to_value(n).map_err(|e| Error::Unsupported(format!("network state: {e}")))?;
    rt.store.save_sandbox(&sb)?;
    Ok(())
}

/// `kata-network add-iface`: connects the namespace's link named by `device` (or `name`) and
/// hot-plugs it into the VM; the guest NIC gets the JSON's name, addresses, MTU (defaults: the
/// link's). Prints the interface as the guest has it.
pub fn add_interface(rt: &Runtime, id: &str, json: &[u8]) -> Result<InterfaceJson> {
    let given: InterfaceJson =
        serde_json::from_slice(json).map_err(|e| bad_json("interface", e))?;
    let mut wanted = conv::interface_from_proto(&to_proto(&given)).map_err(net::net_err)?;
    let link = if given.device.is_empty() {
        wanted.name.clone()
    } else {
        given.device.clone()
    };
    let (sb, _lock) = sandbox_of(rt, id, LockMode::Exclusive)?;
    let mut netw = recorded_network(&sb)?;
    let Some(netns) = netw.netns.clone() else {
        return Err(Error::Network(format!(
            "sandbox {} has no network namespace",
            sb.id
        )));
    };
    if netw
        .endpoints
        .iter()
        .any(|e| e.interface.name == wanted.name)
    {
        return Err(Error::Network(format!(
            "sandbox {}: the VM already has an interface {}",
            sb.id, wanted.name
        )));
    }
    let found = network::scan(&netns).map_err(net::net_err)?;
    let endpoint = found.iter().find(|e| e.name == link).ok_or_else(|| {
        Error::Network(format!(
            "no usable interface {link} in {} (it must exist and have an address)",
            netns.display()
        ))
    })?;
    let qemu = qemu_of(&sb)?;
    let bus =
        crate::blockdev::free_port(qemu.config(), &crate::blockdev::used_ports(rt, Some(&sb)))?;
    let dev_id = (0..)
        .map(|n| format!("net{n}"))
        .find(|n| netw.endpoints.iter().all(|e| &e.device.id != n))
        .unwrap_or_else(|| "net0".into());

    let mut undo = Rollback::new();
    let mut ep = net::attach(
        &netns,
        endpoint,
        netw.model,
        net::PhysicalNics::from_config(&rt.config),
        dev_id,
    )?;
    {
        let (ns, e) = (netns.clone(), ep.clone());
        undo.push("disconnect interface", move || net::detach(&ns, &e));
    }
    let timeout = Duration::from_secs(rt.config.agent.kata.request_timeout.max(1));
    let mut qmp = qemu.qmp(timeout).map_err(hypervisor::Error::from)?;
    net::plug(&mut qmp, qemu.config(), &netns, &ep, bus.as_deref())?;
    // The root bus (machines without root ports) is recorded as "": still hot-plugged.
    ep.hotplug_bus = Some(bus.unwrap_or_default());
    if wanted.mac.is_empty() {
        wanted.mac.clone_from(&ep.interface.mac);
    }
    if wanted.mtu == 0 {
        wanted.mtu = ep.interface.mtu;
    }
    if wanted.addresses.is_empty() {
        wanted.addresses.clone_from(&ep.interface.addresses);
    }
    ep.interface = wanted;
    let agent = agent_client::AgentClient::connect(&sb.proxy_socket, rt.call_timeout())?;
    let result = net::configure_interface(&agent, &ep);
    let got = match result {
        Ok(got) => got,
        Err(e) => {
            let _ = hypervisor::nic::unplug(&mut qmp, &ep.device, Duration::from_secs(15));
            return Err(e);
        }
    };
    netw.endpoints.push(ep);
    save_network(rt, sb, &netw)?;
    undo.disarm();
    Ok(from_proto(&got))
}

/// `kata-network del-iface`: unplugs the guest NIC named in the JSON (or with its MAC) and
/// restores the namespace's link.
pub fn del_interface(rt: &Runtime, id: &str, json: &[u8]) -> Result<InterfaceJson> {
    let given: InterfaceJson =
        serde_json::from_slice(json).map_err(|e| bad_json("interface", e))?;
    let name = if given.name.is_empty() {
        &given.device
    } else {
        &given.name
    };
    let (sb, _lock) = sandbox_of(rt, id, LockMode::Exclusive)?;
    let mut netw = recorded_network(&sb)?;
    let pos = netw
        .endpoints
        .iter()
        .position(|e| {
            (!name.is_empty() && &e.interface.name == name)
                || (!given.hw_addr.is_empty()
                    && e.interface.mac.eq_ignore_ascii_case(&given.hw_addr))
        })
        .ok_or_else(|| {
            Error::Network(format!(
                "sandbox {}: no interface {name} {}",
                sb.id, given.hw_addr
            ))
        })?;
    let ep = netw.endpoints[pos].clone();
    if ep.hotplug_bus.is_none() {
        return Err(Error::Network(format!(
            "interface {} was given to the VM at boot and cannot be unplugged from it",
            ep.interface.name
        )));
    }
    let qemu = qemu_of(&sb)?;
    let mut qmp = qemu
        .qmp(Duration::from_secs(
            rt.config.agent.kata.request_timeout.max(1),
        ))
        .map_err(hypervisor::Error::from)?;
    // PCIe hot-unplug waits out the 5 s "attention button" window in the guest.
    hypervisor::nic::unplug(&mut qmp, &ep.device, Duration::from_secs(20)).map_err(net::net_err)?;
    if let Some(netns) = &netw.netns {
        net::detach(netns, &ep);
    }
    netw.endpoints.remove(pos);
    save_network(rt, sb, &netw)?;
    Ok(from_proto(&conv::interface_to_proto(&ep.interface)))
}

pub fn list_interfaces(rt: &Runtime, id: &str) -> Result<Vec<InterfaceJson>> {
    let (_sb, _lock) = sandbox_of(rt, id, LockMode::Shared)?;
    let agent = crate::cli::lifecycle::running_agent(rt, id, "its VM is not running")?;
    let list = agent.list_interfaces(&msg::ListInterfacesRequest::new())?;
    Ok(list.Interfaces.iter().map(from_proto).collect())
}

pub fn list_routes(rt: &Runtime, id: &str) -> Result<Vec<RouteJson>> {
    let (_sb, _lock) = sandbox_of(rt, id, LockMode::Shared)?;
    let agent = crate::cli::lifecycle::running_agent(rt, id, "its VM is not running")?;
    let list = agent.list_routes(&msg::ListRoutesRequest::new())?;
    Ok(list.Routes.iter().map(route_json).collect())
}

/// `kata-network update-routes`: the guest's routes become the JSON array's.
pub fn update_routes(rt: &Runtime, id: &str, json: &[u8]) -> Result<Vec<RouteJson>> {
    let given: Vec<RouteJson> = serde_json::from_slice(json).map_err(|e| bad_json("routes", e))?;
    let routes = given
        .iter()
        .map(|r| {
            let mut p = msg::Route::new();
            p.dest = r.dest.clone();
            p.gateway = r.gateway.clone();
            p.device = r.device.clone();
            p.source = r.source.clone();
            p.scope = r.scope;
            conv::route_from_proto(&p).map_err(net::net_err)
        })
        .collect::<Result<Vec<_>>>()?;
    let (_sb, _lock) = sandbox_of(rt, id, LockMode::Shared)?;
    let agent = crate::cli::lifecycle::running_agent(rt, id, "its VM is not running")?;
    let now = net::update_routes(&agent, routes)?;
    Ok(now.Routes.iter().map(route_json).collect())
}

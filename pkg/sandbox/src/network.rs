//! The sandbox's network, Kata 1.x's way: the caller (CNI, podman, containerd CRI) made a
//! network namespace with interfaces in it; the VM runs inside that namespace and each
//! interface becomes a guest NIC with the same MAC, addresses and routes.
//!
//! - The spec names the namespace (`linux.namespaces` entry `network` with a `path`).
//! - An entry without a path: a fresh, empty namespace is made for the VM (no NIC).
//! - No entry, or the host's own namespace by any path: host networking, which a VM cannot
//!   share; refused (`crate::namespaces`).
//! - A physical PCI NIC in the pod's namespace is passed to the VM with VFIO (unbound from its
//!   host driver) only when `[runtime] physical_nic_passthrough = true`, and never from the
//!   host's namespace.
//!
//! What connecting changed is kept in the sandbox record ([`SandboxNetwork`]) and undone
//! on delete, so the caller's namespace is left as it was found.

use std::path::{Path, PathBuf};

use agent_client::{messages as msg, AgentClient};
use hypervisor::{NetBackend, NetDevice};
use network::agent as conv;
use network::guest::Interface;
use network::vfio::VfioBinding;
use network::{LinkKind, Model, Route, TapPair};
use serde::{Deserialize, Serialize};

use crate::rollback::Rollback;
use crate::{Error, Result};

/// Where the VM's namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetnsPlan {
    /// The caller's namespace, at this path.
    Given(PathBuf),
    /// The spec asks for a new namespace: the runtime makes one.
    Fresh,
}

/// The sandbox's network as recorded in its state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SandboxNetwork {
    pub netns: Option<PathBuf>,
    /// The runtime made the namespace and removes it with the sandbox.
    #[serde(default)]
    pub netns_created: bool,
    #[serde(default)]
    pub model: Model,
    #[serde(default)]
    pub endpoints: Vec<NetEndpoint>,
}

/// One interface of the namespace and the guest NIC it became.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetEndpoint {
    pub interface: Interface,
    pub routes: Vec<Route>,
    /// Static ARP/NDP entries of the interface, given to the guest too.
    #[serde(default)]
    pub neighbors: Vec<network::guest::Neighbor>,
    pub device: NetDevice,
    pub attachment: Attachment,
    /// The root port it was hot-plugged into (`kata-network add-iface`); None: at boot.
    #[serde(default)]
    pub hotplug_bus: Option<String>,
}

/// How the interface reaches the VM, with what must be undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Attachment {
    Tap { pair: TapPair },
    Vfio { binding: VfioBinding },
    VhostUser { socket: PathBuf },
}

pub(crate) fn net_err(e: impl std::fmt::Display) -> Error {
    Error::Network(e.to_string())
}

/// The sandbox's namespace from the spec.
pub(crate) fn plan(spec: &oci_spec::runtime::Spec) -> Result<NetnsPlan> {
    let entry = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|n| {
            n.iter()
                .find(|ns| ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
                .cloned()
        });
    let Some(entry) = entry else {
        return Err(Error::Network(
            "the spec has no network namespace, i.e. host networking, which a VM cannot share: \
             add {\"type\": \"network\"} (optionally with a \"path\") to linux.namespaces"
                .into(),
        ));
    };
    match entry.path() {
        Some(p) if !p.as_os_str().is_empty() => {
            if !p.exists() {
                return Err(Error::Network(format!(
                    "network namespace {} does not exist",
                    p.display()
                )));
            }
            Ok(NetnsPlan::Given(p.clone()))
        }
        _ => Ok(NetnsPlan::Fresh),
    }
}

/// The configured interworking model (an unknown name is an error before anything starts).
pub(crate) fn model(name: &str) -> Result<Model> {
    name.parse::<Model>().map_err(|e| {
        Error::Network(format!(
            "configuration [runtime] internetworking_model: {e}"
        ))
    })
}

/// Makes the namespace ready for the VM: a fresh one is created in `vm_dir`; a given one is
/// scanned and each usable interface connected (tap by `model`, VFIO for a PCI NIC, or a
/// vhost-user socket). Every step is registered in `undo`.
pub(crate) fn setup(
    plan: &NetnsPlan,
    model: Model,
    physical: PhysicalNics,
    vm_dir: &Path,
    undo: &mut Rollback,
) -> Result<SandboxNetwork> {
    let path = match plan {
        NetnsPlan::Fresh => {
            let path = vm_dir.join("netns");
            network::netns::create_persistent(&path).map_err(net_err)?;
            let p = path.clone();
            undo.push("remove network namespace", move || {
                let _ = network::netns::remove_persistent(&p);
            });
            return Ok(SandboxNetwork {
                netns: Some(path),
                netns_created: true,
                model,
                endpoints: Vec::new(),
            });
        }
        NetnsPlan::Given(path) => path.clone(),
    };
    let mut net = SandboxNetwork {
        netns: Some(path.clone()),
        netns_created: false,
        model,
        endpoints: Vec::new(),
    };
    if model == Model::None {
        log::info!(
            "network model none: the VM gets no NIC from {}",
            path.display()
        );
        return Ok(net);
    }
    let found = network::scan(&path).map_err(net_err)?;
    for (i, endpoint) in found.iter().enumerate() {
        let ep = attach(&path, endpoint, model, physical, format!("net{i}"))?;
        let undo_ep = ep.clone();
        let undo_ns = path.clone();
        undo.push("disconnect interface", move || detach(&undo_ns, &undo_ep));
        net.endpoints.push(ep);
        persist_progress(vm_dir, &net);
    }
    Ok(net)
}

/// The file in the VM folder that says what the network setup changed so far: a `create`
/// killed before it saved the sandbox's record leaves this for `delete --force`.
const PROGRESS_FILE: &str = "network.json";

fn persist_progress(vm_dir: &Path, net: &SandboxNetwork) {
    let written = serde_json::to_vec(net)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            store::write_atomic(&vm_dir.join(PROGRESS_FILE), &bytes).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        log::warn!("recording the network setup in {}: {e}", vm_dir.display());
    }
}

/// What a killed `create` recorded with [`persist_progress`] (null when nothing).
pub(crate) fn recorded_progress(vm_dir: &Path) -> serde_json::Value {
    std::fs::read(vm_dir.join(PROGRESS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// What may happen to a physical PCI NIC found in the pod's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhysicalNics {
    /// Refused: passing it means unbinding it from its host driver.
    Refuse,
    /// Unbound from its driver, bound to vfio-pci and passed to the VM (Kata 1.x's way).
    PassThrough,
}

impl PhysicalNics {
    pub(crate) fn from_config(config: &config::Config) -> Self {
        match config.runtime.physical_nic_passthrough {
            true => PhysicalNics::PassThrough,
            false => PhysicalNics::Refuse,
        }
    }
}

/// Connects one interface of the namespace at `netns`, as guest NIC `id`.
pub(crate) fn attach(
    netns: &Path,
    endpoint: &network::Endpoint,
    model: Model,
    physical: PhysicalNics,
    id: String,
) -> Result<NetEndpoint> {
    let interface = conv::endpoint_interface(endpoint);
    let (backend, attachment) = if let Some(socket) =
        network::vhost_user::socket_for(Path::new(network::vhost_user::SOCKET_BASE), endpoint)
    {
        (
            NetBackend::VhostUser {
                socket: socket.clone(),
            },
            Attachment::VhostUser { socket },
        )
    } else if let LinkKind::Physical { pci_address, .. } = &endpoint.kind {
        // Never a NIC of the host's own namespace, whatever the configuration says.
        if crate::namespaces::is_host_namespace(netns, "net") {
            return Err(Error::Network(format!(
                "{} is the host's own network namespace: its NIC {} ({pci_address}) stays with \
                 the host",
                netns.display(),
                endpoint.name
            )));
        }
        if physical == PhysicalNics::Refuse {
            return Err(Error::Network(format!(
                "interface {} in {} is a physical PCI NIC ({pci_address}): passing it to the VM \
                 unbinds it from its host driver; set [runtime] physical_nic_passthrough = true \
                 to allow that",
                endpoint.name,
                netns.display()
            )));
        }
        let binding = network::vfio::bind(Path::new("/sys"), pci_address).map_err(net_err)?;
        (
            NetBackend::Vfio {
                host: binding.pci_address.clone(),
            },
            Attachment::Vfio { binding },
        )
    } else {
        let pair = network::connect(netns, endpoint, model).map_err(net_err)?;
        let backend = match &pair.device {
            Some(device) => NetBackend::Macvtap {
                device: device.clone(),
            },
            None => NetBackend::Tap {
                ifname: pair.tap.clone(),
            },
        };
        (backend, Attachment::Tap { pair })
    };
    log::info!(
        "network: {} ({}) -> guest NIC {id} via {}",
        endpoint.name,
        endpoint.mac,
        match &attachment {
            Attachment::Tap { pair } => format!("{} {}", pair.model, pair.tap),
            Attachment::Vfio { binding } => format!("VFIO {}", binding.pci_address),
            Attachment::VhostUser { socket } => format!("vhost-user {}", socket.display()),
        }
    );
    Ok(NetEndpoint {
        interface,
        routes: endpoint
            .routes
            .iter()
            .filter(|r| r.protocol != Route::PROTOCOL_KERNEL)
            .cloned()
            .collect(),
        neighbors: endpoint.neighbors.clone(),
        device: NetDevice {
            id,
            mac: endpoint.mac.clone(),
            backend,
        },
        attachment,
        hotplug_bus: None,
    })
}

/// Whether `ep`'s NIC can be added to a VM that is already running: taps and macvtaps can;
/// vhost-user needs guest memory shared from boot, VFIO devices are kept for boot.
pub(crate) fn hotpluggable(ep: &NetEndpoint) -> bool {
    matches!(
        ep.device.backend,
        NetBackend::Tap { .. } | NetBackend::Macvtap { .. }
    )
}

/// Hot-plugs the NIC of `ep` into the running VM `vm` on `bus`. A QEMU started outside the
/// pod's namespace (a VM from the factory's cache) cannot open the tap by name: it is opened
/// here, inside the namespace, and handed over.
pub(crate) fn plug(
    qmp: &mut hypervisor::QmpClient,
    vm: &hypervisor::VmConfig,
    netns: &Path,
    ep: &NetEndpoint,
    bus: Option<&str>,
) -> Result<()> {
    let opened = match &ep.device.backend {
        NetBackend::Tap { ifname } if vm.netns.as_deref() != Some(netns) => Some(
            network::netns::run_in(netns, || network::tap::open_queue(ifname))
                .map_err(net_err)?
                .map_err(net_err)?,
        ),
        _ => None,
    };
    hypervisor::nic::plug(qmp, &ep.device, bus, vhost_net_usable(), opened.as_ref())
        .map_err(net_err)
}

/// Undoes [`attach`]; failures are logged (a delete goes on).
pub(crate) fn detach(netns: &Path, ep: &NetEndpoint) {
    let result = match &ep.attachment {
        Attachment::Tap { pair } => network::disconnect(netns, pair).map_err(net_err),
        Attachment::Vfio { binding } => {
            network::vfio::restore(Path::new("/sys"), binding).map_err(net_err)
        }
        Attachment::VhostUser { .. } => Ok(()),
    };
    if let Err(e) = result {
        log::warn!("network: disconnecting {}: {e}", ep.interface.name);
    }
}

/// `/dev/vhost-net` can be opened: tap NICs use in-kernel virtio-net.
pub(crate) fn vhost_net_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/vhost-net")
        .is_ok()
}

/// Has the agent give each NIC its interface's name, MAC, MTU and addresses, then install the
/// routes (after every interface, since a route may go through any of them).
pub(crate) fn configure_guest(agent: &AgentClient, net: &SandboxNetwork) -> Result<()> {
    for ep in &net.endpoints {
        configure_interface(agent, ep)?;
    }
    update_routes(
        agent,
        net.endpoints
            .iter()
            .flat_map(|e| e.routes.iter())
            .cloned()
            .collect(),
    )?;
    let neighbors: Vec<_> = net
        .endpoints
        .iter()
        .flat_map(|e| e.neighbors.iter())
        .collect();
    if !neighbors.is_empty() {
        let mut list = msg::ARPNeighbors::new();
        list.ARPNeighbors = neighbors.into_iter().map(conv::neighbor_to_proto).collect();
        let mut req = msg::AddARPNeighborsRequest::new();
        req.neighbors = Some(list).into();
        agent.add_arp_neighbors(&req)?;
    }
    Ok(())
}

pub(crate) fn configure_interface(agent: &AgentClient, ep: &NetEndpoint) -> Result<msg::Interface> {
    let mut req = msg::UpdateInterfaceRequest::new();
    req.interface = Some(conv::interface_to_proto(&ep.interface)).into();
    Ok(agent.update_interface(&req)?)
}

pub(crate) fn update_routes(agent: &AgentClient, routes: Vec<Route>) -> Result<msg::Routes> {
    let mut list = msg::Routes::new();
    list.Routes = routes.iter().map(conv::route_to_proto).collect();
    let mut req = msg::UpdateRoutesRequest::new();
    req.routes = Some(list).into();
    Ok(agent.update_routes(&req)?)
}

/// The pod's network namespace a sandbox record (or a killed create's progress) names.
pub(crate) fn recorded_netns(recorded: &serde_json::Value) -> Option<PathBuf> {
    serde_json::from_value::<SandboxNetwork>(recorded.clone())
        .ok()
        .and_then(|n| n.netns)
}

/// The PCIe root ports the sandbox's hot-plugged NICs are on.
pub(crate) fn hotplug_ports(recorded: &serde_json::Value) -> Vec<String> {
    serde_json::from_value::<SandboxNetwork>(recorded.clone())
        .map(|n| {
            n.endpoints
                .into_iter()
                .filter_map(|e| e.hotplug_bus)
                .collect()
        })
        .unwrap_or_default()
}

/// Undoes everything the sandbox's network changed; called after the VM has stopped.
pub(crate) fn teardown(sandbox_id: &str, recorded: &serde_json::Value) {
    if recorded.is_null() {
        return;
    }
    let net: SandboxNetwork = match serde_json::from_value(recorded.clone()) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("sandbox {sandbox_id}: unreadable network record: {e}");
            return;
        }
    };
    let Some(netns) = &net.netns else {
        return;
    };
    for ep in &net.endpoints {
        detach(netns, ep);
    }
    if net.netns_created {
        if let Err(e) = network::netns::remove_persistent(netns) {
            log::warn!("sandbox {sandbox_id}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: serde_json::Value) -> oci_spec::runtime::Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn namespace_plans() {
        let fresh = spec(serde_json::json!([{"type": "pid"}, {"type": "network"}]));
        assert_eq!(plan(&fresh).unwrap(), NetnsPlan::Fresh);
        let given = spec(serde_json::json!([{"type": "network", "path": "/proc/self/ns/net"}]));
        assert_eq!(
            plan(&given).unwrap(),
            NetnsPlan::Given("/proc/self/ns/net".into())
        );
        // (create refuses the host's namespace before planning: crate::namespaces.)
        let missing =
            spec(serde_json::json!([{"type": "network", "path": "/var/run/netns/nope-x"}]));
        let e = plan(&missing).unwrap_err().to_string();
        assert!(e.contains("/var/run/netns/nope-x does not exist"), "{e}");
        let host = spec(serde_json::json!([{"type": "pid"}]));
        let e = plan(&host).unwrap_err().to_string();
        assert!(e.contains("host networking"), "{e}");
    }

    fn physical_nic() -> network::Endpoint {
        serde_json::from_value(serde_json::json!({
            "name": "eth0", "index": 2, "mac": "02:00:00:00:00:01", "mtu": 1500,
            "addresses": [], "routes": [],
            "kind": {"type": "physical", "pci_address": "0000:3b:00.1", "driver": "ixgbevf"}
        }))
        .unwrap()
    }

    /// Nothing is unbound from its host driver without the configuration's consent, and never
    /// from the host's namespace (these return before any sysfs write).
    #[test]
    fn physical_nics_need_consent_and_never_come_from_the_host() {
        let ep = physical_nic();
        let e = attach(
            Path::new("/nonexistent/pod-netns"),
            &ep,
            Model::TcFilter,
            PhysicalNics::Refuse,
            "net0".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("physical_nic_passthrough = true") && e.contains("0000:3b:00.1"),
            "{e}"
        );
        let e = attach(
            Path::new("/proc/self/ns/net"),
            &ep,
            Model::TcFilter,
            PhysicalNics::PassThrough,
            "net0".into(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("host's own network namespace"), "{e}");
    }

    #[test]
    fn models() {
        assert_eq!(model("macvtap").unwrap(), Model::MacVtap);
        let e = model("warp").unwrap_err().to_string();
        assert!(
            e.contains("internetworking_model") && e.contains("warp"),
            "{e}"
        );
    }
}

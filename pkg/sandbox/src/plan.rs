//! What a `create` of container `id` from a bundle will be, decided before anything is made:
//! the id and bundle checked, the configuration with the pod's annotations applied, and
//! whether the container boots a sandbox of its own or joins one. Every front end starts here,
//! so bad input is refused the same way through each.

use crate::{Error, Result, Runtime};
use oci::{Bundle, ContainerType};
use std::path::Path;

pub struct CreatePlan {
    /// The runtime with the pod's configuration overrides applied.
    pub rt: Runtime,
    pub bundle: Bundle,
    /// The sandbox the container joins; `None`: it gets a sandbox (a VM) of its own.
    pub joins: Option<String>,
}

pub fn plan(rt: &Runtime, id: &str, bundle: &Path) -> Result<CreatePlan> {
    oci::validate_id(id)?;
    if rt.store.exists(id) {
        return Err(store::Error::Exists(id.into()).into());
    }
    let bundle = Bundle::load(bundle)?;
    let annotations = bundle.spec.annotations().clone().unwrap_or_default();
    // Per-pod overrides (`io.katacontainers.config.*`, a safe list only) shape this sandbox;
    // for a member of an existing sandbox they are checked the same way but its VM is made.
    let mut pod_config = rt.config.clone();
    let applied = pod_config.apply_annotations(&annotations)?;
    if !applied.is_empty() {
        log::info!("container {id}: configuration overridden by annotations {applied:?}");
    }
    let rt = Runtime {
        store: rt.store.clone(),
        config: pod_config,
    };
    let kind = oci::container_type(Some(&annotations))?;
    warn_ignored_fields(id, &bundle.spec);
    let driver = &rt.config.hypervisor.qemu.block_device_driver;
    if driver != "virtio-blk" {
        return Err(Error::Unsupported(format!(
            "configuration [hypervisor.qemu] block_device_driver = {driver:?}: only \"virtio-blk\" is supported"
        )));
    }
    let joins = match kind {
        ContainerType::PodContainer { sandbox_id } => Some(sandbox_id),
        ContainerType::Sandbox => crate::namespaces::sandbox_named_by_pid(&rt, &bundle.spec)
            .inspect(|sandbox_id| {
                log::info!(
                    "container {id}: shares namespaces of sandbox {sandbox_id}: joins its VM"
                )
            }),
    };
    match &joins {
        Some(sandbox_id) if sandbox_id == id => {
            return Err(Error::Unsupported(format!(
                "container {id} cannot join sandbox {sandbox_id}: a container cannot be its own sandbox"
            )))
        }
        Some(_) => crate::namespaces::refuse_host_pid(&bundle.spec)?,
        None => {
            crate::namespaces::check_paths(&bundle.spec)?;
            crate::namespaces::refuse_host_namespaces(&bundle.spec)?;
            // Resolve the network before anything is created: a bad one is reported up front.
            crate::network::plan(&bundle.spec)?;
            crate::network::model(&rt.config.runtime.internetworking_model)?;
        }
    }
    Ok(CreatePlan { rt, bundle, joins })
}

/// Host security labels mean nothing inside the VM, whose kernel is the boundary: ignored,
/// with a warning, never an error (as Kata 1.x).
fn warn_ignored_fields(id: &str, spec: &oci_spec::runtime::Spec) {
    let process = spec.process().as_ref();
    let fields = [
        (
            "process.apparmorProfile",
            process.and_then(|p| p.apparmor_profile().clone()),
        ),
        (
            "process.selinuxLabel",
            process.and_then(|p| p.selinux_label().clone()),
        ),
        (
            "linux.mountLabel",
            spec.linux().as_ref().and_then(|l| l.mount_label().clone()),
        ),
    ];
    for (field, value) in fields {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            log::warn!("container {id}: {field} {v:?} does not apply inside a VM: ignored");
        }
    }
}

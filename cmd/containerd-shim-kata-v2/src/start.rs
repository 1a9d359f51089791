//! `start`: the address of the pod's shim, starting the shim if the pod has none yet.
//!
//! containerd runs `start` once per task, in the task's bundle. Tasks of one pod share one
//! shim: the socket address is derived from the pod's sandbox id (the CRI annotations that
//! make a container a pod member; a container of its own is its own sandbox). The shim
//! started for a later member finds the pod's socket alive and exits at once, and the address
//! printed is the running shim's. containerd 1.6 reads the bare address on stdout.

use anyhow::Context;
use containerd_shim::{Flags, StartOpts};
use std::io::Write;

pub fn run(flags: &Flags) -> anyhow::Result<()> {
    let spec = containerd_shim::util::read_spec_from_file("")
        .context("reading the bundle's config.json")?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let grouping = match oci::container_type(Some(&annotations))? {
        oci::ContainerType::PodContainer { sandbox_id } => sandbox_id,
        oci::ContainerType::Sandbox => flags.id.clone(),
    };
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    let (_pid, address) =
        containerd_shim::spawn(opts, &grouping, Vec::new()).context("starting the shim")?;
    containerd_shim::util::write_address(&address).context("writing the address file")?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())?;
    out.flush()?;
    Ok(())
}

//! `update`: new resource limits, from `--resources FILE|-` (OCI LinuxResources JSON) and/or
//! runc's flags, applied to the container's cgroup in the guest.

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources};
use sandbox::Runtime;
use std::io::Read;

pub fn update(rt: &Runtime, u: &liboci_cli::Update) -> anyhow::Result<u8> {
    let mut r: LinuxResources = match &u.resources {
        Some(path) => {
            let mut text = Vec::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .context("reading resources from stdin")?;
            } else {
                text =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            }
            serde_json::from_slice(&text).context("malformed resources JSON")?
        }
        None => LinuxResources::default(),
    };
    if u.memory.is_some() || u.memory_reservation.is_some() || u.memory_swap.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = u.memory {
            m.set_limit(Some(i64::try_from(v).context("--memory too large")?));
        }
        if let Some(v) = u.memory_reservation {
            m.set_reservation(Some(
                i64::try_from(v).context("--memory-reservation too large")?,
            ));
        }
        if let Some(v) = u.memory_swap {
            m.set_swap(Some(v));
        }
        r.set_memory(Some(m));
    }
    if u.cpu_quota.is_some() || u.cpu_period.is_some() || u.cpu_share.is_some() {
        let mut c: LinuxCpu = r.cpu().clone().unwrap_or_default();
        if let Some(v) = u.cpu_quota {
            c.set_quota(Some(i64::try_from(v).context("--cpu-quota too large")?));
        }
        if let Some(v) = u.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = u.cpu_share {
            c.set_shares(Some(v));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = u.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    if u.cpuset_cpus.is_some() || u.cpuset_mems.is_some() {
        log::warn!("cpuset updates are ignored: the guest's CPUs are not the host's");
    }
    if r.memory().is_none() && r.cpu().is_none() && r.pids().is_none() && r.block_io().is_none() {
        bail!("update: no resources given (--resources FILE|- or a resource flag)");
    }
    sandbox::update(rt, &u.container_id, &r)?;
    Ok(0)
}

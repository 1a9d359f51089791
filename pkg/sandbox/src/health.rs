//! `kata-runtime kata-check --sandbox ID`: a running sandbox checked end to end, one probe per
//! link of the chain a container call goes through (QEMU and its QMP monitor, virtiofsd, the
//! proxy, the agent behind it, each container's shim), so a broken link is named.

use crate::{Result, Runtime};
use hypervisor::{Qemu, QemuState};
use serde::Serialize;
use std::time::{Duration, Instant};
use store::{LockMode, Status};

/// How long one probe may take: a healthy sandbox answers in milliseconds even under TCG.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub component: String,
    pub ok: bool,
    pub detail: String,
    /// Round-trip time of the probe's request, when it made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

fn probe(component: impl Into<String>, ok: bool, detail: impl Into<String>) -> Probe {
    Probe {
        component: component.into(),
        ok,
        detail: detail.into(),
        rtt_ms: None,
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Probes the sandbox `id` names (its own id or any member's).
pub fn check_sandbox(rt: &Runtime, id: &str) -> Result<(String, Vec<Probe>)> {
    oci::validate_id(id)?;
    let rec = rt.store.load_container(id)?;
    // Shared: probes must not race a hot-plug (exclusive) for QEMU's single QMP client slot.
    let _lock = rt.store.lock(&rec.sandbox_id, LockMode::Shared)?;
    let sb = rt.store.load_sandbox(&rec.sandbox_id)?;
    let mut probes = Vec::new();

    match serde_json::from_value::<QemuState>(sb.hypervisor.clone()) {
        Err(e) => probes.push(probe("qemu", false, format!("no VM state recorded: {e}"))),
        Ok(state) => {
            let alive = state.qemu_process().is_alive();
            probes.push(probe(
                "qemu",
                alive,
                match alive {
                    true => format!("pid {} running ({})", state.pid, state.accel),
                    false => format!("pid {} is gone", state.pid),
                },
            ));
            probes.push(qmp_probe(&state, alive));
            if let Some(v) = state.virtiofsd_pid {
                let alive = v.is_alive();
                probes.push(probe(
                    "virtiofsd",
                    alive,
                    format!(
                        "pid {} {}",
                        v.pid,
                        if alive { "running" } else { "is gone" }
                    ),
                ));
            }
        }
    }

    let proxy_alive = sb.proxy.is_some_and(|p| p.alive());
    probes.push(probe(
        "proxy",
        proxy_alive,
        match (sb.proxy, proxy_alive) {
            (Some(p), true) => format!("pid {} serving {}", p.pid, sb.proxy_socket.display()),
            (Some(p), false) => format!("pid {} is gone", p.pid),
            (None, _) => "no proxy recorded".into(),
        },
    ));
    probes.push(agent_probe(&sb.proxy_socket));

    for cid in &sb.containers {
        let component = format!("shim {cid}");
        let Ok(c) = rt.store.load_container(cid) else {
            probes.push(probe(component, false, "no record"));
            continue;
        };
        let shim_alive = c.shim.is_some_and(|p| p.alive());
        let pid = c.shim.map(|p| p.pid).unwrap_or(0);
        probes.push(match (c.status, shim_alive) {
            (Status::Stopped, _) => probe(component, true, "container stopped: no shim needed"),
            (_, true) => probe(component, true, format!("pid {pid} running ({})", c.status)),
            (status, false) => probe(
                component,
                false,
                format!("container is {status} but its shim (pid {pid}) is gone"),
            ),
        });
    }
    Ok((sb.id, probes))
}

fn qmp_probe(state: &QemuState, alive: bool) -> Probe {
    if !alive {
        return probe("qmp", false, "QEMU is not running");
    }
    let qemu = Qemu::from_state(state.clone());
    let start = Instant::now();
    let answer = qemu
        .qmp(PROBE_TIMEOUT)
        .map_err(|e| e.to_string())
        .and_then(|mut q| q.execute("query-status", None).map_err(|e| e.to_string()));
    let rtt = start.elapsed();
    let mut p = match answer {
        Ok(v) => {
            let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("?");
            probe(
                "qmp",
                matches!(status, "running" | "paused"),
                format!("query-status: {status}"),
            )
        }
        Err(e) => probe("qmp", false, e),
    };
    p.rtt_ms = Some(ms(rtt));
    p
}

fn agent_probe(socket: &std::path::Path) -> Probe {
    // The round trip of Health.Check alone: runtime -> proxy -> virtio-serial -> agent.
    let answer = agent_client::AgentClient::connect(socket, PROBE_TIMEOUT).and_then(|a| {
        let start = Instant::now();
        a.check()?;
        let rtt = start.elapsed();
        Ok((rtt, a.version()?))
    });
    match answer {
        Ok((rtt, version)) => Probe {
            rtt_ms: Some(ms(rtt)),
            ..probe(
                "agent",
                true,
                format!("Health.Check: serving (agent {version})"),
            )
        },
        Err(e) => probe("agent", false, e.to_string()),
    }
}

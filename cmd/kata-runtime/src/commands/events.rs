//! `events`: runc's JSON event lines. `--stats` prints one stats event; otherwise a stats
//! event every `--interval` seconds until the container stops, and runc's `oom` event
//! (`{"type":"oom","id":ID}`) as soon as the guest's OOM killer kills a process of the
//! container. The figures are the guest cgroup's, where the container's processes really run
//! (not the VM's as seen from the host).

use sandbox::Runtime;
use std::io::Write;
use std::time::{Duration, Instant};

/// How often OOM kills are looked for between stats events (one agent call).
const OOM_POLL: Duration = Duration::from_millis(250);

fn emit(line: serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

pub fn events(rt: &Runtime, e: &crate::cli::Events) -> anyhow::Result<u8> {
    let id = &e.container_id;
    if e.stats {
        let data = sandbox::stats(rt, id)?;
        emit(serde_json::json!({"type": "stats", "id": id, "data": data}))?;
        return Ok(0);
    }
    // A zero interval would spin against the agent.
    let interval = e.interval.max(Duration::from_millis(100));
    let mut ooms = sandbox::oom_kills(rt, id).unwrap_or(0);
    let mut next_stats = Instant::now();
    loop {
        let stopped = sandbox::state(rt, id)?.status == "stopped";
        // Looked at once more after the container stopped: an OOM kill is often why.
        if let Ok(now) = sandbox::oom_kills(rt, id) {
            if now > ooms {
                emit(serde_json::json!({"type": "oom", "id": id}))?;
            }
            ooms = ooms.max(now);
        }
        if stopped {
            return Ok(0);
        }
        if Instant::now() >= next_stats {
            match sandbox::stats(rt, id) {
                Ok(data) => emit(serde_json::json!({"type": "stats", "id": id, "data": data}))?,
                Err(err) if sandbox::state(rt, id)?.status == "stopped" => {
                    log::debug!("events {id}: stopped while reading stats: {err}")
                }
                Err(err) => return Err(err.into()),
            }
            next_stats = Instant::now() + interval;
        }
        std::thread::sleep(OOM_POLL.min(interval));
    }
}

//! `events`: runc's JSON event lines. `--stats` prints one stats event; otherwise a stats
//! event every `--interval` seconds until the container stops. The figures are the guest
//! cgroup's, where the container's processes really run (not the VM's as seen from the host).

use sandbox::Runtime;
use std::io::Write;
use std::time::Duration;

pub fn events(rt: &Runtime, e: &crate::cli::Events) -> anyhow::Result<u8> {
    loop {
        let data = sandbox::stats(rt, &e.container_id)?;
        let line = serde_json::json!({"type": "stats", "id": e.container_id, "data": data});
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        if e.stats {
            return Ok(0);
        }
        // A zero interval would spin against the agent.
        std::thread::sleep(e.interval.max(Duration::from_millis(100)));
        if sandbox::state(rt, &e.container_id)?.status == "stopped" {
            return Ok(0);
        }
    }
}

//! A container's statistics from its guest cgroup (the agent's StatsContainer answer), shaped
//! as runc's `events --stats` data.

use agent_client::messages as msg;

pub fn runc_stats(resp: &msg::StatsContainerResponse) -> serde_json::Value {
    let s = resp.cgroup_stats.clone().unwrap_or_default();
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let usage = cpu.cpu_usage.clone().unwrap_or_default();
    let thr = cpu.throttling_data.clone().unwrap_or_default();
    let mem = s.memory_stats.clone().unwrap_or_default();
    let mu = mem.usage.clone().unwrap_or_default();
    let pids = s.pids_stats.clone().unwrap_or_default();
    let blkio = s.blkio_stats.clone().unwrap_or_default();
    let blk_entries = |entries: &[msg::BlkioStatsEntry]| -> Vec<serde_json::Value> {
        entries
            .iter()
            .map(|e| serde_json::json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect()
    };
    let interfaces: Vec<serde_json::Value> = resp
        .network_stats
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped,
            })
        })
        .collect();
    serde_json::json!({
        "cpu": {
            "usage": {
                "total": usage.total_usage,
                "percpu": usage.percpu_usage,
                "kernel": usage.usage_in_kernelmode,
                "user": usage.usage_in_usermode,
            },
            "throttling": {
                "periods": thr.periods,
                "throttledPeriods": thr.throttled_periods,
                "throttledTime": thr.throttled_time,
            },
        },
        "memory": {
            "cache": mem.cache,
            "usage": {"usage": mu.usage, "max": mu.max_usage, "limit": mu.limit, "failcnt": mu.failcnt},
            "raw": mem.stats,
        },
        "pids": {"current": pids.current, "limit": pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blk_entries(&blkio.io_service_bytes_recursive),
            "ioServicedRecursive": blk_entries(&blkio.io_serviced_recursive),
        },
        "hugetlb": {},
        "network_interfaces": interfaces,
    })
}

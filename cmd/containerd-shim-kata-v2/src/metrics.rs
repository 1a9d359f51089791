//! containerd's cgroup metrics (`io.containerd.cgroups.v1.Metrics`, which containerd 1.6's CRI
//! reads for CPU, memory working set and pids) from the agent's statistics of a container's
//! guest cgroup. The guest runs cgroup v2: its memory.stat keys are mapped to v1's names.

use agent_client::messages as msg;
use containerd_shim::protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, MemoryEntry, MemoryOomControl, MemoryStat, Metrics,
    NetworkStat, PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField, MessageFull};

pub fn from_agent(resp: &msg::StatsContainerResponse) -> Metrics {
    let s = resp.cgroup_stats.clone().unwrap_or_default();
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let usage = cpu.cpu_usage.clone().unwrap_or_default();
    let thr = cpu.throttling_data.clone().unwrap_or_default();
    let mem = s.memory_stats.clone().unwrap_or_default();
    let mu = mem.usage.clone().unwrap_or_default();
    let pids = s.pids_stats.clone().unwrap_or_default();
    let blkio = s.blkio_stats.clone().unwrap_or_default();
    let key = |k: &str| mem.stats.get(k).copied().unwrap_or(0);
    let entries = |list: &[msg::BlkioStatsEntry]| -> Vec<BlkIOEntry> {
        list.iter()
            .map(|e| BlkIOEntry {
                op: e.op.clone(),
                major: e.major,
                minor: e.minor,
                value: e.value,
                ..Default::default()
            })
            .collect()
    };
    Metrics {
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: usage.total_usage,
                kernel: usage.usage_in_kernelmode,
                user: usage.usage_in_usermode,
                per_cpu: usage.percpu_usage.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(Throttle {
                periods: thr.periods,
                throttled_periods: thr.throttled_periods,
                throttled_time: thr.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            cache: mem.cache,
            total_cache: mem.cache,
            rss: key("anon"),
            total_rss: key("anon"),
            mapped_file: key("file_mapped"),
            total_mapped_file: key("file_mapped"),
            dirty: key("file_dirty"),
            total_dirty: key("file_dirty"),
            writeback: key("file_writeback"),
            total_writeback: key("file_writeback"),
            pg_fault: key("pgfault"),
            total_pg_fault: key("pgfault"),
            pg_maj_fault: key("pgmajfault"),
            total_pg_maj_fault: key("pgmajfault"),
            inactive_anon: key("inactive_anon"),
            total_inactive_anon: key("inactive_anon"),
            active_anon: key("active_anon"),
            total_active_anon: key("active_anon"),
            inactive_file: key("inactive_file"),
            total_inactive_file: key("inactive_file"),
            active_file: key("active_file"),
            total_active_file: key("active_file"),
            unevictable: key("unevictable"),
            total_unevictable: key("unevictable"),
            usage: MessageField::some(MemoryEntry {
                usage: mu.usage,
                max: mu.max_usage,
                limit: mu.limit,
                failcnt: mu.failcnt,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory_oom_control: MessageField::some(MemoryOomControl {
            oom_kill: sandbox::oom_kills_in(resp),
            ..Default::default()
        }),
        pids: MessageField::some(PidsStat {
            current: pids.current,
            limit: pids.limit,
            ..Default::default()
        }),
        blkio: MessageField::some(BlkIOStat {
            io_service_bytes_recursive: entries(&blkio.io_service_bytes_recursive),
            io_serviced_recursive: entries(&blkio.io_serviced_recursive),
            ..Default::default()
        }),
        network: resp
            .network_stats
            .iter()
            .map(|n| NetworkStat {
                name: n.name.clone(),
                rx_bytes: n.rx_bytes,
                rx_packets: n.rx_packets,
                rx_errors: n.rx_errors,
                rx_dropped: n.rx_dropped,
                tx_bytes: n.tx_bytes,
                tx_packets: n.tx_packets,
                tx_errors: n.tx_errors,
                tx_dropped: n.tx_dropped,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Packed for StatsResponse. containerd 1.6 resolves the bare message name; the
/// `type.googleapis.com/` prefix that `Any::pack` adds makes it reject the answer.
pub fn to_any(metrics: &Metrics) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any {
        type_url: Metrics::descriptor().full_name().to_string(),
        value: metrics.write_to_bytes()?,
        ..Default::default()
    })
}

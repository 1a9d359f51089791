//! `make bench` part for the real callers: `ctr run --rm` of `true` through kata-runtime (v1
//! runtime), through our shim v2 (`io.containerd.kata.v2`) and through runc
//! (`io.containerd.runc.v2`) on the same containerd, `podman run --rm true` and `docker run
//! --rm true` with kata-runtime or runc; and the host memory of a sleeping pod of 1 and of 4
//! containers without QEMU, v1 (containerd-shims, kata-shims, kata-proxy) against v2 (one
//! shim). Prints one JSON object (seconds per run, MiB); asserts nothing.

use integration_tests::containerd::{Containerd, KATA_V2, V1};
use integration_tests::docker::{Docker, RUNTIME};
use integration_tests::podman::Podman;
use integration_tests::{run_cmd, IMAGE, T};
use std::path::Path;
use std::time::Instant;

fn timed(n: usize, mut once: impl FnMut(usize) -> bool) -> Vec<f64> {
    (0..n)
        .filter_map(|i| {
            let t0 = Instant::now();
            once(i).then(|| t0.elapsed().as_secs_f64())
        })
        .collect()
}

fn main() {
    let n: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let c = Containerd::start();
    c.work.write_plain_wrapper();
    let fifo = c.work.path().join("containerd/fifo");
    let fifo = fifo.to_str().unwrap_or_default().to_string();
    // runc's state in the test's folder too, not /run/containerd/runc.
    let runc_root = c.work.path().join("runc-root");
    let runc_root = runc_root.to_str().unwrap_or_default().to_string();
    let ctr = |runtime: &str, extra: &[&str], id: String| {
        let mut args = vec!["run", "--rm", "--runtime", runtime, "--fifo-dir", &fifo];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, &id, "true"]);
        run_cmd(c.command(&args), b"", T).code() == 0
    };
    let ctr_kata = timed(n, |i| ctr(V1, &[], format!("bk{i}")));
    let ctr_kata_v2 = timed(n, |i| ctr(KATA_V2, &[], format!("bv{i}")));
    let ctr_runc = timed(n, |i| {
        ctr(
            "io.containerd.runc.v2",
            &["--runc-root", &runc_root],
            format!("br{i}"),
        )
    });
    let memory = serde_json::json!({
        "v1": pod_memory(&c, V1, &fifo),
        "v2": pod_memory(&c, KATA_V2, &fifo),
    });
    drop(c);

    let p = Podman::new();
    p.work.write_plain_wrapper();
    let podman = |runtime: &Path| {
        let cmd = p.command_with_runtime(
            runtime,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--pull",
                "never",
                IMAGE,
                "true",
            ],
        );
        run_cmd(cmd, b"", T).code() == 0
    };
    let podman_kata = timed(n, |_| podman(&p.work.runtime()));
    let podman_runc = timed(n, |_| podman(Path::new("runc")));
    drop(p);

    let d = Docker::start();
    d.work().write_plain_wrapper();
    let docker = |runtime: &str| {
        let cmd = d.command(&["run", "--rm", "--runtime", runtime, IMAGE, "true"]);
        run_cmd(cmd, b"", T).code() == 0
    };
    let docker_kata = timed(n, |_| docker(RUNTIME));
    let docker_runc = timed(n, |_| docker("runc"));
    drop(d);

    println!(
        "{}",
        serde_json::json!({
            "ctr_run_rm_true": {"kata": ctr_kata, "kata_v2": ctr_kata_v2, "runc": ctr_runc},
            "pod_memory_without_qemu": memory,
            "podman_run_rm_true": {"kata": podman_kata, "runc": podman_runc},
            "docker_run_rm_true": {"kata": docker_kata, "runc": docker_runc},
        })
    );
}

/// PSS (MiB) of one process, from smaps_rollup.
fn pss_mib(pid: i32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The host processes of the test's pods other than QEMU and containerd, by program name:
/// PSS (MiB) and count per name.
fn pod_processes(c: &Containerd) -> serde_json::Map<String, serde_json::Value> {
    let mut per: std::collections::BTreeMap<String, (f64, u32)> = Default::default();
    for (pid, cmd) in e2e_tests::processes_mentioning(&c.work.path().to_string_lossy()) {
        let program = cmd.split_whitespace().next().unwrap_or_default();
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ![
            "containerd-shim",
            "containerd-shim-kata-v2",
            "kata-shim",
            "kata-proxy",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        let e = per.entry(name).or_default();
        e.0 += pss_mib(pid);
        e.1 += 1;
    }
    per.into_iter()
        .map(|(k, (pss, count))| (k, serde_json::json!({"pss_mib": pss, "count": count})))
        .collect()
}

/// A sleeping pod (CRI annotations: a sandbox and members) of 1 and then 4 containers under
/// `runtime`, run with `ctr run -d`: what its host processes other than QEMU cost.
fn pod_memory(c: &Containerd, runtime: &str, fifo: &str) -> serde_json::Value {
    let (kind, sid) = (
        "io.kubernetes.cri.container-type",
        "io.kubernetes.cri.sandbox-id",
    );
    let pod = format!("mem-{}", runtime.rsplit('.').nth(1).unwrap_or("x"));
    let run = |id: &str, sandbox: bool| {
        let kind = format!("{kind}={}", if sandbox { "sandbox" } else { "container" });
        let sid = format!("{sid}={pod}");
        let args = [
            "run",
            "-d",
            "--runtime",
            runtime,
            "--fifo-dir",
            fifo,
            "--annotation",
            &kind,
            "--annotation",
            &sid,
            IMAGE,
            id,
            "sleep",
            "1000",
        ];
        run_cmd(c.command(&args), b"", T).code() == 0
    };
    let mut out = serde_json::Map::new();
    let mut ids = vec![pod.clone()];
    if run(&pod, true) {
        for size in [1, 4] {
            while ids.len() < size {
                let id = format!("{pod}-{}", ids.len());
                if !run(&id, false) {
                    break;
                }
                ids.push(id);
            }
            std::thread::sleep(std::time::Duration::from_secs(2));
            let per = pod_processes(c);
            let total: f64 = per.values().filter_map(|v| v["pss_mib"].as_f64()).sum();
            out.insert(
                size.to_string(),
                serde_json::json!({"total_pss_mib": total, "components": per}),
            );
        }
    }
    // Members first: the sandbox's task takes the VM with it.
    for id in ids.iter().rev() {
        let _ = run_cmd(c.command(&["task", "rm", "-f", id]), b"", T);
        let _ = run_cmd(c.command(&["containers", "rm", id]), b"", T);
    }
    serde_json::Value::Object(out)
}

//! `make bench` part for the real callers: `ctr run --rm` of `true` through kata-runtime (v1
//! runtime) and through runc (`io.containerd.runc.v2`) on the same containerd, `podman run
//! --rm true` and `docker run --rm true` with either runtime. Prints one JSON object of seconds
//! per run; asserts nothing.

use integration_tests::containerd::{Containerd, V1};
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
    let ctr_runc = timed(n, |i| {
        ctr(
            "io.containerd.runc.v2",
            &["--runc-root", &runc_root],
            format!("br{i}"),
        )
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
            "ctr_run_rm_true": {"kata": ctr_kata, "runc": ctr_runc},
            "podman_run_rm_true": {"kata": podman_kata, "runc": podman_runc},
            "docker_run_rm_true": {"kata": docker_kata, "runc": docker_runc},
        })
    );
}

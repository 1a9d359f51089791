//! Docker Engine 20.10 drives kata-runtime (`docker run --runtime kata`) through containerd's
//! runc v2 shim, with a dockerd and containerd of the test's own (`Docker::start`). Each test
//! checks the container ran in a VM (its `uname -r` is not the host's) and ends with the leak
//! check (`finish`: dockerd's and containerd's processes, mounts and folders included).

use integration_tests::docker::{Docker, RUNTIME};
use integration_tests::{assert_guest_kernel, lines, poll, pty, IMAGE, T};
use std::time::Duration;

fn run_args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--runtime", RUNTIME];
    a.extend_from_slice(head);
    a.push(IMAGE);
    a.extend_from_slice(tail);
    a
}

/// Waits until `docker exec NAME cat /tmp/ready` works, i.e. the process set its traps.
fn wait_ready(d: &Docker, name: &str) {
    let mut last = None;
    let ok = poll(Duration::from_secs(30), || {
        let out = d.docker(&["exec", name, "cat", "/tmp/ready"]);
        let ok = out.code() == 0 && out.stdout_str().contains("ready");
        last = Some((out.code(), out.stdout_str(), out.stderr));
        ok
    });
    assert!(ok, "{name} never got ready: {last:?}");
}

/// QEMUs started for this test.
fn qemus(d: &Docker) -> usize {
    let me = d.work().path().to_string_lossy().into_owned();
    e2e_tests::processes_mentioning(&me)
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("qemu-system"))
        .count()
}

/// `docker run --rm` (stdout, stderr, exit code, `-i` stdin), `run -it` (terminal, size,
/// typed input, resize), and what a VM cannot honour (`--network host`, `--ipc host`,
/// `--pid host`) refused with one line.
#[test]
fn docker_run_rm_tty_and_host_namespaces() {
    let d = Docker::start();
    let out = d.docker(&run_args(
        &["--rm"],
        &["sh", "-c", "uname -r; echo to-stderr >&2; exit 3"],
    ));
    assert_eq!(
        out.code(),
        3,
        "docker run: {} {}",
        out.stdout_str(),
        out.stderr
    );
    assert_guest_kernel(&out.stdout_str());
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    // Docker 20.10 calls the runtime through the runc v2 shim with its own state root.
    let root = d.kata_root();
    d.work().assert_called(&[
        &format!("--root {}", root.display()),
        "--log-format json create --bundle",
        "--pid-file",
    ]);

    let out = d.docker_in(
        &run_args(
            &["--rm", "-i"],
            &["sh", "-c", "read l; echo \"in:$l\"; exit 4"],
        ),
        b"piped\n",
    );
    assert_eq!(out.code(), 4, "docker run -i: {}", out.stderr);
    assert_eq!(lines(&out.stdout_str()), ["in:piped"]);

    let script = pty::probe_script(5);
    let term = pty::spawn(d.command(&run_args(&["--rm", "-it"], &["sh", "-c", &script])));
    term.wait_for("ready", T);
    term.send(b"typed\r");
    term.wait_for("got:typed", T);
    term.resize(pty::NEW_ROWS, pty::NEW_COLS);
    let (code, shown) = term.wait(T);
    assert_eq!(code, 5, "docker run -it showed:\n{shown}");
    let shown = lines(&shown);
    let tty = shown.iter().position(|l| l.starts_with("/dev/pts/"));
    let tty = tty.unwrap_or_else(|| panic!("no tty: {shown:?}"));
    assert_guest_kernel(&shown[tty + 1]);
    let size = format!("{} {}", pty::ROWS, pty::COLS);
    assert!(shown.contains(&size), "no {size:?} (stty size): {shown:?}");
    let resized = format!("{} {}", pty::NEW_ROWS, pty::NEW_COLS);
    assert!(
        shown.contains(&resized),
        "the new size {resized:?} did not reach the container: {shown:?}"
    );
    d.work()
        .assert_called(&["create --bundle", "--console-socket"]);

    for (flag, words) in [
        ("--network=host", "host networking"),
        ("--ipc=host", "host IPC"),
        ("--pid=host", "host PID"),
    ] {
        let out = d.docker(&run_args(&["--rm", flag], &["true"]));
        assert_eq!(out.code(), 125, "docker run {flag}: {}", out.stderr);
        assert!(out.stderr.contains(words), "{flag}: {}", out.stderr);
        assert!(
            out.stderr.contains("which a VM cannot share"),
            "{flag}: {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{flag}: one line: {}",
            out.stderr
        );
    }
    assert_eq!(qemus(&d), 0, "a refused container left a VM");
    d.finish();
}

/// `run -d` + `logs`, `exec` (exit code, `-t`), `top` (the host's kata-shims, never a guest
/// pid taken for a host one), `stats`, `pause`/`unpause`, `kill -s`, `--memory`/`--cpus`
/// reaching the guest cgroup and growing the VM, `update`, a second container sharing the
/// first's network (`--network container:`, one VM), `stop -t`, `restart`, `rm -f`.
#[test]
fn docker_detached_lifecycle() {
    let d = Docker::start();
    let script = "trap 'echo usr1 >> /tmp/signals' USR1; trap 'exit 7' TERM; \
                  echo ready > /tmp/ready; echo started; while true; do sleep 0.2; done";
    let out = d.docker(&run_args(
        &["-d", "--name", "c1", "--memory", "512m", "--cpus", "1.5"],
        &["sh", "-c", script],
    ));
    assert_eq!(out.code(), 0, "docker run -d: {}", out.stderr);
    wait_ready(&d, "c1");
    let mut logs = String::new();
    let logged = poll(Duration::from_secs(20), || {
        logs = d.docker(&["logs", "c1"]).stdout_str();
        logs.contains("started")
    });
    assert!(logged, "docker logs c1 does not show the output: {logs:?}");

    let out = d.docker(&["exec", "c1", "sh", "-c", "uname -r; exit 6"]);
    assert_eq!(out.code(), 6, "docker exec: {}", out.stderr);
    assert_guest_kernel(&out.stdout_str());
    let term = pty::spawn(d.command(&["exec", "-t", "c1", "sh", "-c", "tty; exit 2"]));
    let (code, shown) = term.wait(T);
    assert_eq!(code, 2, "docker exec -t showed:\n{shown}");
    assert!(
        lines(&shown).iter().any(|l| l.starts_with("/dev/pts/")),
        "{shown:?}"
    );

    // The limits reach the guest cgroup (v2 files) and the VM grew for them.
    let cgroup = |file: &str| {
        let out = d.docker(&[
            "exec",
            "c1",
            "sh",
            "-c",
            &format!("cat /sys/fs/cgroup/kata/*/{file}"),
        ]);
        assert_eq!(out.code(), 0, "{file}: {}", out.stderr);
        out.stdout_str().trim().to_string()
    };
    let mem_total_mib = || {
        let out = d.docker(&["exec", "c1", "grep", "MemTotal", "/proc/meminfo"]);
        let kib: u64 = out
            .stdout_str()
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("MemTotal: {}", out.stdout_str()));
        kib / 1024
    };
    assert_eq!(cgroup("memory.max"), "536870912");
    assert_eq!(cgroup("cpu.max"), "150000 100000");
    let grown = mem_total_mib();
    assert!(
        grown > 512,
        "the VM did not grow for --memory 512m: {grown} MiB"
    );

    // top: Docker runs the host's ps and keeps the pids `ps --format json` gave: the
    // kata-shims standing for the container's process and its execs.
    let out = d.docker(&["exec", "-d", "c1", "sleep", "999"]);
    assert_eq!(out.code(), 0, "docker exec -d: {}", out.stderr);
    let out = d.docker(&["top", "c1"]);
    assert_eq!(out.code(), 0, "docker top: {}", out.stderr);
    let rows: Vec<String> = lines(&out.stdout_str()).into_iter().skip(1).collect();
    assert_eq!(
        rows.len(),
        2,
        "the container's shim and the exec's: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.contains("kata-shim")), "{rows:?}");
    let out = d.docker(&["stats", "--no-stream", "c1"]);
    assert_eq!(out.code(), 0, "docker stats: {}", out.stderr);
    assert!(out.stdout_str().contains("c1"), "{}", out.stdout_str());

    let out = d.docker(&["pause", "c1"]);
    assert_eq!(out.code(), 0, "docker pause: {}", out.stderr);
    assert_eq!(d.state("c1", "Status"), "paused");
    let out = d.docker(&["unpause", "c1"]);
    assert_eq!(out.code(), 0, "docker unpause: {}", out.stderr);
    assert_eq!(d.state("c1", "Status"), "running");
    let out = d.docker(&["kill", "-s", "USR1", "c1"]);
    assert_eq!(out.code(), 0, "docker kill -s USR1: {}", out.stderr);
    let mut seen = String::new();
    let ok = poll(Duration::from_secs(20), || {
        seen = d
            .docker(&["exec", "c1", "cat", "/tmp/signals"])
            .stdout_str();
        seen.contains("usr1")
    });
    assert!(ok, "the USR1 trap did not run: {seen:?}");

    // update: the new limit in the guest, the VM grown again; unset fields (Docker sends 0
    // for them) are left alone.
    let out = d.docker(&["update", "--memory", "700m", "--memory-swap", "1g", "c1"]);
    assert_eq!(out.code(), 0, "docker update: {}", out.stderr);
    assert_eq!(cgroup("memory.max"), "734003200");
    assert_eq!(cgroup("cpu.max"), "150000 100000");
    let regrown = mem_total_mib();
    assert!(
        regrown > 700,
        "the VM did not grow for the update: {regrown} MiB"
    );

    // --network container:c1 shares c1's network, which is its VM's: c2 joins that VM.
    let out = d.docker(&run_args(
        &["-d", "--name", "c2", "--network", "container:c1"],
        &["sleep", "1000"],
    ));
    assert_eq!(
        out.code(),
        0,
        "docker run --network container:c1: {}",
        out.stderr
    );
    assert_eq!(qemus(&d), 1, "c2 must run in c1's VM");
    let links = |name: &str| {
        let out = d.docker(&["exec", name, "cat", "/proc/net/dev"]);
        assert_eq!(out.code(), 0, "{name}: {}", out.stderr);
        let mut names: Vec<String> = out
            .stdout_str()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(links("c1"), links("c2"));
    let out = d.docker(&["rm", "-f", "c2"]);
    assert_eq!(out.code(), 0, "docker rm -f c2: {}", out.stderr);
    // Joining c1's VM with the host's processes is refused as for a VM of its own.
    let out = d.docker(&run_args(
        &["--rm", "--network", "container:c1", "--pid", "host"],
        &["true"],
    ));
    assert_eq!(out.code(), 125, "--pid host in c1's VM: {}", out.stderr);
    assert!(out.stderr.contains("host PID"), "{}", out.stderr);

    let out = d.docker(&["stop", "-t", "5", "c1"]);
    assert_eq!(out.code(), 0, "docker stop: {}", out.stderr);
    assert_eq!(d.state("c1", "ExitCode"), "7");
    assert_eq!(qemus(&d), 0, "a stopped container's VM runs on");
    let out = d.docker(&["restart", "-t", "2", "c1"]);
    assert_eq!(out.code(), 0, "docker restart: {}", out.stderr);
    assert_eq!(d.state("c1", "Status"), "running");
    wait_ready(&d, "c1");
    let out = d.docker(&["rm", "-f", "c1"]);
    assert_eq!(out.code(), 0, "docker rm -f: {}", out.stderr);
    d.finish();
}

/// What `docker run` options become in the VM: volumes (a host folder, a named volume),
/// `--device` of a loop device, `--tmpfs`, `--shm-size`; and, as another user, `--read-only`,
/// `--cap-drop`/`--cap-add`, `no-new-privileges`, `--ulimit`.
#[test]
fn docker_run_options_reach_the_guest() {
    let d = Docker::start();
    let host = d.work().path().join("host-folder");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from-host\n").unwrap();
    let img = d.work().path().join("disk.img");
    let mut data = b"DOCKER-DISK-MAGIC".to_vec();
    data.resize(1 << 20, 0);
    std::fs::write(&img, &data).unwrap();
    let loopdev = std::process::Command::new("losetup")
        .arg("-f")
        .arg("--show")
        .arg(&img)
        .output()
        .unwrap();
    assert!(loopdev.status.success(), "losetup");
    let loopdev = String::from_utf8_lossy(&loopdev.stdout).trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    let _detach = Detach(loopdev.clone());

    let volume = format!("{}:/v", host.display());
    let device = format!("{loopdev}:/dev/xvdb");
    let script = "cat /v/f; echo written > /v/out; echo kept > /nv/kept; \
                  head -c 17 /dev/xvdb; echo; df -k /scratch /dev/shm | tail -2; \
                  touch /scratch/ok && echo tmpfs-writable";
    let out = d.docker(&run_args(
        &[
            "--rm",
            "-v",
            &volume,
            "-v",
            "named:/nv",
            "--device",
            &device,
            "--tmpfs",
            "/scratch:size=10m",
            "--shm-size",
            "64m",
        ],
        &["sh", "-c", script],
    ));
    assert_eq!(
        out.code(),
        0,
        "docker run: {} {}",
        out.stdout_str(),
        out.stderr
    );
    let shown = lines(&out.stdout_str());
    assert_eq!(shown[0], "from-host");
    assert_eq!(shown[1], "DOCKER-DISK-MAGIC");
    assert!(
        shown
            .iter()
            .any(|l| l.ends_with("/scratch") && l.contains(" 10240 ")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|l| l.ends_with("/dev/shm") && l.contains(" 65536 ")),
        "{shown:?}"
    );
    assert!(shown.contains(&"tmpfs-writable".to_string()), "{shown:?}");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "written\n"
    );
    let out = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "named"]);
    let mountpoint = out.stdout_str().trim().to_string();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&mountpoint).join("kept")).unwrap(),
        "kept\n"
    );

    let script = "id -u; id -g; touch /x 2>&1; ulimit -n; grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status";
    let out = d.docker(&run_args(
        &[
            "--rm",
            "--user",
            "65534:65534",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_ADMIN",
            "--security-opt",
            "no-new-privileges",
            "--ulimit",
            "nofile=1234:1234",
        ],
        &["sh", "-c", script],
    ));
    assert_eq!(out.code(), 0, "docker run: {}", out.stderr);
    let shown = lines(&out.stdout_str());
    assert_eq!(shown[0], "65534");
    assert_eq!(shown[1], "65534");
    assert!(shown[2].contains("Read-only file system"), "{shown:?}");
    assert_eq!(shown[3], "1234");
    // A non-root process keeps no effective capability (as with runc); the bounding set is
    // NET_ADMIN (bit 12) alone.
    assert!(shown
        .iter()
        .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")));
    assert!(shown
        .iter()
        .any(|l| l.starts_with("CapBnd:") && l.ends_with("0000000000001000")));
    assert!(shown
        .iter()
        .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')));
    let out = d.docker(&["volume", "rm", "named"]);
    assert_eq!(out.code(), 0, "docker volume rm: {}", out.stderr);
    d.finish();
}

/// What the seed says did not work: Kubernetes through Docker (dockershim, today cri-dockerd)
/// makes a pod as a sandbox container plus members joining its namespaces
/// (`--network container:<sandbox>`, `--ipc container:<sandbox>`), marked with the labels
/// `io.kubernetes.docker.type` / `io.kubernetes.sandbox.id`. Docker 20.10 does not hand labels
/// to the runtime (no OCI annotation), so the member is recognised by the namespaces it
/// joins: they name the sandbox's kata-shim, and the member lands in the sandbox's VM.
#[test]
fn docker_dockershim_style_pod_shares_one_vm() {
    let d = Docker::start();
    let out = d.docker(&run_args(
        &[
            "-d",
            "--name",
            "k8s_POD_web",
            "--ipc",
            "shareable",
            "--label",
            "io.kubernetes.docker.type=podsandbox",
        ],
        &["sleep", "100000"],
    ));
    assert_eq!(out.code(), 0, "sandbox: {}", out.stderr);
    let sandbox = out.stdout_str().trim().to_string();
    let sandbox_label = format!("io.kubernetes.sandbox.id={sandbox}");
    let out = d.docker(&run_args(
        &[
            "-d",
            "--name",
            "k8s_app_web",
            "--network",
            "container:k8s_POD_web",
            "--ipc",
            "container:k8s_POD_web",
            "--label",
            "io.kubernetes.docker.type=container",
            "--label",
            &sandbox_label,
        ],
        &["sh", "-c", "echo from-member > /dev/shm/m; sleep 100000"],
    ));
    assert_eq!(out.code(), 0, "member: {}", out.stderr);
    let member = out.stdout_str().trim().to_string();
    // The labels are not in the spec Docker hands the runtime.
    let spec = d
        .work()
        .path()
        .join("containerd/state/io.containerd.runtime.v2.task/moby")
        .join(&member)
        .join("config.json");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec).expect("the member's config.json")).unwrap();
    println!(
        "annotations Docker gave the member: {}",
        spec["annotations"]
    );
    assert!(
        spec["annotations"]
            .get("io.kubernetes.docker.type")
            .is_none(),
        "Docker now passes labels: {}",
        spec["annotations"]
    );
    assert_eq!(qemus(&d), 1, "the pod's two containers share one VM");
    // One VM, shared IPC: the member's /dev/shm file is the sandbox's.
    let mut seen = String::new();
    let shared = poll(Duration::from_secs(20), || {
        seen = d
            .docker(&["exec", "k8s_POD_web", "cat", "/dev/shm/m"])
            .stdout_str();
        seen.contains("from-member")
    });
    assert!(shared, "the member's IPC is not the sandbox's: {seen:?}");
    for name in ["k8s_app_web", "k8s_POD_web"] {
        let out = d.docker(&["rm", "-f", name]);
        assert_eq!(out.code(), 0, "docker rm -f {name}: {}", out.stderr);
    }
    d.finish();
}

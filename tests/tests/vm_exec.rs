//! exec and list against a running container in its VM.

use e2e_tests::Env;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_exec_runs_in_the_containers_namespaces() {
    let env = Env::new();
    let b = env.bundle("box", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "box"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "run -d: {}", out.stderr);

    // Output and exit code come back through the exec's own shim.
    let out = env.run(
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "echo hi from $(hostname); exit 5",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 5, "stderr: {}", out.stderr);
    assert_eq!(out.stdout_str(), "hi from kata-demo\n");

    // Same pid namespace: pid 1 is the container's sleep.
    let out = env.run(&["exec", "box", "cat", "/proc/1/cmdline"], b"", T);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, b"sleep\x001000\x00");

    // stdin reaches an exec too.
    let out = env.run(&["exec", "box", "cat"], b"piped through exec", T);
    assert_eq!(out.stdout_str(), "piped through exec");

    // --process FILE, detached, with a pid file naming the exec's shim.
    let proc_json = env.path().join("process.json");
    std::fs::write(
        &proc_json,
        r#"{"args":["sh","-c","echo $FOO > /tmp/marker"],"env":["PATH=/bin","FOO=bar"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
    )
    .unwrap();
    let pid_file = env.path().join("exec.pid");
    let out = env.run(
        &[
            "exec",
            "--process",
            proc_json.to_str().unwrap(),
            "--detach",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "box",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "exec -d: {}", out.stderr);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid > 0);
    let start = std::time::Instant::now();
    loop {
        let out = env.run(&["exec", "box", "cat", "/tmp/marker"], b"", T);
        if out.stdout_str() == "bar\n" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "detached exec never ran: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // list sees it, from the records.
    let out = env.run(&["list", "--format", "json"], b"", T);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list[0]["id"], "box");
    assert_eq!(list[0]["status"], "running");
    let out = env.run(&["list", "-q"], b"", T);
    assert_eq!(out.stdout_str(), "box\n");

    // Bad exec input: unknown container, missing or invalid process file, missing command,
    // unknown capability.
    let bad_process = env.path().join("bad-process.json");
    std::fs::write(&bad_process, br#"{"args": "not a list""#).unwrap();
    let bad_process = bad_process.to_str().unwrap();
    for args in [
        vec!["exec", "nosuch", "true"],
        vec!["exec", "--process", "/nonexistent.json", "box"],
        vec!["exec", "--process", bad_process, "box"],
        vec!["exec", "box"],
        vec!["exec", "--cap", "CAP_NOPE", "box", "true"],
    ] {
        let out = env.run(&args, b"", T);
        assert_eq!(out.code(), 1, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }

    // ps: json lists the host's kata-shims, the table the guest's view.
    let out = env.run(&["ps", "--format", "json", "box"], b"", T);
    assert_eq!(out.code(), 0, "ps: {}", out.stderr);
    let pids: Vec<i64> = serde_json::from_slice(&out.stdout).expect("ps json");
    assert!(!pids.is_empty());
    let out = env.run(&["ps", "box"], b"", T);
    assert!(
        out.stdout_str().contains("sleep 1000"),
        "{}",
        out.stdout_str()
    );

    // pause / resume: the guest cgroup freezer.
    let out = env.run(&["pause", "box"], b"", T);
    assert_eq!(out.code(), 0, "pause: {}", out.stderr);
    assert!(env
        .run(&["state", "box"], b"", T)
        .stdout_str()
        .contains("\"paused\""));
    let out = env.run(&["pause", "box"], b"", T);
    assert_eq!(out.code(), 1, "pausing twice must fail");
    let out = env.run(&["resume", "box"], b"", T);
    assert_eq!(out.code(), 0, "resume: {}", out.stderr);
    assert!(env
        .run(&["state", "box"], b"", T)
        .stdout_str()
        .contains("\"running\""));
    let out = env.run(&["exec", "box", "echo", "thawed"], b"", T);
    assert_eq!(out.stdout_str(), "thawed\n", "{}", out.stderr);

    // update + events: limits and figures of the container's cgroup in the guest; the VM
    // grows with them (vCPU and memory hot-plug).
    let vm_size = || {
        let out = env.run(
            &[
                "exec",
                "box",
                "sh",
                "-c",
                "nproc; grep MemTotal /proc/meminfo",
            ],
            b"",
            T,
        );
        assert_eq!(out.code(), 0, "exec nproc: {}", out.stderr);
        let text = out.stdout_str();
        let mut lines = text.lines();
        let cpus: u32 = lines.next().unwrap_or("").trim().parse().unwrap_or(0);
        let mem_kib: u64 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (cpus, mem_kib)
    };
    let (cpus_before, mem_before) = vm_size();
    assert!(cpus_before >= 1 && mem_before > 0);
    let out = env.run(
        &[
            "update",
            "--memory",
            "67108864",
            "--pids-limit",
            "50",
            "--cpu-quota",
            "100000",
            "--cpu-period",
            "100000",
            "box",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "update: {}", out.stderr);
    let (cpus_after, mem_after) = vm_size();
    let host_cpus = std::thread::available_parallelism().unwrap().get() as u32;
    if host_cpus > cpus_before {
        assert_eq!(
            cpus_after,
            cpus_before + 1,
            "a quota of one CPU adds one vCPU"
        );
    }
    assert!(
        mem_after >= mem_before + 64 * 1024,
        "a 64 MiB limit adds at least 64 MiB: {mem_before} -> {mem_after} KiB"
    );
    let out = env.run(&["events", "--stats", "box"], b"", T);
    assert_eq!(out.code(), 0, "events: {}", out.stderr);
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).expect("event json");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 67108864);
    assert_eq!(ev["data"]["pids"]["limit"], 50);
    assert!(
        ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "{ev}"
    );
    assert!(
        ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{ev}"
    );
    let out = env.run(
        &["update", "--resources", "-", "box"],
        br#"{"pids":{"limit":60}}"#,
        T,
    );
    assert_eq!(out.code(), 0, "update -r -: {}", out.stderr);
    let out = env.run(&["events", "--stats", "box"], b"", T);
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).expect("event json");
    assert_eq!(ev["data"]["pids"]["limit"], 60);
    let out = env.run(&["update", "--resources", "-", "box"], b"{not json", T);
    assert_eq!(out.code(), 1);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    // events --interval: a stats line per interval until the container stops.
    let mut events = env.cmd(&["events", "--interval", "300ms", "box"]);
    events
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut events = events.spawn().unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for n in 0..3 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("event line {n} never came"));
        let ev: serde_json::Value = serde_json::from_str(&line).expect("event json");
        assert_eq!(ev["type"], "stats", "{line}");
        assert_eq!(ev["id"], "box", "{line}");
    }

    let out = env.run(&["kill", "box", "KILL"], b"", T);
    assert_eq!(out.code(), 0, "kill: {}", out.stderr);
    // ...and events ends by itself once the container stopped.
    let status = e2e_tests::wait_timeout(&mut events, Duration::from_secs(30));
    assert!(status.success(), "events: {status}");
    let start = std::time::Instant::now();
    while !env
        .run(&["state", "box"], b"", T)
        .stdout_str()
        .contains("stopped")
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["exec", "box", "true"], b"", T);
    assert_eq!(
        out.code(),
        1,
        "exec into a stopped container: {}",
        out.stderr
    );
    let out = env.run(&["pause", "box"], b"", T);
    assert_eq!(
        out.code(),
        1,
        "pause of a stopped container: {}",
        out.stderr
    );
    let out = env.run(&["delete", "box"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    env.assert_clean();
}

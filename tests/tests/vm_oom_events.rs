//! A container killed by the guest's OOM killer (issue 17, item 6): `kata-runtime events`
//! emits runc's `{"type":"oom","id":...}` line, then ends with the container.
//! (containerd's v1 shim learns of an OOM only from the host memory cgroup of the pid it was
//! given, the kata-shim, where no OOM happens: see the README.)

use e2e_tests::{edit_spec, Env};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_oom_kill_is_an_oom_event() {
    let env = Env::new();
    // Locked: with its own text reclaimable, a process at its limit can thrash on re-reading
    // it (over 9p) for minutes instead of being OOM-killed.
    let b = env.bundle("hog", &["/kata-spec-checker", "--hold-mem-locked", "64"]);
    std::fs::copy(
        e2e_tests::bin_dir().join("kata-spec-checker"),
        b.join("rootfs/kata-spec-checker"),
    )
    .unwrap();
    edit_spec(&b, |s| {
        s["linux"]["resources"] =
            json!({"memory": {"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024}});
        let caps = json!(["CAP_IPC_LOCK", "CAP_KILL"]);
        s["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        s["process"]["rlimits"] = json!([{"type": "RLIMIT_MEMLOCK",
            "hard": u64::MAX, "soft": u64::MAX}]);
    });
    let pid_file = env.path().join("hog.pid");
    let out = env.run(
        &[
            "create",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--bundle",
            b.to_str().unwrap(),
            "hog",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let mut events = env
        .cmd(&["events", "--interval", "1s", "hog"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = env.run(&["start", "hog"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let start = Instant::now();
    while env.status("hog") != "stopped" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the hog was never killed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = e2e_tests::wait_timeout(&mut events, Duration::from_secs(30));
    assert!(status.success(), "events: {status:?}");
    let lines = lines.join().unwrap();
    println!("OOM kill seen {:?} after start", start.elapsed());
    let oom: Vec<&String> = lines.iter().filter(|l| l.contains("\"oom\"")).collect();
    assert_eq!(oom.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(oom[0]).unwrap();
    assert_eq!(v, json!({"type": "oom", "id": "hog"}));
    assert!(lines.iter().any(|l| l.contains("\"stats\"")), "{lines:?}");
    let out = env.run(&["delete", "hog"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    env.assert_clean();
}

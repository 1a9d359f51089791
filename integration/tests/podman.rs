//! podman + conmon drive kata-runtime (`--runtime`), with private roots and the test's
//! containers.conf (`Podman::new`). Each test checks the container ran in a VM (its `uname -r`
//! is not the host's) and ends with the leak check (`finish`).

use integration_tests::podman::Podman;
use integration_tests::{assert_guest_kernel, lines, poll, pty, IMAGE, T};
use std::time::{Duration, Instant};

/// Flags of every `podman run` here: no network yet, never a pull.
const RUN: [&str; 4] = ["--network", "none", "--pull", "never"];

fn run_args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run"];
    a.extend_from_slice(&RUN);
    a.extend_from_slice(head);
    a.push(IMAGE);
    a.extend_from_slice(tail);
    a
}

/// Waits until `podman exec NAME cat /tmp/ready` works, i.e. the process set its traps.
fn wait_ready(p: &Podman, name: &str) {
    let mut last = None;
    let ok = poll(Duration::from_secs(30), || {
        let out = p.podman(&["exec", name, "cat", "/tmp/ready"]);
        let ok = out.code() == 0 && out.stdout_str().contains("ready");
        last = Some((out.code(), out.stdout_str(), out.stderr));
        ok
    });
    assert!(ok, "{name} never got ready: {last:?}");
}

/// `podman run --rm -i`: stdin, stdout, stderr and the exit code go through conmon.
#[test]
fn podman_run_rm_relays_output_and_exit_code() {
    let p = Podman::new();
    let script = "read line; echo \"in:$line\"; uname -r; echo to-stderr >&2; exit 3";
    let out = p.podman_in(
        &run_args(&["--rm", "-i"], &["sh", "-c", script]),
        b"piped\n",
    );
    let stdout = lines(&out.stdout_str());
    assert_eq!(out.code(), 3, "podman run: {stdout:?} {}", out.stderr);
    assert_eq!(stdout.len(), 2, "{stdout:?} {}", out.stderr);
    assert_eq!(stdout[0], "in:piped");
    assert_guest_kernel(&stdout[1]);
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    p.work.assert_called(&["create --bundle", "--pid-file"]);
    p.work.assert_called(&["start "]);
    p.work.assert_called(&["delete --force"]);
    p.finish();
}

/// `podman run -it`: conmon receives the terminal over the console socket; the process has a
/// tty of the caller's size, typed input and a later resize reach it, its exit code reaches
/// podman.
#[test]
fn podman_run_tty() {
    let p = Podman::new();
    let script = pty::probe_script(4);
    let term = pty::spawn(p.command(&run_args(&["--rm", "-it"], &["sh", "-c", &script])));
    term.wait_for("ready", T);
    term.send(b"typed\r");
    term.wait_for("got:typed", T);
    term.resize(pty::NEW_ROWS, pty::NEW_COLS);
    let (code, shown) = term.wait(T);
    assert_eq!(code, 4, "podman run -it showed:\n{shown}");
    let shown = lines(&shown);
    let tty = shown.iter().position(|l| l == "/dev/pts/0");
    let tty = tty.unwrap_or_else(|| panic!("no /dev/pts/0 (tty): {shown:?}"));
    assert_guest_kernel(&shown[tty + 1]);
    let size = format!("{} {}", pty::ROWS, pty::COLS);
    assert!(shown.contains(&size), "no {size:?} (stty size): {shown:?}");
    let got = shown.iter().position(|l| l == "got:typed");
    let got = got.unwrap_or_else(|| panic!("no got:typed: {shown:?}"));
    let resized = format!("{} {}", pty::NEW_ROWS, pty::NEW_COLS);
    assert!(
        shown[got..].contains(&resized),
        "the new size {resized:?} did not reach the container: {shown:?}"
    );
    p.work
        .assert_called(&["create --bundle", "--console-socket"]);
    p.finish();
}

/// A detached container: `logs`, `exec` (exit codes, a missing command), `exec -t`,
/// `kill -s HUP`, `pause`/`unpause`, then `stop -t 2` of a process that ignores TERM: TERM,
/// KILL after 2 s, exit code 137.
#[test]
fn podman_detached_exec_kill_pause_stop() {
    let p = Podman::new();
    let script = "trap 'echo hup >> /tmp/signals' HUP; trap '' TERM; echo ready > /tmp/ready; \
                  echo started; while true; do sleep 0.2; done";
    let out = p.podman(&run_args(&["-d", "--name", "p1"], &["sh", "-c", script]));
    assert_eq!(out.code(), 0, "podman run -d: {}", out.stderr);
    assert_eq!(p.state("p1", "Status"), "running");
    wait_ready(&p, "p1");
    // The detached process's stdout went through conmon to the container's log.
    let mut logs = String::new();
    let logged = poll(Duration::from_secs(20), || {
        logs = p.podman(&["logs", "p1"]).stdout_str();
        logs.contains("started")
    });
    assert!(logged, "podman logs p1 does not show the output: {logs:?}");

    let out = p.podman(&["exec", "p1", "sh", "-c", "uname -r; exit 5"]);
    assert_eq!(
        out.code(),
        5,
        "podman exec: {} {}",
        out.stdout_str(),
        out.stderr
    );
    assert_guest_kernel(&out.stdout_str());
    p.work
        .assert_called(&["exec --pid-file", "--process", "--detach"]);

    // A missing or non-executable command: podman's exit codes 127 and 126, as with runc.
    let out = p.podman(&["exec", "p1", "no-such-command"]);
    assert_eq!(
        out.code(),
        127,
        "podman exec no-such-command: {}",
        out.stderr
    );
    let out = p.podman(&["exec", "p1", "/etc/passwd"]);
    assert_eq!(out.code(), 126, "podman exec /etc/passwd: {}", out.stderr);

    let term = pty::spawn(p.command(&["exec", "-t", "p1", "sh", "-c", "tty; exit 6"]));
    let (code, shown) = term.wait(T);
    assert_eq!(code, 6, "podman exec -t showed:\n{shown}");
    assert!(
        lines(&shown).iter().any(|l| l.starts_with("/dev/pts/")),
        "{shown:?}"
    );
    p.work
        .assert_called(&["exec --pid-file", "--console-socket"]);

    let out = p.podman(&["kill", "-s", "HUP", "p1"]);
    assert_eq!(out.code(), 0, "podman kill -s HUP: {}", out.stderr);
    let id = p.state_id("p1");
    p.work.assert_call_ends_with(&format!("kill {id} 1"));
    let mut seen = String::new();
    let ok = poll(Duration::from_secs(20), || {
        seen = p
            .podman(&["exec", "p1", "cat", "/tmp/signals"])
            .stdout_str();
        seen.contains("hup")
    });
    assert!(ok, "the HUP trap did not run: /tmp/signals = {seen:?}");

    let out = p.podman(&["pause", "p1"]);
    assert_eq!(out.code(), 0, "podman pause: {}", out.stderr);
    assert_eq!(p.state("p1", "Status"), "paused");
    let out = p.podman(&["unpause", "p1"]);
    assert_eq!(out.code(), 0, "podman unpause: {}", out.stderr);
    assert_eq!(p.state("p1", "Status"), "running");
    p.work.assert_call_ends_with(&format!("pause {id}"));
    p.work.assert_call_ends_with(&format!("resume {id}"));

    let started = Instant::now();
    let out = p.podman(&["stop", "-t", "2", "p1"]);
    let took = started.elapsed();
    assert_eq!(out.code(), 0, "podman stop: {}", out.stderr);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "podman stop -t 2 of a process ignoring TERM took {took:?}"
    );
    p.work.assert_call_ends_with(&format!("kill {id} 15"));
    p.work.assert_call_ends_with(&format!("kill {id} 9"));
    p.wait_status("p1", "exited", Duration::from_secs(30));
    assert_eq!(p.state("p1", "ExitCode"), "137");
    let out = p.podman(&["rm", "p1"]);
    assert_eq!(out.code(), 0, "podman rm: {}", out.stderr);
    p.work
        .assert_call_ends_with(&format!("delete --force {id}"));
    p.finish();
}

/// `podman stop` of a process that handles TERM: it exits by itself, well before the timeout,
/// with its own exit code.
#[test]
fn podman_stop_delivers_term() {
    let p = Podman::new();
    let script = "trap 'exit 0' TERM; uname -r > /tmp/release; echo ready > /tmp/ready; \
                  while true; do sleep 0.2; done";
    let out = p.podman(&run_args(&["-d", "--name", "t1"], &["sh", "-c", script]));
    assert_eq!(out.code(), 0, "podman run -d: {}", out.stderr);
    wait_ready(&p, "t1");
    let out = p.podman(&["exec", "t1", "cat", "/tmp/release"]);
    assert_guest_kernel(&out.stdout_str());
    let started = Instant::now();
    let out = p.podman(&["stop", "-t", "60", "t1"]);
    let took = started.elapsed();
    assert_eq!(out.code(), 0, "podman stop: {}", out.stderr);
    assert!(
        took < Duration::from_secs(20),
        "podman stop of a process that exits on TERM took {took:?}"
    );
    p.wait_status("t1", "exited", Duration::from_secs(30));
    assert_eq!(p.state("t1", "ExitCode"), "0");
    let out = p.podman(&["rm", "t1"]);
    assert_eq!(out.code(), 0, "podman rm: {}", out.stderr);
    p.finish();
}

/// `podman rm -f` of a running container that ignores TERM: podman 4.3 sends TERM, KILL after
/// its default 10 s, then delete --force.
#[test]
fn podman_rm_force_of_a_running_container() {
    let p = Podman::new();
    let script = "uname -r > /tmp/release; echo ready > /tmp/ready; sleep 1000";
    let out = p.podman(&run_args(&["-d", "--name", "f1"], &["sh", "-c", script]));
    assert_eq!(out.code(), 0, "podman run -d: {}", out.stderr);
    wait_ready(&p, "f1");
    let out = p.podman(&["exec", "f1", "cat", "/tmp/release"]);
    assert_guest_kernel(&out.stdout_str());
    let id = p.state_id("f1");
    let out = p.podman(&["rm", "-f", "f1"]);
    assert_eq!(out.code(), 0, "podman rm -f: {}", out.stderr);
    p.work.assert_call_ends_with(&format!("kill {id} 9"));
    p.work
        .assert_call_ends_with(&format!("delete --force {id}"));
    p.finish();
}

/// `podman run` of a missing command exits 127 and of a non-executable file 126, as with runc
/// and crun: podman reads those from the error of the runtime's `create` (through conmon).
#[test]
fn podman_run_of_a_missing_command_exits_127() {
    let p = Podman::new();
    for (cmd, want) in [
        ("/nonexistent", 127),
        ("no-such-command", 127),
        ("/etc/passwd", 126),
    ] {
        let out = p.podman(&run_args(&["--rm"], &[cmd]));
        assert_eq!(out.code(), want, "podman run {cmd}: {}", out.stderr);
    }
    p.finish();
}

/// `podman run --network ns:PATH`: the container gets the interface a CNI-like set-up put in
/// that namespace (address and MAC on the guest NIC) and reaches the peer; the namespace is
/// left as it was.
#[test]
fn podman_run_with_a_network_namespace_path() {
    let tag = std::process::id();
    let (pod, peer) = (format!("kt-ppod-{tag}"), format!("kt-ppeer-{tag}"));
    struct Netns(Vec<String>);
    impl Drop for Netns {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .status();
            }
        }
    }
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ip(&["netns", "add", &pod]);
    let _guard = Netns(vec![pod.clone(), peer.clone()]);
    ip(&["netns", "add", &peer]);
    ip(&[
        "link", "add", "eth0", "netns", &pod, "type", "veth", "peer", "name", "peer0", "netns",
        &peer,
    ]);
    ip(&["-n", &pod, "addr", "add", "10.204.0.2/24", "dev", "eth0"]);
    ip(&["-n", &peer, "addr", "add", "10.204.0.1/24", "dev", "peer0"]);
    ip(&["-n", &pod, "link", "set", "eth0", "up"]);
    ip(&["-n", &peer, "link", "set", "peer0", "up"]);
    let mac = ip(&["-n", &pod, "-o", "link", "show", "eth0"]);
    let mac = mac
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_string();
    let links_before = ip(&["-n", &pod, "-o", "link", "show"]);

    let p = Podman::new();
    let network = format!("ns:/var/run/netns/{pod}");
    let script = "ip -o link show eth0; ip -o addr show eth0; \
                  ping -c 1 -W 5 10.204.0.1 >/dev/null && echo ping-ok; uname -r";
    let out = p.podman(&[
        "run",
        "--rm",
        "--network",
        &network,
        "--cap-add",
        "NET_RAW",
        "--pull",
        "never",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let stdout = out.stdout_str();
    assert_eq!(out.code(), 0, "podman run: {stdout} {}", out.stderr);
    assert!(stdout.contains("inet 10.204.0.2/24"), "{stdout}");
    assert!(
        stdout.contains(&format!("link/ether {mac}")),
        "{mac} in {stdout}"
    );
    assert!(stdout.contains("ping-ok"), "{stdout}");
    assert_guest_kernel(lines(&stdout).last().unwrap());
    p.work.assert_called(&["create --bundle"]);
    p.finish();
    assert_eq!(
        ip(&["-n", &pod, "-o", "link", "show"]),
        links_before,
        "the namespace changed"
    );
}

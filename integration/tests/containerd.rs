//! containerd 1.6 drives kata-runtime through its v1 runtime (containerd-shim), with ctr. Each
//! test starts a containerd of its own (`Containerd::start`), checks the container ran in a VM
//! (its `uname -r` is not the host's) and ends with the leak check (`finish`).

use integration_tests::containerd::Containerd;
use integration_tests::{assert_guest_kernel, lines, poll, pty, run_cmd, IMAGE, T};
use std::time::Duration;

/// `ctr run --rm`: the container's stdin, stdout, stderr and exit code reach ctr.
#[test]
fn ctr_run_rm_relays_output_and_exit_code() {
    let c = Containerd::start();
    let script = "read line; echo \"in:$line\"; uname -r; echo to-stderr >&2; exit 3";
    let out = run_cmd(
        c.run_command(&["--rm", IMAGE, "rm1", "sh", "-c", script]),
        b"piped\n",
        T,
    );
    let stdout = lines(&out.stdout_str());
    assert_eq!(out.code(), 3, "ctr run: {stdout:?} {}", out.stderr);
    assert_eq!(stdout.len(), 2, "{stdout:?}");
    assert_eq!(stdout[0], "in:piped");
    assert_guest_kernel(&stdout[1]);
    assert!(out.stderr.contains("to-stderr"), "stderr: {}", out.stderr);
    // The call forms of the reference (client-calls.md).
    c.work
        .assert_called(&["--log-format json", "create --bundle", "--pid-file", "rm1"]);
    c.work.assert_call_ends_with("start rm1");
    c.work.assert_call_ends_with("delete rm1");
    c.finish();
}

/// `ctr run -t --rm`: the terminal goes through the console socket; the process has a tty of
/// the caller's size, typed input and a later resize reach it, its exit code reaches ctr.
#[test]
fn ctr_run_tty() {
    let c = Containerd::start();
    let script = pty::probe_script(4);
    let term = pty::spawn(c.run_command(&["-t", "--rm", IMAGE, "tty1", "sh", "-c", &script]));
    term.wait_for("ready", T);
    term.send(b"typed\r");
    term.wait_for("got:typed", T);
    term.resize(pty::NEW_ROWS, pty::NEW_COLS);
    let (code, shown) = term.wait(T);
    assert_eq!(code, 4, "ctr run -t showed:\n{shown}");
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
    c.work
        .assert_called(&["create --bundle", "--console-socket", "tty1"]);
    c.finish();
}

/// A detached task: `ctr task exec` (with and without -t, exit codes), `ctr task ps`,
/// `ctr task pause`/`resume`, signals by name and number with `ctr task kill`, then a TERM that
/// the process handles, its exit code, `ctr task rm` and `ctr container rm`.
#[test]
fn ctr_detached_task_exec_ps_pause_resume_kill() {
    let c = Containerd::start();
    let script = "trap 'echo hup >> /tmp/signals' HUP; trap 'echo usr1 >> /tmp/signals' USR1; \
                  trap 'exit 7' TERM; echo ready > /tmp/ready; \
                  while true; do sleep 0.2; done";
    let out = run_cmd(
        c.run_command(&["-d", IMAGE, "d1", "sh", "-c", script]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    assert_eq!(c.task_status("d1").as_deref(), Some("RUNNING"));

    // exec: output and exit code; waits for the traps to be set.
    let mut ready = None;
    assert!(
        poll(Duration::from_secs(30), || {
            let out = run_cmd(
                c.exec_command(&[
                    "--exec-id",
                    "e1",
                    "d1",
                    "sh",
                    "-c",
                    "cat /tmp/ready && uname -r && exit 5",
                ]),
                b"",
                T,
            );
            let ok = out.code() == 5;
            ready = Some(out);
            ok
        }),
        "exec never found the container ready: {:?}",
        ready.map(|o| (o.code(), o.stdout_str(), o.stderr))
    );
    let out = ready.expect("exec ran");
    let stdout = lines(&out.stdout_str());
    assert_eq!(stdout[0], "ready");
    assert_guest_kernel(&stdout[1]);
    c.work
        .assert_called(&["exec --process", "--detach", "--pid-file", "e1.pid", "d1"]);

    // exec -t: a terminal of its own in the container.
    let term =
        pty::spawn(c.exec_command(&["-t", "--exec-id", "e2", "d1", "sh", "-c", "tty; exit 6"]));
    let (code, shown) = term.wait(T);
    assert_eq!(code, 6, "ctr task exec -t showed:\n{shown}");
    assert!(
        lines(&shown).iter().any(|l| l.starts_with("/dev/pts/")),
        "{shown:?}"
    );
    c.work
        .assert_called(&["exec --process", "--console-socket", "e2.pid"]);

    // ps: the container's processes (the host pids of the kata-shims standing for them).
    let out = c.ctr(&["task", "ps", "d1"]);
    assert_eq!(out.code(), 0, "ctr task ps: {}", out.stderr);
    let pids: Vec<u32> = out
        .stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        !pids.is_empty(),
        "ctr task ps listed nothing: {}",
        out.stdout_str()
    );
    c.work.assert_call_ends_with("ps --format json d1");

    // pause / resume.
    let out = c.ctr(&["task", "pause", "d1"]);
    assert_eq!(out.code(), 0, "ctr task pause: {}", out.stderr);
    c.wait_task_status("d1", "PAUSED", Duration::from_secs(10));
    let out = c.ctr(&["task", "resume", "d1"]);
    assert_eq!(out.code(), 0, "ctr task resume: {}", out.stderr);
    c.wait_task_status("d1", "RUNNING", Duration::from_secs(10));

    // kill by name and by number: the runtime gets numbers.
    for sig in ["SIGHUP", "10"] {
        let out = c.ctr(&["task", "kill", "-s", sig, "d1"]);
        assert_eq!(out.code(), 0, "ctr task kill -s {sig}: {}", out.stderr);
    }
    c.work.assert_call_ends_with("kill d1 1");
    c.work.assert_call_ends_with("kill d1 10");
    let mut seen = String::new();
    let both = poll(Duration::from_secs(20), || {
        let out = run_cmd(
            c.exec_command(&["--exec-id", "e3", "d1", "cat", "/tmp/signals"]),
            b"",
            T,
        );
        seen = out.stdout_str();
        seen.contains("hup") && seen.contains("usr1")
    });
    assert!(both, "the traps did not run: /tmp/signals = {seen:?}");

    // TERM (ctr's default): the trap exits 7, which containerd reports.
    let out = c.ctr(&["task", "kill", "d1"]);
    assert_eq!(out.code(), 0, "ctr task kill: {}", out.stderr);
    c.work.assert_call_ends_with("kill d1 15");
    c.wait_task_status("d1", "STOPPED", Duration::from_secs(30));
    let out = c.ctr(&["task", "rm", "d1"]);
    assert_eq!(out.code(), 0, "ctr task rm: {}", out.stderr);
    assert!(
        out.stderr.contains("exit code 7"),
        "ctr task rm did not report exit code 7: {}",
        out.stderr
    );
    let out = c.ctr(&["containers", "rm", "d1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

/// `ctr task kill --all -s SIGKILL` ends the init process and a detached exec alike.
#[test]
fn ctr_kill_all() {
    let c = Containerd::start();
    let out = run_cmd(
        c.run_command(&["-d", IMAGE, "all1", "sleep", "1000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    let out = run_cmd(
        c.exec_command(&["-d", "--exec-id", "bg", "all1", "sleep", "2000"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr task exec -d: {}", out.stderr);
    let out = run_cmd(
        c.exec_command(&["--exec-id", "u", "all1", "uname", "-r"]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr task exec: {}", out.stderr);
    assert_guest_kernel(&out.stdout_str());
    let out = c.ctr(&["task", "kill", "--all", "-s", "SIGKILL", "all1"]);
    assert_eq!(out.code(), 0, "ctr task kill --all: {}", out.stderr);
    c.work.assert_call_ends_with("kill --all all1 9");
    c.wait_task_status("all1", "STOPPED", Duration::from_secs(30));
    let out = c.ctr(&["task", "rm", "all1"]);
    assert_eq!(out.code(), 0, "ctr task rm: {}", out.stderr);
    assert!(out.stderr.contains("exit code 137"), "{}", out.stderr);
    let out = c.ctr(&["containers", "rm", "all1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

/// `ctr task rm -f` of a running task kills and deletes it; `ctr container rm` removes the
/// container (and with it the snapshot).
#[test]
fn ctr_task_rm_force_of_a_running_task() {
    let c = Containerd::start();
    let out = run_cmd(
        c.run_command(&[
            "-d",
            IMAGE,
            "f1",
            "sh",
            "-c",
            "uname -r > /tmp/release; sleep 1000",
        ]),
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "ctr run -d: {}", out.stderr);
    let mut release = String::new();
    assert!(
        poll(Duration::from_secs(30), || {
            release = run_cmd(
                c.exec_command(&["--exec-id", "r", "f1", "cat", "/tmp/release"]),
                b"",
                T,
            )
            .stdout_str();
            !release.trim().is_empty()
        }),
        "the container never wrote its kernel release"
    );
    assert_guest_kernel(&release);
    let out = c.ctr(&["task", "rm", "-f", "f1"]);
    assert_eq!(out.code(), 0, "ctr task rm -f: {}", out.stderr);
    c.work.assert_call_ends_with("kill --all f1 9");
    c.work.assert_call_ends_with("delete f1");
    assert_eq!(c.task_status("f1"), None);
    let out = c.ctr(&["containers", "rm", "f1"]);
    assert_eq!(out.code(), 0, "ctr container rm: {}", out.stderr);
    c.finish();
}

/// `ctr run --rm` of a command that does not exist: ctr fails with the runtime's error
/// (containerd reads it from the `--log` file kata-runtime writes) and leaves nothing behind.
/// runc fails such a container at create ("OCI runtime create failed: ... no such file or
/// directory"), so containerd never has a task to clean up.
#[test]
fn ctr_run_rm_of_a_missing_command_fails_and_leaves_nothing() {
    let c = Containerd::start();
    let out = run_cmd(
        c.run_command(&["--rm", IMAGE, "nx1", "/nonexistent"]),
        b"",
        T,
    );
    assert_ne!(out.code(), 0, "ctr run of /nonexistent succeeded");
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("/nonexistent") && err.contains("no such file or directory"),
        "ctr did not relay the runtime's error: {}",
        out.stderr
    );
    c.finish();
}

//! Terminals: the pty master goes to the caller over --console-socket (runc's protocol); the
//! process in the VM has a real terminal.

use e2e_tests::{read_until, set_terminal, ConsoleSocket, Env};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

#[test]
fn vm_console_socket_for_create_and_exec() {
    let env = Env::new();
    let b = env.bundle(
        "tty",
        &[
            "sh",
            "-c",
            "tty; stty size; read line; echo got:$line; sleep 1000",
        ],
    );
    set_terminal(&b, true);

    // Without a socket, a detached create with a terminal is refused before anything starts.
    let out = env.run(&["create", "--bundle", b.to_str().unwrap(), "tty"], b"", T);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    let out = env.run(
        &[
            "create",
            "--console-socket",
            "/nonexistent.sock",
            "--bundle",
            b.to_str().unwrap(),
            "tty",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 1, "{}", out.stderr);
    env.assert_clean();

    let console = ConsoleSocket::bind(env.path().join("console.sock"));
    let mut create = env.cmd(&[
        "create",
        "--console-socket",
        console.path.to_str().unwrap(),
        "--bundle",
        b.to_str().unwrap(),
        "tty",
    ]);
    create
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = create.spawn().unwrap();
    let master = console.receive();
    assert!(
        e2e_tests::wait_timeout(&mut child, T).success(),
        "create failed"
    );
    // The caller sizes the terminal through the master, as containerd does.
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on the received master with a valid winsize.
    unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            libc::TIOCSWINSZ,
            &ws,
        )
    };

    let out = env.run(&["start", "tty"], b"", T);
    assert_eq!(out.code(), 0, "start: {}", out.stderr);
    let seen = read_until(&master, "33 101", Duration::from_secs(30));
    assert!(
        seen.contains("/dev/pts/"),
        "tty did not report a terminal: {seen:?}"
    );
    assert!(
        seen.contains("33 101"),
        "window size did not reach the guest: {seen:?}"
    );
    (&master).write_all(b"hello\n").unwrap();
    let seen = read_until(&master, "got:hello", Duration::from_secs(30));
    assert!(
        seen.contains("got:hello"),
        "input did not reach the process: {seen:?}"
    );

    // exec -t with its own console socket.
    let console2 = ConsoleSocket::bind(env.path().join("console2.sock"));
    let mut exec = env.cmd(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        console2.path.to_str().unwrap(),
        "tty",
        "sh",
        "-c",
        "tty; sleep 2",
    ]);
    exec.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = exec.spawn().unwrap();
    let master2 = console2.receive();
    assert!(
        e2e_tests::wait_timeout(&mut child, T).success(),
        "exec -t failed"
    );
    let seen = read_until(&master2, "/dev/pts/", Duration::from_secs(30));
    assert!(
        seen.contains("/dev/pts/"),
        "exec -t has no terminal: {seen:?}"
    );

    // process.consoleSize sizes a new terminal from the start (--process form, as CRI-O).
    let process = env.path().join("sized.json");
    std::fs::write(
        &process,
        r#"{"terminal":true,"consoleSize":{"height":21,"width":77},"args":["sh","-c","stty size; sleep 2"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#,
    )
    .unwrap();
    let console3 = ConsoleSocket::bind(env.path().join("console3.sock"));
    let mut exec = env.cmd(&[
        "exec",
        "-d",
        "--console-socket",
        console3.path.to_str().unwrap(),
        "--process",
        process.to_str().unwrap(),
        "tty",
    ]);
    exec.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = exec.spawn().unwrap();
    let master3 = console3.receive();
    assert!(
        e2e_tests::wait_timeout(&mut child, T).success(),
        "exec --process with a terminal failed"
    );
    let seen = read_until(&master3, "21 77", Duration::from_secs(30));
    assert!(seen.contains("21 77"), "consoleSize not applied: {seen:?}");

    let out = env.run(&["delete", "--force", "tty"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    drop((master, master2, master3));
    env.assert_clean();
}

/// A pty pair: the master end for the test, the slave end as a file.
fn open_pty(rows: u16, cols: u16) -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut master = 0;
    let mut slave = 0;
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty with valid out-pointers and a winsize; the fds are new and ours.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: fresh fds owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

/// `run` of a terminal container from an interactive shell (no console socket): the
/// caller's own terminal becomes the process's, window size changes follow, and the exit
/// code comes back.
#[test]
fn vm_run_with_a_terminal_from_an_interactive_shell() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let b = env.bundle(
        "itty",
        &[
            "sh",
            "-c",
            "tty; stty size; read line; stty size; echo got:$line; exit 3",
        ],
    );
    set_terminal(&b, true);
    let (master, slave) = open_pty(40, 100);
    let mut cmd = env.cmd(&["run", "--bundle", b.to_str().unwrap(), "itty"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec: a session of its own with
    // the pty as controlling terminal, as a login shell has.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let seen = read_until(&master, "40 100", T);
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(seen.contains("40 100"), "{seen}");
    // Resize the caller's terminal: the shim forwards the new size to the guest's pty.
    let ws = libc::winsize {
        ws_row: 50,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
    std::thread::sleep(Duration::from_millis(500));
    (&master).write_all(b"hello\n").unwrap();
    let seen = read_until(&master, "got:hello", T);
    assert!(seen.contains("50 120"), "{seen}");
    assert!(seen.contains("got:hello"), "{seen}");
    let status = e2e_tests::wait_timeout(&mut child, T);
    assert_eq!(status.code(), Some(3));
    env.assert_clean();
}

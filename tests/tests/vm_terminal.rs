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

    let out = env.run(&["delete", "--force", "tty"], b"", T);
    assert_eq!(out.code(), 0, "delete: {}", out.stderr);
    drop((master, master2));
    env.assert_clean();
}

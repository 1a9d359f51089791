//! Runs a caller under a pseudo-terminal, as a person at a terminal would (`ctr run -t`,
//! `podman run -it`, `exec -t` check that their stdin is a terminal and put it in raw mode).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Terminal size given to the caller's terminal (and so, through it, to the container's).
pub const ROWS: u16 = 37;
pub const COLS: u16 = 111;

/// The size a test gives the terminal once the container runs (see `probe_script`).
pub const NEW_ROWS: u16 = 51;
pub const NEW_COLS: u16 = 152;

/// A container command for terminal tests: prints its tty, the kernel release and the
/// terminal size (waiting up to 10 s for the caller's size to arrive: callers resize right after
/// start, as with runc), then "ready"; reads a line and echoes it as "got:<line>"; waits up to
/// 10 s for the terminal to become NEW_ROWS x NEW_COLS and prints the size again; exits `code`.
pub fn probe_script(code: i32) -> String {
    let wait = |rows: u16, cols: u16| {
        format!(
            "i=0; while [ \"$(stty size)\" != '{rows} {cols}' ] && [ $i -lt 50 ]; \
             do sleep 0.2; i=$((i+1)); done; stty size"
        )
    };
    format!(
        "tty; uname -r; {}; echo ready; read line; echo \"got:$line\"; {}; exit {code}",
        wait(ROWS, COLS),
        wait(NEW_ROWS, NEW_COLS)
    )
}

pub struct Pty {
    master: File,
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
}

/// Starts `cmd` as a session leader with a new pty as its controlling terminal and stdio.
pub fn spawn(mut cmd: Command) -> Pty {
    let (mut m, mut s): (RawFd, RawFd) = (-1, -1);
    let ws = libc::winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills two fds; the name and termios pointers may be null.
    let rc = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nobody else.
    let (master, slave) = unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) };
    for fd in [m, s] {
        // SAFETY: fcntl on fds we own. Only the stdio copies below reach the child.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawning under a pty");
    // The command holds copies of the slave until dropped; with none of ours left, the master
    // reads EIO once every process that has the terminal is gone.
    drop(cmd);
    drop(slave);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().expect("dup master");
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    Pty {
        master,
        child,
        seen,
    }
}

impl Pty {
    /// Everything the terminal showed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("lock")).into_owned()
    }

    /// Waits until the terminal shows `needle`; panics with what it showed after `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) {
        let ok = crate::poll(within, || self.output().contains(needle));
        assert!(
            ok,
            "the terminal never showed {needle:?} within {within:?}; it showed:\n{}",
            self.output()
        );
    }

    /// Types `bytes` on the terminal.
    pub fn send(&self, bytes: &[u8]) {
        (&self.master).write_all(bytes).expect("writing to the pty");
    }

    /// Resizes the terminal, as a person resizing the window: the caller gets SIGWINCH.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our master with a valid winsize.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits for the command to exit; returns its exit code and what the terminal showed.
    pub fn wait(mut self, within: Duration) -> (i32, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the command under the pty did not exit within {within:?}; it showed:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Output the command wrote just before exiting may still be on its way.
        let settle = Instant::now() + Duration::from_secs(2);
        loop {
            let before = self.output().len();
            std::thread::sleep(Duration::from_millis(250));
            if self.output().len() == before || Instant::now() > settle {
                break;
            }
        }
        (crate::exit_code(status), self.output())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! Helpers for the end-to-end tests: each test gets its own `Env` (state root, VM and shared
//! folders, configuration file, all under one temporary folder), builds busybox bundles, drives
//! the real `kata-runtime` binary, and ends with `assert_clean`, the leak check: no process,
//! mount or file of that test's sandboxes may remain.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Folder of the binaries under test: `KATA_BIN_DIR`, else the executable's own folder, or the
/// one above it for a test executable (`target/<triple>/<profile>/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("KATA_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("target folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn runtime_bin() -> PathBuf {
    let p = bin_dir().join("kata-runtime");
    assert!(
        p.exists(),
        "{} missing: run `make build` first",
        p.display()
    );
    p
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("kt")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().join("root");
        let config = dir.path().join("configuration.toml");
        let text = format!(
            "[runtime]\nvm_dir = \"{}\"\nshared_dir = \"{}\"\n",
            dir.path().join("vm").display(),
            dir.path().join("shared").display()
        );
        std::fs::write(&config, text).expect("writing config");
        Env { dir, root, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `kata-runtime --root R --kata-config C <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root")
            .arg(&self.root)
            .arg("--kata-config")
            .arg(&self.config);
        c.args(args);
        c
    }

    /// Runs the runtime to completion with `stdin` fed in, within `timeout`.
    pub fn run(&self, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
        run_cmd(self.cmd(args), stdin, timeout)
    }

    /// The container's `status` from `kata-runtime state` (empty when it cannot be read).
    pub fn status(&self, id: &str) -> String {
        let out = self.run(&["state", id], b"", Duration::from_secs(60));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| v["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    /// A busybox bundle under this env running `args`.
    pub fn bundle(&self, name: &str, args: &[&str]) -> PathBuf {
        let dir = self.path().join("bundles").join(name);
        make_busybox_bundle(&dir, args);
        dir
    }

    /// The leak check: nothing of this env's sandboxes remains.
    pub fn assert_clean(&self) {
        let me = self.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = processes_mentioning(&me);
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {procs:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&me))
            .collect();
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
        // Sockets bound under this env by anyone but the test itself (its console sockets),
        // e.g. a socket a dead helper left bound through an inherited descriptor.
        let own: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
            .map(|rd| rd.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect();
        let bound = || -> Vec<String> {
            std::fs::read_to_string("/proc/net/unix")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let (inode, path) = (f.get(6)?, f.get(7)?);
                    (path.starts_with(&me) && !own.contains(*inode)).then(|| path.to_string())
                })
                .collect()
        };
        // A SIGKILLed multi-threaded process (QEMU) shows as a zombie as soon as its main
        // thread is done, while its other threads still hold the descriptors for a moment.
        let mut sockets = bound();
        let socket_deadline = Instant::now() + Duration::from_secs(10);
        while !sockets.is_empty() && Instant::now() < socket_deadline {
            std::thread::sleep(Duration::from_millis(100));
            sockets = bound();
        }
        assert!(sockets.is_empty(), "unix sockets still bound: {sockets:?}");
        for sub in ["root", "vm", "shared"] {
            let d = self.path().join(sub);
            let left: Vec<_> = std::fs::read_dir(&d)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{} not empty: {left:?}", d.display());
        }
    }
}

impl Drop for Env {
    /// A failing test must not leave VMs behind for the next one: force-delete whatever is
    /// still in this env's root, then kill and unmount anything left of its sandboxes.
    fn drop(&mut self) {
        let _ = run_cmd(
            self.cmd(&["factory", "destroy"]),
            b"",
            Duration::from_secs(120),
        );
        let out = run_cmd(self.cmd(&["list", "-q"]), b"", Duration::from_secs(30));
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = run_cmd(
                self.cmd(&["delete", "--force", id]),
                b"",
                Duration::from_secs(60),
            );
        }
        let me = self.path().to_string_lossy().into_owned();
        for (pid, _) in processes_mentioning(&me) {
            // SAFETY: kill(2) with a pid read from /proc.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&me))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            if let Ok(c) = std::ffi::CString::new(t) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Pids and command lines of processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id() as i32;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A runtime call in flight is not a leftover; a factory daemon is.
        let runtime_call = cmdline.contains("kata-runtime") && !cmdline.contains("factory serve");
        if cmdline.contains(needle) && !runtime_call {
            out.push((pid, cmdline));
        }
    }
    out
}

/// Runs `cmd` with `stdin` fed in. Output goes to files, not pipes: a detached container's
/// shim inherits them and keeps them open after the runtime exits.
pub fn run_cmd(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    let out_file = tempfile::tempfile().expect("stdout file");
    let err_file = tempfile::tempfile().expect("stderr file");
    cmd.stdin(Stdio::piped())
        .stdout(out_file.try_clone().expect("dup"))
        .stderr(err_file.try_clone().expect("dup"));
    let mut child = cmd.spawn().expect("spawning kata-runtime");
    let mut sin = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let status = wait_timeout(&mut child, timeout);
    let _ = writer.join();
    let read_all = |mut f: std::fs::File| {
        use std::io::Seek;
        let mut v = Vec::new();
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_end(&mut v);
        v
    };
    Output {
        status,
        stdout: read_all(out_file),
        stderr: String::from_utf8_lossy(&read_all(err_file)).into_owned(),
    }
}

/// Waits for the child; kills it and fails the test after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` with sh; its stdout. A failure fails the test.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same busybox bundle as `make demo` (scripts/make-busybox-bundle.sh), running `args`.
pub fn make_busybox_bundle(dir: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-busybox-bundle.sh");
    let out = Command::new(&script)
        .arg(dir)
        .args(args)
        .output()
        .expect("running make-busybox-bundle.sh");
    assert!(
        out.status.success(),
        "make-busybox-bundle.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn host_kernel_release() -> String {
    let out = Command::new("uname").arg("-r").output().expect("uname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sets `process.terminal` in a bundle's config.json.
pub fn set_terminal(bundle: &Path, on: bool) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    spec["process"]["terminal"] = serde_json::Value::Bool(on);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json")).expect("write");
}

/// The receiving end of a `--console-socket`, as containerd and conmon implement it: accepts
/// one connection and takes the pty master passed with SCM_RIGHTS.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: PathBuf) -> ConsoleSocket {
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind console socket");
        ConsoleSocket { path, listener }
    }

    /// Waits for the runtime to send the master; returns it as a File.
    pub fn receive(&self) -> std::fs::File {
        use std::os::fd::{AsRawFd, FromRawFd};
        // Bounded: a runtime that failed before sending must fail the test, not hang it.
        self.listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(90);
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("no console connection: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        let mut name = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: name.as_mut_ptr().cast(),
            iov_len: name.len(),
        };
        let mut cmsg = [0u64; 8];
        // SAFETY: a zeroed msghdr pointing at live buffers; recvmsg fills them.
        let fd = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cmsg);
            let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, 0);
            assert!(n > 0, "recvmsg on the console socket failed");
            let c = libc::CMSG_FIRSTHDR(&msg);
            assert!(
                !c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS,
                "no fd passed"
            );
            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>())
        };
        // SAFETY: the fd was just received and is owned by nobody else.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }
}

/// Reads from a pty master on a thread until `needle` shows up or `timeout` passes; returns
/// what was read.
pub fn read_until(master: &std::fs::File, needle: &str, timeout: Duration) -> String {
    let mut f = master.try_clone().expect("dup master");
    let needle = needle.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&all).contains(&needle) {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
    });
    rx.recv_timeout(timeout).unwrap_or_default()
}

/// Edits a bundle's config.json in place.
pub fn edit_spec(bundle: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json")).expect("write");
}

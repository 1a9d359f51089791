//! Helpers for the end-to-end tests: each test gets its own `Env` (state root, VM and shared
//! folders, configuration file, all under one temporary folder), builds busybox bundles, drives
//! the real `kata-runtime` binary, and ends with `assert_clean`, the leak check: no process,
//! mount or file of that test's sandboxes may remain.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Folder of the binaries under test: `KATA_BIN_DIR`, else the folder above the test
/// executable (`target/<triple>/<profile>/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("KATA_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_path_buf()
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
        for sub in ["root", "vm", "shared"] {
            let d = self.path().join(sub);
            let left: Vec<_> = std::fs::read_dir(&d)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{} not empty: {left:?}", d.display());
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
        if cmdline.contains(needle) && !cmdline.contains("kata-runtime") {
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

//! Real-VM tests: they boot QEMU with a real guest kernel.
//!
//! Kernel: $KATA_TEST_KERNEL, else <workspace>/build/guest/vmlinux, else (manual
//! runs on the dev machine) /tmp/kdl/x/boot/vmlinuz-6.1.0-56-amd64. No kernel found
//! is a test FAILURE, not a skip: a silently skipped VM test hides regressions.
//! Initrd: $KATA_TEST_INITRD, else a tiny generated one without a usable init.
//!
//! The tests hold a lock so at most one QEMU runs at a time (2 shared cores).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hypervisor::{Hypervisor, Qemu, QemuState, SharedFs, VmConfig};

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn test_kernel() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("KATA_TEST_KERNEL") {
        // An explicit choice is the only candidate: falling back would test something else.
        Some(k) => vec![PathBuf::from(k)],
        None => vec![
            workspace_root().join("build/guest/vmlinux"),
            PathBuf::from("/tmp/kdl/x/boot/vmlinuz-6.1.0-56-amd64"),
        ],
    };
    match candidates.iter().find(|p| p.is_file()) {
        Some(k) => k.clone(),
        None => panic!(
            "no guest kernel for the VM tests: set KATA_TEST_KERNEL (tried {candidates:?}); \
             build the guest image first"
        ),
    }
}

/// A newc cpio archive holding one file, `/init`, that is not executable by the
/// kernel (no interpreter), so the guest ends in "No working init found".
fn tiny_initrd(dir: &Path) -> PathBuf {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            namesize as u32,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut cpio = Vec::new();
    entry(&mut cpio, 1, 0o100755, "init", b"#!/bin/sh\nexit 1\n");
    entry(&mut cpio, 0, 0, "TRAILER!!!", b"");
    let path = dir.join("initrd.cpio");
    std::fs::write(&path, cpio).unwrap();
    path
}

fn test_initrd(dir: &Path) -> PathBuf {
    match std::env::var_os("KATA_TEST_INITRD") {
        Some(i) => {
            let i = PathBuf::from(i);
            assert!(
                i.is_file(),
                "KATA_TEST_INITRD={} does not exist",
                i.display()
            );
            i
        }
        None => tiny_initrd(dir),
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    cfg: VmConfig,
}

fn fixture(id: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let vm_dir = tmp.path().join("vm");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&vm_dir).unwrap();
    std::fs::create_dir(&shared).unwrap();
    let mut cfg = VmConfig::new(id, vm_dir, test_kernel(), shared);
    cfg.probe_cache_dir = Some(tmp.path().to_path_buf());
    Fixture { _tmp: tmp, cfg }
}

/// Collects the serial console in the background (otherwise QEMU drops it).
fn capture_console(path: &Path) -> std::thread::JoinHandle<String> {
    let stream = UnixStream::connect(path).unwrap();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn still_exists(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn vm_start_then_stop_via_qmp_from_saved_state() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fixture("vmtest-stop");
    f.cfg.initrd = Some(test_initrd(f._tmp.path()));
    // Whatever the initrd does, a panic must keep the VM up until we stop it.
    f.cfg.kernel_params.push("panic=0".into());

    let mut qemu = Qemu::new(f.cfg.clone());
    let t0 = Instant::now();
    qemu.start().unwrap();
    let start_time = t0.elapsed();
    let pid = qemu.pid().unwrap();
    assert!(qemu.is_running());
    for s in [
        qemu.qmp_socket(),
        qemu.console_socket(),
        qemu.agent_socket(),
    ] {
        assert!(s.exists(), "{} missing", s.display());
    }
    let state = qemu.state().unwrap().clone();
    eprintln!(
        "started pid {pid} with {} ({}) in {start_time:?}",
        state.accel, state.accel_reason
    );

    // QMP works against the real QEMU.
    {
        let mut qmp = qemu.qmp(Duration::from_secs(5)).unwrap();
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["running"], true, "{status}");
    }

    // Let the guest get going so stop() meets a busy VM, not one still in firmware.
    std::thread::sleep(Duration::from_millis(500));

    // A later CLI process: only the saved JSON survives.
    let json = serde_json::to_string(&state).unwrap();
    drop(qemu);
    let restored: QemuState = serde_json::from_str(&json).unwrap();
    let mut qemu = Qemu::from_state(restored);
    assert!(qemu.is_running());

    let t1 = Instant::now();
    qemu.stop().unwrap();
    let stop_time = t1.elapsed();
    eprintln!("stopped in {stop_time:?}");
    assert!(
        stop_time < Duration::from_secs(5),
        "QMP quit should not need the SIGKILL fallback"
    );
    assert!(!qemu.is_running());
    assert!(qemu.wait_exit(Duration::ZERO));
    assert!(!still_exists(pid));
    assert!(!f.cfg.qmp_socket().exists());
    // Idempotent.
    qemu.stop().unwrap();
}

#[test]
fn vm_guest_exit_is_noticed() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // No initrd: the kernel cannot mount a root fs, panics, panic=-1 reboots at once,
    // and -no-reboot turns that into a QEMU exit.
    let f = fixture("vmtest-exit");
    let mut qemu = Qemu::new(f.cfg.clone());
    let t0 = Instant::now();
    qemu.start().unwrap();
    let console = capture_console(&qemu.console_socket());
    let pid = qemu.pid().unwrap();

    assert!(
        qemu.wait_exit(Duration::from_secs(120)),
        "guest did not exit by itself"
    );
    eprintln!("guest exited by itself {:?} after start", t0.elapsed());
    assert!(!qemu.is_running());
    assert!(!still_exists(pid));
    let out = console.join().unwrap();
    if std::env::var_os("VM_TEST_SHOW_CONSOLE").is_some() {
        eprintln!("{out}");
    }
    assert!(out.contains("Kernel panic"), "console output:\n{out}");

    // Stopping a VM that is already gone is fine.
    qemu.stop().unwrap();
    assert_eq!(qemu.pid(), None);
}

#[test]
fn vm_virtio_fs_start_stop_also_stops_virtiofsd() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fixture("vmtest-vfs");
    f.cfg.shared_fs = SharedFs::virtio_fs();
    f.cfg.kernel_params.push("panic=0".into());

    let mut qemu = Qemu::new(f.cfg.clone());
    let t0 = Instant::now();
    qemu.start().unwrap();
    eprintln!("virtio-fs VM started in {:?}", t0.elapsed());
    let vfs = qemu.state().unwrap().virtiofsd_pid.unwrap();
    assert!(vfs.is_alive());
    assert!(f.cfg.vhost_fs_socket().exists());

    let t1 = Instant::now();
    qemu.stop().unwrap();
    eprintln!(
        "virtio-fs VM stopped (with virtiofsd) in {:?}",
        t1.elapsed()
    );
    assert!(!vfs.is_alive());
    assert!(!qemu.is_running());
}

/// Field 6 of /proc/<pid>/stat: the session id.
fn session_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(6 - 3).unwrap().parse().unwrap()
}

#[test]
fn vm_stop_falls_back_to_sigkill_when_qmp_is_busy() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fixture("vmtest-kill");
    f.cfg.kernel_params.push("panic=0".into());
    f.cfg.debug = true; // also proves QEMU accepts the debug-only options
    f.cfg.stop_timeout_ms = 700;
    let mut qemu = Qemu::new(f.cfg.clone());
    qemu.start().unwrap();
    let pid = qemu.pid().unwrap();

    // Own session: a Ctrl-C or process-group kill aimed at us does not reach QEMU.
    assert_ne!(session_of(pid), session_of(std::process::id() as i32));
    for fd in [0, 1] {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }

    // QEMU serves one QMP client at a time: while we hold this session, stop()'s
    // own QMP connection gets no greeting and must fall back to SIGKILL.
    let _busy = qemu.qmp(Duration::from_secs(5)).unwrap();
    let t = Instant::now();
    qemu.stop().unwrap();
    let took = t.elapsed();
    eprintln!("stop with busy QMP (SIGKILL fallback) took {took:?}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(!still_exists(pid));
}

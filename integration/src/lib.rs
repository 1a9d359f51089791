//! Helpers for the tests with real callers (issue 5): containerd 1.6 through its v1 runtime
//! (`containerd-shim`), and podman + conmon.
//!
//! Each test owns a [`Workdir`]: one temporary folder under /tmp holding kata-runtime's
//! configuration (private VM and shared folders), its state root, the caller's own folders and
//! sockets, the busybox image built for it (`scripts/make-oci-image.sh`) and the logs. Callers do
//! not pass `--kata-config`, so the runtime they are given is a small wrapper script that adds the
//! test's configuration, a state root and a log when the caller gives none, records every call
//! in `calls.log`, and keeps the runtime's logs where a failing test can print them.
//!
//! On top of it, [`containerd::Containerd`] starts a containerd of the test's own,
//! [`podman::Podman`] gives podman private roots and [`docker::Docker`] starts a dockerd of the
//! test's own on such a containerd. `finish()` stops the caller and runs the leak
//! check; a test that panics prints the runtime's logs and force-cleans in `Drop`.

pub mod containerd;
pub mod cri;
pub mod docker;
pub mod podman;
pub mod pty;

pub use e2e_tests::{host_kernel_release, run_cmd, runtime_bin, Output};

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// The image every test runs, imported under this exact name so no caller ever pulls.
pub const IMAGE: &str = "localhost/busybox:latest";

/// Time limit of one caller command (a VM boot under TCG takes 3-5 s; the machine is shared).
pub const T: Duration = Duration::from_secs(120);

pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// A fresh folder with kata-runtime's configuration, the runtime wrapper and the image.
    pub fn new(prefix: &str) -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("tempdir");
        let w = Workdir { dir };
        for sub in ["bin", "logs", "kata-root", "vm", "shared"] {
            std::fs::create_dir_all(w.path().join(sub)).expect("mkdir");
        }
        let config = format!(
            "[runtime]\nvm_dir = \"{}\"\nshared_dir = \"{}\"\n",
            w.path().join("vm").display(),
            w.path().join("shared").display()
        );
        std::fs::write(w.kata_config(), config).expect("writing the kata configuration");
        w.write_wrapper();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-oci-image.sh");
        let out = Command::new(&script)
            .arg(w.image_tar())
            .arg(IMAGE)
            .output()
            .expect("running make-oci-image.sh");
        assert!(
            out.status.success(),
            "make-oci-image.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        w
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// What the callers are told the runtime is.
    pub fn runtime(&self) -> PathBuf {
        self.path().join("bin/oci-runtime")
    }

    pub fn kata_config(&self) -> PathBuf {
        self.path().join("configuration.toml")
    }

    /// State root for callers that pass no `--root` (podman); containerd is given it as its
    /// `runtime_root` and appends the namespace.
    pub fn kata_root(&self) -> PathBuf {
        self.path().join("kata-root")
    }

    pub fn image_tar(&self) -> PathBuf {
        self.path().join("busybox.tar")
    }

    /// The wrapper script. Its name must not contain "kata-runtime": the leak check skips
    /// command lines that do (runtime calls in flight), and conmon's names the runtime.
    fn write_wrapper(&self) {
        let dir = self.path().display().to_string();
        let script = format!(
            r#"#!/bin/sh
# kata-runtime as this test's callers see it: adds the test's configuration, plus a state root
# and a log when the caller gives none. Records every call in calls.log. A log the caller names
# (containerd: <bundle>/log.json, removed with the bundle) becomes a link into logs/ so that it
# outlives the bundle; before a delete, the VM's logs (shim, proxy with the guest console, QEMU)
# are copied to logs/vm/, as delete removes them.
dir='{dir}'
printf '%s\n' "$*" >> "$dir/calls.log"
log= root= debug= verb= skip=
for a in "$@"; do
  if [ -n "$skip" ]; then
    [ "$skip" = log ] && log=$a
    skip=
    continue
  fi
  case $a in
    --log) skip=log ;;
    --root) skip=1; root=1 ;;
    --log-format|--kata-config) skip=1 ;;
    --log=*) log=${{a#--log=}} ;;
    --root=*) root=1 ;;
    --debug) debug=1 ;;
    -*) ;;
    *) verb=$a; break ;;
  esac
done
extra="--kata-config $dir/configuration.toml"
[ -n "$root" ] || extra="$extra --root $dir/kata-root"
[ -n "$debug" ] || extra="$extra --debug"
if [ -z "$log" ]; then
  extra="$extra --log $dir/logs/kata-runtime.log"
elif [ ! -e "$log" ] && [ ! -L "$log" ]; then
  ln -s "$dir/logs/$(basename "$(dirname "$log")").log" "$log" 2>/dev/null || true
fi
if [ "$verb" = delete ]; then
  for d in "$dir"/vm/*/; do
    [ -d "$d" ] || continue
    mkdir -p "$dir/logs/vm/$(basename "$d")"
    cp -p "$d"*.log "$dir/logs/vm/$(basename "$d")/" 2>/dev/null || true
  done
fi
exec '{kata}' $extra "$@"
"#,
            kata = runtime_bin().display()
        );
        let path = self.runtime();
        std::fs::write(&path, script).expect("writing the runtime wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// For benchmarks: the runtime the callers are given becomes kata-runtime with only this
    /// folder's configuration added (no call log, no debug log, no log copies).
    pub fn write_plain_wrapper(&self) {
        let script = format!(
            "#!/bin/sh\nexec '{}' --kata-config '{}' \"$@\"\n",
            runtime_bin().display(),
            self.kata_config().display()
        );
        std::fs::write(self.runtime(), script).expect("writing the runtime wrapper");
    }

    /// Every runtime call the callers made so far (global flags, verb, arguments).
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Asserts the callers called the runtime with a line containing every one of `parts`.
    pub fn assert_called(&self, parts: &[&str]) {
        let calls = self.calls();
        assert!(
            calls.iter().any(|c| parts.iter().all(|p| c.contains(p))),
            "no runtime call with {parts:?}; calls:\n{}",
            calls.join("\n")
        );
    }

    /// Asserts the callers made a runtime call ending with `tail` (e.g. "kill ID 1").
    pub fn assert_call_ends_with(&self, tail: &str) {
        let calls = self.calls();
        assert!(
            calls.iter().any(|c| c.ends_with(tail)),
            "no runtime call ending with {tail:?}; calls:\n{}",
            calls.join("\n")
        );
    }

    /// The real kata-runtime on this test's configuration and the state root `root`.
    pub fn kata(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root")
            .arg(root)
            .arg("--kata-config")
            .arg(self.kata_config())
            .args(args);
        c
    }

    /// Prints what a failing test needs: the runtime calls, kata-runtime's own logs (per
    /// container for containerd, one file for podman), the VM logs (live ones and those saved
    /// before each delete), and `extra` files of the caller.
    pub fn dump_logs(&self, extra: &[PathBuf]) {
        eprintln!("===== test folder {}", self.path().display());
        let mut files = vec![self.path().join("calls.log")];
        files.extend(files_under(&self.path().join("logs")));
        files.extend(
            files_under(&self.path().join("vm"))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "log")),
        );
        files.extend(extra.iter().cloned());
        for f in files {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            const KEEP: usize = 24_000;
            let tail = if text.len() > KEEP {
                let mut cut = text.len() - KEEP;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                &text[cut..]
            } else {
                &text[..]
            };
            eprintln!("===== {} ({} bytes)\n{tail}", f.display(), bytes.len());
        }
        eprintln!("===== end of logs");
    }

    /// The leak check: no process mentions this folder (QEMU, kata-proxy, kata-shim,
    /// containerd-shim, conmon, containerd itself, podman's cleanup), nothing is mounted under
    /// it, and each of `must_be_empty` is empty or absent.
    pub fn assert_no_leaks(&self, must_be_empty: &[PathBuf]) {
        let me = self.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let procs = e2e_tests::processes_mentioning(&me);
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {procs:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let mounts = mounts_under(self.path());
        assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
        for d in must_be_empty {
            let left: Vec<_> = std::fs::read_dir(d)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{} not empty: {left:?}", d.display());
        }
    }

    /// After a failure: force-deletes what kata-runtime still knows in `kata_roots`, kills
    /// every process mentioning this folder and unmounts everything under it.
    pub fn force_cleanup(&self, kata_roots: &[PathBuf]) {
        for root in kata_roots {
            if !root.exists() {
                continue;
            }
            let out = run_cmd(
                self.kata(root, &["list", "-q"]),
                b"",
                Duration::from_secs(30),
            );
            for id in out.stdout_str().lines() {
                let _ = run_cmd(
                    self.kata(root, &["delete", "--force", id]),
                    b"",
                    Duration::from_secs(60),
                );
            }
        }
        let me = self.path().to_string_lossy().into_owned();
        for (pid, _) in e2e_tests::processes_mentioning(&me) {
            // SAFETY: kill(2) with a pid read from /proc.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut targets = mounts_under(self.path());
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            if let Ok(c) = std::ffi::CString::new(t) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let me = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m == &me || m.starts_with(&format!("{me}/")))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

/// An exit status as a shell shows it (128+N after signal N).
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Asserts that `release`, the `uname -r` a container printed, is not the host's: the
/// container ran on the guest kernel, in a VM.
pub fn assert_guest_kernel(release: &str) {
    let host = host_kernel_release();
    let release = release.trim();
    assert!(
        !release.is_empty() && release != host,
        "the container's kernel release {release:?} is the host's ({host}): it did not run in a VM"
    );
}

/// Polls `check` every 200 ms until it returns true or `within` passes; false on timeout.
pub fn poll(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lines of `text` without terminal carriage returns.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

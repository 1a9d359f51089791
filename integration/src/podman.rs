//! podman + conmon with private roots: `--root`, `--runroot`, `--tmpdir` in the test's folder,
//! a containers.conf of the test's own (CONTAINERS_CONF), kata-runtime as `--runtime`,
//! cgroupfs (no systemd here), file events (no journald), file locks (none in /dev/shm), no
//! network, never a pull. The busybox image is loaded with `podman load`.

use crate::{run_cmd, Output, Workdir, IMAGE, T};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The test's containers.conf. podman's default rlimits (nofile 1048576) fail on this machine.
pub const CONTAINERS_CONF: &str = r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
pull_policy = "never"
"#;

pub struct Podman {
    pub work: Workdir,
}

impl Podman {
    pub fn new() -> Podman {
        let work = Workdir::new("kip");
        let d = work.path().join("podman");
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        std::fs::write(d.join("containers.conf"), CONTAINERS_CONF).expect("containers.conf");
        let p = Podman { work };
        let tar = p.work.image_tar();
        let out = p.podman(&["load", "-i", tar.to_str().expect("utf-8")]);
        assert_eq!(out.code(), 0, "podman load: {}", out.stderr);
        let out = p.podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(
            out.stdout_str().lines().any(|l| l == IMAGE),
            "{IMAGE} is not among the images after the load: {}",
            out.stdout_str()
        );
        p
    }

    fn dir(&self) -> PathBuf {
        self.work.path().join("podman")
    }

    /// `podman <our global flags> <args>` with our containers.conf.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with_runtime(&self.work.runtime(), args)
    }

    /// The same with another OCI runtime (`runc`, for comparisons).
    pub fn command_with_runtime(&self, runtime: &std::path::Path, args: &[&str]) -> Command {
        let d = self.dir();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(runtime)
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args);
        c
    }

    /// Runs podman to completion with `stdin` fed in.
    pub fn podman_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cmd(self.command(args), stdin, T)
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        self.podman_in(args, b"")
    }

    /// `podman inspect -f {{.State.<field>}} name`.
    pub fn state(&self, name: &str, field: &str) -> String {
        let out = self.podman(&["inspect", "-f", &format!("{{{{.State.{field}}}}}"), name]);
        assert_eq!(out.code(), 0, "podman inspect: {}", out.stderr);
        out.stdout_str().trim().to_string()
    }

    /// The container's full id (what the runtime is called with).
    pub fn state_id(&self, name: &str) -> String {
        let out = self.podman(&["inspect", "-f", "{{.Id}}", name]);
        assert_eq!(out.code(), 0, "podman inspect: {}", out.stderr);
        out.stdout_str().trim().to_string()
    }

    pub fn wait_status(&self, name: &str, want: &str, within: Duration) {
        let mut last = String::new();
        let ok = crate::poll(within, || {
            last = self.state(name, "Status");
            last == want
        });
        assert!(ok, "container {name} stayed {last:?}, wanted {want}");
    }

    /// The end of a test: no container left in podman, and nothing of the test remains
    /// (processes incl. conmon and podman's cleanup, mounts, runtime state, VM and shared
    /// folders).
    pub fn finish(self) {
        let out = self.podman(&["ps", "-a", "-q"]);
        assert!(
            out.stdout_str().trim().is_empty(),
            "containers left: {}",
            out.stdout_str()
        );
        let w = &self.work;
        w.assert_no_leaks(&[w.kata_root(), w.path().join("vm"), w.path().join("shared")]);
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.work.dump_logs(&[]);
            let _ = run_cmd(
                self.command(&["rm", "--all", "--force", "--time", "0"]),
                b"",
                Duration::from_secs(120),
            );
        }
        self.work.force_cleanup(&[self.work.kata_root()]);
    }
}

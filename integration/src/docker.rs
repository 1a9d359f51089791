//! Docker Engine 20.10 (Debian's `docker.io`) of the test's own: `dockerd` with its data root,
//! exec root, pid file, socket and daemon.json in the test's folder, on a private containerd
//! ([`Containerd::start`]), with kata-runtime added as the runtime `kata` (daemon.json's
//! `runtimes`). Docker drives it through containerd's runc v2 shim with the runtime's path as
//! the shim's binary, and its state root is `<exec-root>/runtime-runc/moby`. The host's network
//! is not touched (`--bridge=none`, `--iptables=false`, `--ip-masq=false`), nothing is pulled:
//! the busybox image is loaded from the archive the project builds.

use crate::containerd::Containerd;
use crate::{run_cmd, Output, Workdir, IMAGE, T};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Docker client of Debian's docker.io (another `docker` may come first in PATH).
const DOCKER_CLI: &str = "/usr/bin/docker";

/// The runtime name `docker run --runtime` selects.
pub const RUNTIME: &str = "kata";

pub struct Docker {
    /// Dropped after dockerd: its containerd outlives it.
    containerd: Option<Containerd>,
    daemon: Option<Child>,
}

impl Docker {
    pub fn start() -> Docker {
        let containerd = Containerd::start();
        let mut d = Docker {
            containerd: Some(containerd),
            daemon: None,
        };
        let dir = d.dir();
        for sub in ["data", "exec"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        // deprecated-key-path: Docker 20.10 writes a trust key, by default in /etc/docker.
        let config = serde_json::json!({
            "runtimes": {RUNTIME: {"path": d.work().runtime()}},
            "deprecated-key-path": dir.join("key.json"),
        });
        std::fs::write(dir.join("daemon.json"), config.to_string()).expect("daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd.log");
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--containerd")
            .arg(d.containerd().socket())
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.socket().display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("starting dockerd (make deps installs docker.io)");
        d.daemon = Some(daemon);
        let up = crate::poll(Duration::from_secs(60), || {
            d.socket().exists() && d.docker(&["version"]).code() == 0
        });
        assert!(up, "dockerd did not come up within 60 s");
        let tar = d.dir().join("busybox-docker.tar");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-oci-image.sh");
        let mut make = Command::new(script);
        make.env("DOCKER_ARCHIVE", "1").arg(&tar).arg(IMAGE);
        let out = run_cmd(make, b"", T);
        assert_eq!(out.code(), 0, "make-oci-image.sh: {}", out.stderr);
        let out = d.docker(&["load", "-i", tar.to_str().expect("utf-8")]);
        assert_eq!(out.code(), 0, "docker load: {}", out.stderr);
        d
    }

    pub fn work(&self) -> &Workdir {
        &self.containerd().work
    }

    fn containerd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("containerd runs while Docker lives")
    }

    fn dir(&self) -> PathBuf {
        self.work().path().join("docker")
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    /// kata-runtime's state root as Docker gives it (`--root`).
    pub fn kata_root(&self) -> PathBuf {
        self.dir().join("exec/runtime-runc/moby")
    }

    /// `docker -H <ours> <args>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER_CLI);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args);
        c
    }

    pub fn docker_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cmd(self.command(args), stdin, T)
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, b"")
    }

    /// `docker inspect -f {{.State.<field>}} name`.
    pub fn state(&self, name: &str, field: &str) -> String {
        let out = self.docker(&["inspect", "-f", &format!("{{{{.State.{field}}}}}"), name]);
        assert_eq!(out.code(), 0, "docker inspect: {}", out.stderr);
        out.stdout_str().trim().to_string()
    }

    /// The end of a test: no container left in Docker, dockerd stops, kata-runtime's state
    /// root under Docker's exec root is empty, then containerd's own end (no task, processes,
    /// mounts, runtime state, VM or shared folder left).
    pub fn finish(mut self) {
        let out = self.docker(&["ps", "-a", "-q"]);
        assert!(
            out.stdout_str().trim().is_empty(),
            "containers left: {}",
            out.stdout_str()
        );
        self.stop_daemon();
        // Docker's own: the host network's sandbox key, bound once a container asked for host
        // networking, stays mounted after dockerd exits (with runc as well).
        let host_key = self.dir().join("exec/netns/default");
        if crate::mounts_under(&host_key).len() == 1 {
            let status = Command::new("umount").arg(&host_key).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "umount {}",
                host_key.display()
            );
        }
        let root = self.kata_root();
        let left: Vec<_> = std::fs::read_dir(&root)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} not empty: {left:?}", root.display());
        if let Some(c) = self.containerd.take() {
            c.finish();
        }
    }

    /// SIGTERM, then SIGKILL after 30 s.
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let stopped = crate::poll(Duration::from_secs(30), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Docker {
    /// After a failure: Docker removes what it still has, stops; what is left of kata-runtime's
    /// state under its exec root is force-deleted; then containerd's own clean-up runs.
    fn drop(&mut self) {
        if self.containerd.is_none() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("===== dockerd.log");
            eprintln!(
                "{}",
                std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
            );
        }
        if self.daemon.is_some() {
            let ids = run_cmd(self.command(&["ps", "-a", "-q"]), b"", T);
            for id in ids.stdout_str().lines() {
                let _ = run_cmd(self.command(&["rm", "-f", id]), b"", T);
            }
        }
        self.stop_daemon();
        self.work().force_cleanup(&[self.kata_root()]);
    }
}

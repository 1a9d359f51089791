//! A containerd 1.6 of the test's own: its config, root, state and sockets in the test's
//! folder, the CRI plugin (and the snapshotters that probe the host) off, kata-runtime as the
//! v1 runtime behind containerd-shim, the busybox image imported. Nothing can be pulled: ctr
//! `run` only uses images that are there.

use crate::{run_cmd, Output, Workdir, IMAGE, T};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The runtime name `ctr run --runtime` selects.
pub const V1: &str = "io.containerd.runtime.v1.linux";

pub struct Containerd {
    pub work: Workdir,
    daemon: Option<Child>,
}

/// The image CRI pods run as their sandbox ("pause") container: busybox sleeping forever.
pub const PAUSE_IMAGE: &str = "localhost/pause:latest";
/// The CRI runtime handler that selects kata-runtime.
pub const CRI_HANDLER: &str = "kata";

/// The runtime name of containerd's runc v2 shim.
pub const RUNC_V2: &str = "io.containerd.runc.v2";

/// The runtime name of our shim v2 (containerd runs `containerd-shim-kata-v2` from its PATH).
pub const KATA_V2: &str = "io.containerd.kata.v2";

/// Which containerd shim runs kata-runtime for the CRI handler.
enum Shim<'a> {
    /// The v1 runtime (containerd-shim), with extra TOML lines for the handler's section.
    V1(&'a str),
    /// The runc v2 shim with kata-runtime as its binary.
    RuncV2,
    /// Our shim v2, `containerd-shim-kata-v2`.
    KataV2,
}

impl Shim<'_> {
    /// The CRI handler's section.
    fn handler(&self, work: &Workdir) -> String {
        let (runtime, root) = (work.runtime(), work.kata_root());
        match self {
            Shim::V1(options) => format!(
                "      runtime_type = \"{V1}\"\n      runtime_engine = \"{}\"\n      \
                 runtime_root = \"{}\"\n      {options}",
                runtime.display(),
                root.display()
            ),
            // The shim appends the namespace to Root: the state lands in kata-root/k8s.io.
            Shim::RuncV2 => format!(
                "      runtime_type = \"{RUNC_V2}\"\n      \
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{CRI_HANDLER}.options]\n        \
                 BinaryName = \"{}\"\n        Root = \"{}\"",
                runtime.display(),
                root.display()
            ),
            Shim::KataV2 => format!("      runtime_type = \"{KATA_V2}\""),
        }
    }
}

impl Containerd {
    /// containerd without its CRI plugin, for ctr.
    pub fn start() -> Containerd {
        Self::start_with(None, Shim::V1(""))
    }

    /// containerd with its CRI plugin on: kata-runtime (v1 runtime) is the runtime handler
    /// [`CRI_HANDLER`] and the default, pod networks come from the CNI configuration in
    /// `cni_conf_dir` (plugins from Debian's containernetworking-plugins), the pause image is
    /// imported into the `k8s.io` namespace. The CRI socket is [`Containerd::socket`].
    pub fn start_with_cri(cni_conf_dir: &std::path::Path) -> Containerd {
        Self::start_with(Some(cni_conf_dir), Shim::V1(""))
    }

    /// As [`Containerd::start_with_cri`], with kata-runtime behind containerd's runc v2 shim
    /// (`runtime_type = "io.containerd.runc.v2"`, options `BinaryName` and `Root`): how a
    /// runc-compatible runtime is plugged into containerd 1.7 and 2.x.
    pub fn start_with_cri_runc_v2(cni_conf_dir: &std::path::Path) -> Containerd {
        Self::start_with(Some(cni_conf_dir), Shim::RuncV2)
    }

    /// As [`Containerd::start_with_cri`], with our shim v2 as the handler
    /// (`runtime_type = "io.containerd.kata.v2"`).
    pub fn start_with_cri_kata_v2(cni_conf_dir: &std::path::Path) -> Containerd {
        Self::start_with(Some(cni_conf_dir), Shim::KataV2)
    }

    /// As [`Containerd::start_with_cri`], with `handler_options` (TOML lines such as
    /// `privileged_without_host_devices = true`) added to the kata runtime handler's section.
    pub fn start_with_cri_options(
        cni_conf_dir: &std::path::Path,
        handler_options: &str,
    ) -> Containerd {
        Self::start_with(Some(cni_conf_dir), Shim::V1(handler_options))
    }

    fn start_with(cri: Option<&std::path::Path>, shim: Shim) -> Containerd {
        let work = Workdir::new("kic");
        let d = work.path().join("containerd");
        std::fs::create_dir_all(d.join("fifo")).expect("mkdir");
        let cri_disabled = if cri.is_some() {
            ""
        } else {
            "\n  \"io.containerd.grpc.v1.cri\","
        };
        let cri_section = match cri {
            None => String::new(),
            Some(cni) => format!(
                r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE games on this machine (client-calls.md).
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{CRI_HANDLER}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{CRI_HANDLER}]
{handler}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
                handler = shim.handler(&work),
                cni = cni.display(),
            ),
        };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
# No snapshotter that probes the host.
disabled_plugins = [{cri_disabled}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.runtime.v1.linux"]
  shim = "containerd-shim"
  runtime = "{runtime}"
  runtime_root = "{kata_root}"
  shim_debug = true
{cri_section}"#,
            d = d.display(),
            runtime = work.runtime().display(),
            kata_root = work.kata_root().display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("writing config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd.log");
        // The shim v2 binary is found on containerd's PATH and reads the configuration named
        // by KATA_CONF_FILE (both inherited from containerd).
        let shim_dir = work.path().join("shim-v2-bin");
        std::fs::create_dir_all(&shim_dir).expect("mkdir");
        std::os::unix::fs::symlink(
            e2e_tests::bin_dir().join("containerd-shim-kata-v2"),
            shim_dir.join("containerd-shim-kata-v2"),
        )
        .expect("linking the shim v2");
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("KATA_CONF_FILE", work.kata_config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("starting containerd (make deps installs it)");
        let c = Containerd {
            work,
            daemon: Some(daemon),
        };
        let up = crate::poll(Duration::from_secs(30), || {
            c.socket().exists() && c.ctr(&["version"]).code() == 0
        });
        assert!(up, "containerd did not come up within 30 s");
        let tar = c.work.image_tar();
        let out = c.ctr(&["images", "import", tar.to_str().expect("utf-8")]);
        assert_eq!(out.code(), 0, "ctr images import: {}", out.stderr);
        if cri.is_some() {
            c.import_for_cri(&tar);
        }
        let out = c.ctr(&["images", "ls", "-q"]);
        assert!(
            out.stdout_str().lines().any(|l| l == IMAGE),
            "{IMAGE} is not among the images after the import: {}",
            out.stdout_str()
        );
        c
    }

    /// The CRI plugin only sees images of the `k8s.io` namespace: busybox and the pause image.
    fn import_for_cri(&self, busybox_tar: &std::path::Path) {
        let pause_tar = self.work.path().join("pause.tar");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-oci-image.sh");
        let out = run_cmd(
            {
                let mut c = Command::new(script);
                c.arg(&pause_tar)
                    .arg(PAUSE_IMAGE)
                    .arg(r#"["sleep","2147483647"]"#);
                c
            },
            b"",
            T,
        );
        assert_eq!(out.code(), 0, "make-oci-image.sh pause: {}", out.stderr);
        for tar in [busybox_tar, pause_tar.as_path()] {
            let out = self.ctr(&[
                "-n",
                "k8s.io",
                "images",
                "import",
                tar.to_str().expect("utf-8"),
            ]);
            assert_eq!(out.code(), 0, "ctr -n k8s.io images import: {}", out.stderr);
        }
    }

    fn dir(&self) -> PathBuf {
        self.work.path().join("containerd")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// `ctr --address <ours> <args>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.socket()).args(args);
        c
    }

    /// Runs ctr to completion (stdin empty, so a container reading it sees its end).
    pub fn ctr(&self, args: &[&str]) -> Output {
        run_cmd(self.command(args), b"", T)
    }

    /// `ctr run --runtime io.containerd.runtime.v1.linux --fifo-dir <ours> <args>`.
    pub fn run_command(&self, args: &[&str]) -> Command {
        let fifo = self.dir().join("fifo");
        let mut a = vec![
            "run",
            "--runtime",
            V1,
            "--fifo-dir",
            fifo.to_str().expect("utf-8"),
        ];
        a.extend_from_slice(args);
        self.command(&a)
    }

    /// `ctr run --runtime io.containerd.runc.v2 --runc-binary <kata-runtime> --runc-root <ours>
    /// --fifo-dir <ours> <args>`: the runc v2 shim with kata-runtime as its binary.
    pub fn run_v2_command(&self, args: &[&str]) -> Command {
        let fifo = self.dir().join("fifo");
        let (runtime, root) = (self.work.runtime(), self.work.kata_root());
        let mut a = vec![
            "run",
            "--runtime",
            RUNC_V2,
            "--runc-binary",
            runtime.to_str().expect("utf-8"),
            "--runc-root",
            root.to_str().expect("utf-8"),
            "--fifo-dir",
            fifo.to_str().expect("utf-8"),
        ];
        a.extend_from_slice(args);
        self.command(&a)
    }

    /// `ctr run --runtime io.containerd.kata.v2 --fifo-dir <ours> <args>`: our shim v2.
    pub fn run_kata_v2_command(&self, args: &[&str]) -> Command {
        let fifo = self.dir().join("fifo");
        let mut a = vec![
            "run",
            "--runtime",
            KATA_V2,
            "--fifo-dir",
            fifo.to_str().expect("utf-8"),
        ];
        a.extend_from_slice(args);
        self.command(&a)
    }

    /// `ctr task exec --fifo-dir <ours> <args>`.
    pub fn exec_command(&self, args: &[&str]) -> Command {
        let fifo = self.dir().join("fifo");
        let mut a = vec!["task", "exec", "--fifo-dir", fifo.to_str().expect("utf-8")];
        a.extend_from_slice(args);
        self.command(&a)
    }

    /// The task's status as `ctr task ls` shows it (RUNNING, PAUSED, STOPPED...).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        assert_eq!(out.code(), 0, "ctr task ls: {}", out.stderr);
        out.stdout_str().lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap_or(&"").to_string())
        })
    }

    pub fn wait_task_status(&self, id: &str, want: &str, within: Duration) {
        let mut last = None;
        let ok = crate::poll(within, || {
            last = self.task_status(id);
            last.as_deref() == Some(want)
        });
        assert!(ok, "task {id} stayed {last:?}, wanted {want}");
    }

    /// The end of a test: no container or task is left in containerd, containerd stops, and
    /// nothing of the test remains (processes, mounts, runtime state, VM and shared folders,
    /// containerd's v1 task state).
    pub fn finish(mut self) {
        let tasks = self.ctr(&["task", "ls", "-q"]);
        assert!(
            tasks.stdout_str().trim().is_empty(),
            "tasks left: {}",
            tasks.stdout_str()
        );
        let containers = self.ctr(&["containers", "ls", "-q"]);
        assert!(
            containers.stdout_str().trim().is_empty(),
            "containers left: {}",
            containers.stdout_str()
        );
        self.stop_daemon();
        let w = &self.work;
        self.work.assert_no_leaks(&[
            w.kata_root().join("default"),
            w.kata_root().join("k8s.io"),
            w.path().join("vm"),
            w.path().join("shared"),
            self.dir().join("state").join(V1).join("default"),
            self.dir().join("state").join(V1).join("k8s.io"),
            self.dir()
                .join("state/io.containerd.runtime.v2.task/default"),
            self.dir()
                .join("state/io.containerd.runtime.v2.task/k8s.io"),
        ]);
    }

    /// SIGTERM, then SIGKILL after 15 s.
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let stopped = crate::poll(Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Containerd {
    /// After a failure: containerd removes what it still has (its shims then exit and remove
    /// their sockets), then whatever is left is force-deleted, killed and unmounted, and the
    /// sockets of killed shims (in /run/containerd/s, named in containerd's log) removed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.work.dump_logs(&[self.dir().join("containerd.log")]);
        }
        if self.daemon.is_some() {
            let short = Duration::from_secs(60);
            let ids = |what: &str| run_cmd(self.command(&[what, "ls", "-q"]), b"", short);
            for id in ids("tasks").stdout_str().lines() {
                let _ = run_cmd(self.command(&["tasks", "rm", "-f", id]), b"", short);
            }
            for id in ids("containers").stdout_str().lines() {
                let _ = run_cmd(self.command(&["containers", "rm", id]), b"", short);
            }
        }
        self.stop_daemon();
        self.work.force_cleanup(&[
            self.work.kata_root().join("default"),
            self.work.kata_root().join("k8s.io"),
        ]);
        let log = std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains("shim containerd-shim started"))
        {
            let socket = line
                .split("address=\"unix://")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            if let Some(socket) = socket.filter(|s| s.starts_with("/run/containerd/s/")) {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

//! What a VM looks like: the serialisable configuration of one sandbox VM.
//!
//! The runtime is a short-lived CLI, so this struct is also persisted inside
//! [`crate::QemuState`]; every field added later needs a serde default so old
//! state files keep loading.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Mount tag of the host folder shared with the guest; the agent mounts it by this name.
pub const SHARED_FS_MOUNT_TAG: &str = "kataShared";

/// Longest path a `sockaddr_un` can hold (108 bytes including the trailing NUL).
/// QEMU and virtiofsd fail with an obscure error beyond it, so we check up front.
const UNIX_PATH_MAX: usize = 107;

/// The descriptor number of the first device file QEMU inherits (see
/// [`VmConfig::inherited_devices`]); below it: stdio and nothing else.
pub const FIRST_INHERITED_FD: i32 = 3;

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Decide at start time with [`crate::kvm_probe::choose_accel`].
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// The value of QEMU's `accel=` machine property; `None` for the unresolved `Auto`.
    pub fn qemu_name(self) -> Option<&'static str> {
        match self {
            Accel::Auto => None,
            Accel::Kvm => Some("kvm"),
            Accel::Tcg => Some("tcg"),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// How the host's shared folder reaches the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SharedFs {
    /// virtio-9p. `msize` is not a QEMU option: it is the guest mount option
    /// (`-o trans=virtio,version=9p2000.L,msize=..`) that whoever asks the agent to
    /// mount the share must pass; it lives here so the whole VM is described in one place.
    #[serde(rename = "virtio-9p")]
    Virtio9p {
        #[serde(default = "default_msize")]
        msize: u32,
    },
    /// virtio-fs served by an external `virtiofsd` (one daemon per VM).
    VirtioFs {
        #[serde(default = "default_virtiofsd")]
        daemon: PathBuf,
        /// virtiofsd `-o cache=`: "auto" (the default) keeps shared writable mmap working,
        /// which "none" (direct I/O) refuses with ENODEV on the guest's 6.1 kernel.
        #[serde(default = "default_virtiofs_cache")]
        cache: String,
    },
}

impl SharedFs {
    pub fn virtio_9p() -> Self {
        SharedFs::Virtio9p {
            msize: default_msize(),
        }
    }

    pub fn virtio_fs() -> Self {
        SharedFs::VirtioFs {
            daemon: default_virtiofsd(),
            cache: default_virtiofs_cache(),
        }
    }
}

impl Default for SharedFs {
    fn default() -> Self {
        SharedFs::virtio_9p()
    }
}

/// Everything needed to start one sandbox VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    pub sandbox_id: String,
    /// Folder for this VM's sockets, pidfile and logs. The caller creates and removes it.
    pub vm_dir: PathBuf,
    #[serde(default = "default_qemu_path")]
    pub qemu_path: PathBuf,
    /// Uncompressed vmlinux (QEMU enters it through the PVH note; a bzImage also
    /// works but costs seconds of decompression under TCG).
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Appended after the base parameters, so they win on duplicates (the kernel
    /// takes the last value). Parameters for the agent use the `agent.` prefix,
    /// see [`crate::cmdline::agent_param`].
    #[serde(default)]
    pub kernel_params: Vec<String>,
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Upper bound for vCPU hot-plug (`-smp N,maxcpus=M`); not above `vcpus`: no hot-plug.
    #[serde(default)]
    pub max_vcpus: u32,
    /// DIMM slots for memory hot-plug and the most memory the VM may grow to
    /// (`-m N,slots=S,maxmem=M`); 0 slots: no hot-plug.
    #[serde(default)]
    pub memory_slots: u32,
    #[serde(default)]
    pub max_memory_mib: u32,
    #[serde(default = "default_machine_type")]
    pub machine_type: String,
    #[serde(default)]
    pub shared_fs: SharedFs,
    /// Host folder exported to the guest with mount tag [`SHARED_FS_MOUNT_TAG`].
    pub shared_dir: PathBuf,
    #[serde(default)]
    pub accel: Accel,
    /// TCG translation cache (MiB); 0: QEMU's default.
    #[serde(default)]
    pub tcg_tb_size_mib: u32,
    /// virtio-balloon with free page reporting (freed guest memory goes back to the host).
    #[serde(default)]
    pub free_page_reporting: bool,
    #[serde(default)]
    pub debug: bool,
    /// Empty `pcie-root-port`s created at boot so devices can be hot-plugged later
    /// (q35 has no hot-pluggable slot on the root bus). Ids are `rp1`, `rp2`, ...
    #[serde(default = "default_hotplug_root_ports")]
    pub hotplug_root_ports: u32,
    /// Budget for QEMU to serve QMP after its start (and for virtiofsd's socket to appear).
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
    /// Budget for QMP `quit` + process exit before SIGKILL.
    #[serde(default = "default_stop_timeout_ms")]
    pub stop_timeout_ms: u64,
    /// Where the KVM probe caches its verdict (keyed by boot id). `None`: the parent
    /// of `vm_dir`, which is shared by all sandboxes of this runtime.
    #[serde(default)]
    pub probe_cache_dir: Option<PathBuf>,
    /// The network namespace QEMU runs in (the pod's): its taps are only visible there.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// NICs present at boot.
    #[serde(default)]
    pub net_devices: Vec<NetDevice>,
    /// `/dev/vhost-net` is usable: tap NICs get `vhost=on` (virtio-net in the host kernel).
    #[serde(default)]
    pub vhost_net: bool,
    /// Templating: RAM in the template's file, and for a clone its state loaded at start.
    #[serde(default)]
    pub templating: Option<crate::Templating>,
}

/// A guest NIC and what backs it on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    /// QEMU id of the `-netdev` (`net0`); the `-device` is `dev-<id>`.
    pub id: String,
    /// The guest NIC's MAC (`aa:bb:cc:dd:ee:ff`); unused for VFIO (the device has its own).
    pub mac: String,
    pub backend: NetBackend,
}

/// What carries a guest NIC's packets on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum NetBackend {
    /// A tap interface QEMU opens by name (in its network namespace).
    Tap { ifname: String },
    /// A macvtap's character device (`/dev/tapN`): QEMU gets it open, as an inherited fd.
    Macvtap { device: PathBuf },
    /// A vhost-user backend (e.g. a DPDK switch) listening on `socket`.
    VhostUser { socket: PathBuf },
    /// A PCI device bound to vfio-pci, passed through whole.
    Vfio { host: String },
}

impl NetDevice {
    pub fn device_id(&self) -> String {
        format!("dev-{}", self.id)
    }
}

fn default_msize() -> u32 {
    512_000
}
fn default_virtiofsd() -> PathBuf {
    PathBuf::from("/usr/lib/qemu/virtiofsd")
}
fn default_virtiofs_cache() -> String {
    "auto".to_string()
}
fn default_qemu_path() -> PathBuf {
    PathBuf::from("/usr/bin/qemu-system-x86_64")
}
fn default_memory_mib() -> u32 {
    256
}
fn default_vcpus() -> u32 {
    1
}
fn default_machine_type() -> String {
    "q35".to_string()
}
fn default_hotplug_root_ports() -> u32 {
    2
}
fn default_start_timeout_ms() -> u64 {
    10_000
}
fn default_stop_timeout_ms() -> u64 {
    5_000
}

/// The QMP socket of the VM whose folder is `vm_dir`.
pub fn qmp_socket_in(vm_dir: &Path) -> PathBuf {
    vm_dir.join("qmp.sock")
}

/// A configuration that cannot work, found before anything is spawned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("sandbox id {0:?} is invalid: use 1-64 characters from [A-Za-z0-9_.-] (it ends up in QEMU options and file names)")]
    BadSandboxId(String),
    #[error("sandbox {sandbox_id}: {field} = {value} is out of range ({expected})")]
    OutOfRange {
        sandbox_id: String,
        field: &'static str,
        value: u64,
        expected: &'static str,
    },
    #[error("sandbox {sandbox_id}: machine type {machine_type:?} is invalid (letters, digits, '.', '-', '_')")]
    BadMachineType {
        sandbox_id: String,
        machine_type: String,
    },
    #[error("sandbox {sandbox_id}: socket path {} is {len} bytes, longer than the {UNIX_PATH_MAX} a unix socket allows; use a shorter vm_dir", .path.display())]
    SocketPathTooLong {
        sandbox_id: String,
        path: PathBuf,
        len: usize,
    },
    #[error("sandbox {sandbox_id}: a template VM cannot use virtio-fs or vhost-user NICs (QEMU cannot migrate vhost-user devices)")]
    TemplateWithSharedMemory { sandbox_id: String },
    #[error("sandbox {sandbox_id}: kernel parameter {param:?} contains a character that would break the command line")]
    BadKernelParam { sandbox_id: String, param: String },
}

impl VmConfig {
    /// A configuration with every optional field at its default.
    pub fn new(
        sandbox_id: impl Into<String>,
        vm_dir: impl Into<PathBuf>,
        kernel: impl Into<PathBuf>,
        shared_dir: impl Into<PathBuf>,
    ) -> Self {
        VmConfig {
            sandbox_id: sandbox_id.into(),
            vm_dir: vm_dir.into(),
            qemu_path: default_qemu_path(),
            kernel: kernel.into(),
            initrd: None,
            kernel_params: Vec::new(),
            memory_mib: default_memory_mib(),
            vcpus: default_vcpus(),
            max_vcpus: 0,
            memory_slots: 0,
            max_memory_mib: 0,
            machine_type: default_machine_type(),
            shared_fs: SharedFs::default(),
            shared_dir: shared_dir.into(),
            accel: Accel::Auto,
            tcg_tb_size_mib: 0,
            free_page_reporting: false,
            debug: false,
            hotplug_root_ports: default_hotplug_root_ports(),
            start_timeout_ms: default_start_timeout_ms(),
            stop_timeout_ms: default_stop_timeout_ms(),
            probe_cache_dir: None,
            netns: None,
            net_devices: Vec::new(),
            vhost_net: false,
            templating: None,
        }
    }

    /// Guest RAM must be a shared memfd: vhost-user backends (virtiofsd, a vhost-user switch)
    /// map it.
    pub fn needs_shared_memory(&self) -> bool {
        matches!(self.shared_fs, SharedFs::VirtioFs { .. })
            || self
                .net_devices
                .iter()
                .any(|d| matches!(d.backend, NetBackend::VhostUser { .. }))
    }

    /// The macvtap devices QEMU inherits open, in order: the first is fd
    /// [`FIRST_INHERITED_FD`], the next one more, and so on.
    pub fn inherited_devices(&self) -> Vec<PathBuf> {
        self.net_devices
            .iter()
            .filter_map(|d| match &d.backend {
                NetBackend::Macvtap { device } => Some(device.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn qmp_socket(&self) -> PathBuf {
        qmp_socket_in(&self.vm_dir)
    }
    pub fn console_socket(&self) -> PathBuf {
        self.vm_dir.join("console.sock")
    }
    /// The virtio-serial port `agent.channel.0` (what kata-proxy dials).
    pub fn agent_socket(&self) -> PathBuf {
        self.vm_dir.join("kata.sock")
    }
    pub fn vhost_fs_socket(&self) -> PathBuf {
        self.vm_dir.join("vhost-fs.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.vm_dir.join("qemu.pid")
    }
    /// QEMU's `-D` log (only gets content with `-d` items, which `debug` turns on).
    pub fn qemu_log(&self) -> PathBuf {
        self.vm_dir.join("qemu.log")
    }
    /// QEMU's stderr: the place where start-up errors end up.
    pub fn qemu_stderr_log(&self) -> PathBuf {
        self.vm_dir.join("qemu-stderr.log")
    }
    pub fn virtiofsd_log(&self) -> PathBuf {
        self.vm_dir.join("virtiofsd.log")
    }

    /// The sockets QEMU itself listens on (virtiofsd's is separate).
    pub fn qemu_sockets(&self) -> [PathBuf; 3] {
        [
            self.qmp_socket(),
            self.console_socket(),
            self.agent_socket(),
        ]
    }

    /// Where the KVM probe verdict is cached.
    pub fn probe_cache_dir(&self) -> PathBuf {
        match &self.probe_cache_dir {
            Some(dir) => dir.clone(),
            None => self
                .vm_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir),
        }
    }

    /// Checks what can be checked without touching the disk.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.sandbox_id;
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !id_ok {
            return Err(ConfigError::BadSandboxId(id.clone()));
        }
        let range = |field: &'static str, value: u64, min: u64, max: u64, expected| {
            if value < min || value > max {
                Err(ConfigError::OutOfRange {
                    sandbox_id: id.clone(),
                    field,
                    value,
                    expected,
                })
            } else {
                Ok(())
            }
        };
        // 64 MiB: below it the generic kernel plus initramfs does not boot.
        range(
            "memory_mib",
            self.memory_mib.into(),
            64,
            1 << 20,
            "64..=1048576",
        )?;
        range("vcpus", self.vcpus.into(), 1, 256, "1..=256")?;
        range(
            "hotplug_root_ports",
            self.hotplug_root_ports.into(),
            0,
            16,
            "0..=16",
        )?;
        range(
            "start_timeout_ms",
            self.start_timeout_ms,
            100,
            600_000,
            "100..=600000",
        )?;
        range(
            "stop_timeout_ms",
            self.stop_timeout_ms,
            10,
            600_000,
            "10..=600000",
        )?;
        if self.templating.is_some() && self.needs_shared_memory() {
            return Err(ConfigError::TemplateWithSharedMemory {
                sandbox_id: id.clone(),
            });
        }
        if let SharedFs::Virtio9p { msize } = self.shared_fs {
            range("msize", msize.into(), 4096, 1 << 24, "4096..=16777216")?;
        }

        let mt = &self.machine_type;
        if mt.is_empty()
            || !mt
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(ConfigError::BadMachineType {
                sandbox_id: id.clone(),
                machine_type: mt.clone(),
            });
        }

        let mut sockets = self.qemu_sockets().to_vec();
        sockets.push(self.vhost_fs_socket());
        for path in sockets {
            let len = path.as_os_str().len();
            if len > UNIX_PATH_MAX {
                return Err(ConfigError::SocketPathTooLong {
                    sandbox_id: id.clone(),
                    path,
                    len,
                });
            }
        }

        // The whole -append value is one argv element, so spaces inside a parameter
        // would silently split it into two; quotes and control characters confuse the
        // kernel's own parser.
        for p in &self.kernel_params {
            if p.is_empty()
                || p.chars()
                    .any(|c| c.is_whitespace() || c == '"' || c.is_control())
            {
                return Err(ConfigError::BadKernelParam {
                    sandbox_id: id.clone(),
                    param: p.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_when_deserialising_a_minimal_config() {
        let json =
            r#"{"sandbox_id":"abc","vm_dir":"/run/vc/vm/abc","kernel":"/k","shared_dir":"/s"}"#;
        let cfg: VmConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg, VmConfig::new("abc", "/run/vc/vm/abc", "/k", "/s"));
        assert_eq!(cfg.memory_mib, 256);
        assert_eq!(cfg.shared_fs, SharedFs::Virtio9p { msize: 512_000 });
        assert_eq!(cfg.accel, Accel::Auto);
        assert_eq!(cfg.probe_cache_dir(), PathBuf::from("/run/vc/vm"));
    }

    #[test]
    fn shared_fs_serde_shape() {
        let fs: SharedFs = serde_json::from_str(r#"{"type":"virtio-fs"}"#).unwrap();
        assert_eq!(fs, SharedFs::virtio_fs());
        let s = serde_json::to_string(&SharedFs::virtio_9p()).unwrap();
        assert_eq!(s, r#"{"type":"virtio-9p","msize":512000}"#);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let ok = VmConfig::new("abc", "/run/vc/vm/abc", "/k", "/s");
        assert!(ok.validate().is_ok());

        let mut c = ok.clone();
        c.sandbox_id = "a,b".into();
        assert!(matches!(c.validate(), Err(ConfigError::BadSandboxId(_))));

        let mut c = ok.clone();
        c.memory_mib = 16;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange {
                field: "memory_mib",
                ..
            })
        ));

        let mut c = ok.clone();
        c.vm_dir = PathBuf::from(format!("/{}", "x".repeat(100)));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::SocketPathTooLong { .. })
        ));

        let mut c = ok.clone();
        c.kernel_params = vec!["a b".into()];
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadKernelParam { .. })
        ));
    }
}

//! The runtime's configuration (TOML, Kata 1.x section and key names). Every path has a default
//! found relative to the running executable, so binaries work straight from the build tree
//! (`target/.../release/`, guest image in `build/guest/`) and once installed (`/usr/local/bin`,
//! guest image in `/usr/local/share/kata-containers/`).

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const SYSTEM_CONFIG: &str = "/etc/kata-containers/configuration.toml";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{what} not found (looked in: {looked}); set it in the configuration file")]
    NotFound { what: &'static str, looked: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub hypervisor: HypervisorSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub shim: ShimSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub runtime: RuntimeSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorSection {
    #[serde(default)]
    pub qemu: Qemu,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Qemu {
    pub path: Option<PathBuf>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub machine_type: String,
    pub kernel_params: String,
    pub default_vcpus: u32,
    pub default_memory: u32,
    /// Most vCPUs `update` may hot-plug up to; 0: the host's CPU count.
    pub default_maxvcpus: u32,
    /// DIMM slots for memory hot-plug on `update`; 0 turns memory hot-plug off.
    pub memory_slots: u32,
    /// Most memory (MiB) the VM may grow to; 0: the host's physical memory.
    pub default_maxmemory: u32,
    /// "virtio-9p" or "virtio-fs".
    pub shared_fs: String,
    pub msize_9p: u32,
    pub virtio_fs_daemon: PathBuf,
    pub virtio_fs_cache: String,
    /// "auto", "kvm" or "tcg".
    pub accelerator: String,
    pub enable_debug: bool,
    /// How block devices reach the guest: "virtio-blk" (the only driver so far).
    pub block_device_driver: String,
    /// Share a rootfs that is a block device's mount as files instead of hot-plugging the
    /// device (Kata 1.x's key).
    pub disable_block_device_use: bool,
}

impl Default for Qemu {
    fn default() -> Self {
        Qemu {
            path: None,
            kernel: None,
            initrd: None,
            machine_type: "q35".into(),
            kernel_params: String::new(),
            default_vcpus: 1,
            default_memory: 256,
            default_maxvcpus: 0,
            memory_slots: 10,
            default_maxmemory: 0,
            shared_fs: "virtio-9p".into(),
            msize_9p: 512000,
            virtio_fs_daemon: "/usr/lib/qemu/virtiofsd".into(),
            virtio_fs_cache: "auto".into(),
            accelerator: "auto".into(),
            enable_debug: false,
            block_device_driver: "virtio-blk".into(),
            disable_block_device_use: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    #[serde(default)]
    pub kata: Component,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimSection {
    #[serde(default)]
    pub kata: Component,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Component {
    pub path: Option<PathBuf>,
    pub enable_debug: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    #[serde(default)]
    pub kata: AgentKata,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentKata {
    /// Budget for the agent's first Health.Check answer after QEMU starts (seconds).
    pub dial_timeout: u64,
    /// Deadline of every ordinary agent call (seconds).
    pub request_timeout: u64,
    pub enable_debug: bool,
}

impl Default for AgentKata {
    fn default() -> Self {
        AgentKata {
            dial_timeout: 30,
            request_timeout: 30,
            enable_debug: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    pub enable_debug: bool,
    /// Seconds to wait for QEMU to quit before killing it.
    pub sandbox_stop_timeout: u64,
    /// Folder of the VMs' sockets and logs.
    pub vm_dir: PathBuf,
    /// Folder of the sandboxes' shared folders.
    pub shared_dir: PathBuf,
    /// How the pod's interfaces reach the VM: `tcfilter` (default), `macvtap`, `bridged` or
    /// `none` (Kata 1.x's names).
    pub internetworking_model: String,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            enable_debug: false,
            sandbox_stop_timeout: 5,
            vm_dir: "/run/vc/vm".into(),
            shared_dir: "/run/kata-containers/shared/sandboxes".into(),
            internetworking_model: "tcfilter".into(),
        }
    }
}

impl Config {
    /// `explicit` (from `--kata-config`), else the system file if present, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(SYSTEM_CONFIG).exists() => PathBuf::from(SYSTEM_CONFIG),
            None => return Ok(Config::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            reason: e.to_string().replace('\n', " "),
        })
    }

    pub fn qemu_path(&self) -> Result<PathBuf, Error> {
        resolve(
            "qemu",
            self.hypervisor.qemu.path.as_deref(),
            &[PathBuf::from("/usr/bin/qemu-system-x86_64")],
        )
    }

    pub fn kernel_path(&self) -> Result<PathBuf, Error> {
        resolve(
            "guest kernel",
            self.hypervisor.qemu.kernel.as_deref(),
            &guest_candidates("vmlinux"),
        )
    }

    pub fn initrd_path(&self) -> Result<PathBuf, Error> {
        resolve(
            "guest initrd",
            self.hypervisor.qemu.initrd.as_deref(),
            &guest_candidates("initrd.img"),
        )
    }

    pub fn proxy_path(&self) -> Result<PathBuf, Error> {
        resolve(
            "kata-proxy",
            self.proxy.kata.path.as_deref(),
            &sibling_candidates("kata-proxy"),
        )
    }

    pub fn shim_path(&self) -> Result<PathBuf, Error> {
        resolve(
            "kata-shim",
            self.shim.kata.path.as_deref(),
            &sibling_candidates("kata-shim"),
        )
    }
}

fn resolve(
    what: &'static str,
    configured: Option<&Path>,
    candidates: &[PathBuf],
) -> Result<PathBuf, Error> {
    if let Some(p) = configured {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::NotFound {
                what,
                looked: p.display().to_string(),
            })
        };
    }
    candidates
        .iter()
        .find(|c| c.exists())
        .cloned()
        .ok_or_else(|| Error::NotFound {
            what,
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Binaries installed or built together sit in one folder.
fn sibling_candidates(name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = exe_dir().map(|d| d.join(name)).into_iter().collect();
    v.push(PathBuf::from("/usr/local/bin").join(name));
    v
}

/// `<prefix>/share/kata-containers/` once installed; `build/guest/` of the source tree that
/// holds the executable (`target/<triple>/release/` is 3 levels down, `target/release/` 2).
fn guest_candidates(file: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = exe_dir() {
        v.push(dir.join("../share/kata-containers").join(file));
        for up in dir.ancestors().skip(1).take(4) {
            v.push(up.join("build/guest").join(file));
        }
    }
    v.push(PathBuf::from("/usr/local/share/kata-containers").join(file));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kata_names_and_refuses_unknown_keys() {
        let c = Config::parse(
            "[hypervisor.qemu]\ndefault_memory = 512\nshared_fs = \"virtio-fs\"\n[agent.kata]\ndial_timeout = 5\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.hypervisor.qemu.default_memory, 512);
        assert_eq!(c.hypervisor.qemu.default_vcpus, 1);
        assert_eq!(c.agent.kata.dial_timeout, 5);
        let e = Config::parse("[hypervisor.qemu]\nbogus = 1\n", Path::new("x.toml")).unwrap_err();
        assert!(
            e.to_string().contains("bogus") && e.to_string().contains("x.toml"),
            "{e}"
        );
    }

    #[test]
    fn configured_path_must_exist() {
        let mut c = Config::default();
        c.hypervisor.qemu.kernel = Some("/nonexistent/vmlinux".into());
        assert!(c.kernel_path().is_err());
    }
}

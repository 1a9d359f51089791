//! The runtime's configuration (TOML, Kata 1.x section and key names). Every path has a default
//! found relative to the running executable, so binaries work straight from the build tree
//! (`target/.../release/`, guest image in `build/guest/`) and once installed (`/usr/local/bin`,
//! guest image in `/usr/local/share/kata-containers/`).
//!
//! The file is looked up as Kata 1.x does: `--kata-config`, else [`SYSTEM_CONFIG`] (the
//! administrator's), else the default file installed with the runtime
//! ([`default_file_candidates`]), else the built-in defaults, which equal that installed file
//! (`config/configuration.toml` in the source tree).

mod annotations;
mod error;
mod schema;
mod validate;

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use annotations::{allowed_annotations, ANNOTATION_PREFIX};
pub use error::Error;

pub const SYSTEM_CONFIG: &str = "/etc/kata-containers/configuration.toml";

/// Where `make install` puts the default file, under its prefix.
const DEFAULT_FILE_UNDER_PREFIX: &str = "share/defaults/kata-containers/configuration.toml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this configuration was read from by [`Config::load`]; `None` for the built-in
    /// defaults (and for [`Config::parse`], which has no say in which file is in use).
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
    #[serde(default)]
    pub factory: FactorySection,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HypervisorSection {
    #[serde(default)]
    pub qemu: Qemu,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Size (MiB) of QEMU's translation cache under TCG (`-accel tcg,thread=single,tb-size=`);
    /// 0: QEMU's own default (multi-threaded TCG). Ignored under KVM. 16, measured here: each
    /// VM holds ~35 MiB less, but a warm-cache `run true` takes twice as long and the vCPUs
    /// share one host thread (QEMU 7.2 aborts on a vCPU hot-plug with a small cache split per
    /// vCPU), hence not the default.
    pub tcg_tb_size: u32,
    /// A virtio-balloon with free page reporting: memory the guest frees goes back to the
    /// host (Kata's `reclaim_guest_freed_memory`).
    pub reclaim_guest_freed_memory: bool,
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
            tcg_tb_size: 0,
            reclaim_guest_freed_memory: true,
            enable_debug: false,
            block_device_driver: "virtio-blk".into(),
            disable_block_device_use: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    #[serde(default)]
    pub kata: Component,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimSection {
    #[serde(default)]
    pub kata: Component,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Component {
    pub path: Option<PathBuf>,
    pub enable_debug: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    #[serde(default)]
    pub kata: AgentKata,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// A physical PCI NIC in the pod's namespace is unbound from its host driver and passed to
    /// the VM with VFIO. Off: such a pod is refused (the host keeps its NIC).
    pub physical_nic_passthrough: bool,
    /// A privileged container's host block devices (every disk of the host, its system disk
    /// among them, as containerd, Docker and podman list them) are hot-plugged into its VM.
    /// Off: they stay with the host and the container sees the VM's devices.
    pub privileged_host_devices: bool,
}

/// Kata 1.x's VM factory: a daemon (`kata-runtime factory init`) that keeps pre-booted VMs
/// for new sandboxes, optionally started from a saved template VM.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactorySection {
    /// How many booted VMs the factory daemon keeps ready (0: no cache; `create` boots).
    pub vm_cache_number: u32,
    /// The factory daemon's socket. Empty: `<runtime.vm_dir>/.factory/cache.sock`.
    pub vm_cache_endpoint: PathBuf,
    /// Boot the cached VMs from a template VM (saved state and copy-on-write memory) rather
    /// than booting each. Needs shared_fs = "virtio-9p".
    pub enable_template: bool,
    /// Where the template's memory and device state are kept (a tmpfs folder is best).
    /// Empty: `<runtime.vm_dir>/.factory/template`.
    pub template_path: PathBuf,
}

impl Config {
    /// The factory daemon's working folder (its socket, cached VMs, template by default).
    pub fn factory_dir(&self) -> PathBuf {
        self.runtime.vm_dir.join(".factory")
    }

    /// The shim v2's records, one folder per containerd namespace.
    pub fn shim_v2_dir(&self) -> PathBuf {
        self.runtime.vm_dir.join(".shim-v2")
    }

    pub fn factory_endpoint(&self) -> PathBuf {
        match self.factory.vm_cache_endpoint.as_os_str().is_empty() {
            true => self.factory_dir().join("cache.sock"),
            false => self.factory.vm_cache_endpoint.clone(),
        }
    }

    pub fn factory_template_path(&self) -> PathBuf {
        match self.factory.template_path.as_os_str().is_empty() {
            true => self.factory_dir().join("template"),
            false => self.factory.template_path.clone(),
        }
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            enable_debug: false,
            sandbox_stop_timeout: 5,
            vm_dir: "/run/vc/vm".into(),
            shared_dir: "/run/kata-containers/shared/sandboxes".into(),
            internetworking_model: "tcfilter".into(),
            physical_nic_passthrough: false,
            privileged_host_devices: false,
        }
    }
}

impl Config {
    /// `explicit` (from `--kata-config`), else [`SYSTEM_CONFIG`] if present, else the first
    /// installed default file present ([`default_file_candidates`]), else the built-in defaults.
    /// [`Config::source`] says which file was used.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let candidates: Vec<PathBuf> = std::iter::once(PathBuf::from(SYSTEM_CONFIG))
                    .chain(default_file_candidates())
                    .collect();
                match candidates.iter().find(|p| p.exists()) {
                    Some(p) => p.clone(),
                    None => {
                        log::info!(
                            "no configuration file (looked in: {}); using built-in defaults",
                            join_paths(&candidates)
                        );
                        return Ok(Config::default());
                    }
                }
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Self::parse(&text, &path)?;
        log::info!("configuration file {}", path.display());
        config.source = Some(path);
        Ok(config)
    }

    /// Parses and validates `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|e| error::from_toml(path, text, &e))?;
        config.validate(path, text)?;
        Ok(config)
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
            looked: join_paths(candidates),
        })
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Where the default file installed with the runtime may be, most specific first:
/// `<prefix>/share/defaults/kata-containers/configuration.toml` for the prefix the executable is
/// installed in (`<prefix>/bin`), then the usual prefixes `/usr/local` and `/usr`.
pub fn default_file_candidates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = exe_dir()
        .and_then(|d| {
            d.parent()
                .map(|prefix| prefix.join(DEFAULT_FILE_UNDER_PREFIX))
        })
        .into_iter()
        .collect();
    for prefix in ["/usr/local", "/usr"] {
        let p = Path::new(prefix).join(DEFAULT_FILE_UNDER_PREFIX);
        // Installed in /usr/local/bin, the first candidate is already this one.
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v
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

    /// The default file shipped in the source tree and installed by `make install`.
    const DEFAULT_FILE: &str = include_str!("../../../config/configuration.toml");

    fn err(text: &str) -> String {
        match Config::parse(text, Path::new("/etc/x.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

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

    const QEMU_KEYS: &str = "path, kernel, initrd, machine_type, kernel_params, default_vcpus, \
        default_memory, default_maxvcpus, memory_slots, default_maxmemory, shared_fs, msize_9p, \
        virtio_fs_daemon, virtio_fs_cache, accelerator, tcg_tb_size, reclaim_guest_freed_memory, enable_debug, \
        block_device_driver, \
        disable_block_device_use";

    #[test]
    fn unknown_keys_name_line_section_and_known_keys() {
        assert_eq!(
            err("# c\n[hypervisor.qemu]\ndefault_vcpus = 1\nbogus_key = 1\n"),
            format!("configuration file /etc/x.toml line 4: [hypervisor.qemu] bogus_key: unknown key (expected one of: {QEMU_KEYS})")
        );
        // However the key is written: dotted, in an inline table, quoted.
        assert_eq!(
            err("\nhypervisor.qemu.bogus = 1\n"),
            format!("configuration file /etc/x.toml line 2: [hypervisor.qemu] bogus: unknown key (expected one of: {QEMU_KEYS})")
        );
        assert_eq!(
            err("[hypervisor]\nqemu = { bogus = 1 }\n"),
            format!("configuration file /etc/x.toml line 2: [hypervisor.qemu] bogus: unknown key (expected one of: {QEMU_KEYS})")
        );
        assert_eq!(
            err("[runtime]\n\"a\\nb\" = 1\n"),
            "configuration file /etc/x.toml line 2: [runtime] \"a\\nb\": unknown key (expected one of: enable_debug, sandbox_stop_timeout, vm_dir, shared_dir, internetworking_model, physical_nic_passthrough, privileged_host_devices)"
        );
        // Unknown sections.
        assert_eq!(
            err("[hypervisor.firecracker]\npath = \"x\"\n"),
            "configuration file /etc/x.toml line 1: [hypervisor] firecracker: unknown key (expected one of: qemu)"
        );
        assert_eq!(
            err("[proxy.kata]\n[shim.kata]\nenable_debug = true\n[image]\n"),
            "configuration file /etc/x.toml line 4: image: unknown key (expected one of: hypervisor, proxy, shim, agent, runtime, factory)"
        );
    }

    #[test]
    fn wrong_types_name_line_key_and_expected_type() {
        assert_eq!(
            err("[hypervisor.qemu]\ndefault_memory = \"lots\"\n"),
            "configuration file /etc/x.toml line 2: [hypervisor.qemu] default_memory: invalid type: string \"lots\", expected an integer from 0 to 4294967295"
        );
        assert_eq!(
            err("[agent.kata]\ndial_timeout = -1\n"),
            "configuration file /etc/x.toml line 2: [agent.kata] dial_timeout: invalid value: integer `-1`, expected a non-negative integer"
        );
        assert_eq!(
            err("[shim.kata]\nenable_debug = \"yes\"\n"),
            "configuration file /etc/x.toml line 2: [shim.kata] enable_debug: invalid type: string \"yes\", expected a boolean"
        );
        assert_eq!(
            err("[runtime]\nvm_dir = 1\n"),
            "configuration file /etc/x.toml line 2: [runtime] vm_dir: invalid type: integer `1`, expected a string (a path)"
        );
        assert_eq!(
            err("[hypervisor]\nqemu = 3\n"),
            "configuration file /etc/x.toml line 2: [hypervisor] qemu: invalid type: integer `3`, expected a table"
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(
            err("[hypervisor.qemu]\ndefault_memory = \n"),
            "configuration file /etc/x.toml line 2 column 18: invalid string; expected `\"`, `'`"
        );
        assert_eq!(
            err("[hypervisor.qemu\n"),
            "configuration file /etc/x.toml line 1 column 17: invalid table header; expected `.`, `]`"
        );
        assert_eq!(
            err("[hypervisor.qemu]\ndefault_memory = 1\ndefault_memory = 2\n"),
            "configuration file /etc/x.toml line 3 column 1: duplicate key `default_memory` in table `hypervisor.qemu`"
        );
    }

    #[test]
    fn errors_are_one_line() {
        for text in [
            "[hypervisor.qemu]\nbogus = 1\n",
            "[hypervisor.qemu]\ndefault_memory = \"lots\"\n",
            "[hypervisor.qemu]\ndefault_memory = \n",
            "a = \"x\n",
            "[runtime]\ninternetworking_model = \"a\\nb\"\n",
        ] {
            let e = err(text);
            assert!(
                !e.contains('\n') && e.starts_with("configuration file /etc/x.toml"),
                "{e}"
            );
        }
    }

    #[test]
    fn default_file_equals_builtin_defaults() {
        let parsed = Config::parse(DEFAULT_FILE, Path::new("configuration.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let (f, d) = (&parsed.hypervisor.qemu, &Qemu::default());
        // Field by field first, so a drift names the key.
        assert_eq!(f.path, d.path, "path");
        assert_eq!(f.kernel, d.kernel, "kernel");
        assert_eq!(f.initrd, d.initrd, "initrd");
        assert_eq!(f.machine_type, d.machine_type, "machine_type");
        assert_eq!(f.kernel_params, d.kernel_params, "kernel_params");
        assert_eq!(f.default_vcpus, d.default_vcpus, "default_vcpus");
        assert_eq!(f.default_memory, d.default_memory, "default_memory");
        assert_eq!(f.default_maxvcpus, d.default_maxvcpus, "default_maxvcpus");
        assert_eq!(f.memory_slots, d.memory_slots, "memory_slots");
        assert_eq!(
            f.default_maxmemory, d.default_maxmemory,
            "default_maxmemory"
        );
        assert_eq!(f.shared_fs, d.shared_fs, "shared_fs");
        assert_eq!(f.msize_9p, d.msize_9p, "msize_9p");
        assert_eq!(f.virtio_fs_daemon, d.virtio_fs_daemon, "virtio_fs_daemon");
        assert_eq!(f.virtio_fs_cache, d.virtio_fs_cache, "virtio_fs_cache");
        assert_eq!(f.accelerator, d.accelerator, "accelerator");
        assert_eq!(f.tcg_tb_size, d.tcg_tb_size, "tcg_tb_size");
        assert_eq!(
            f.reclaim_guest_freed_memory, d.reclaim_guest_freed_memory,
            "reclaim_guest_freed_memory"
        );
        assert_eq!(f.enable_debug, d.enable_debug, "enable_debug");
        assert_eq!(
            f.block_device_driver, d.block_device_driver,
            "block_device_driver"
        );
        assert_eq!(
            f.disable_block_device_use, d.disable_block_device_use,
            "disable_block_device_use"
        );
        let d = Config::default();
        for (name, f, d) in [
            ("proxy.kata", &parsed.proxy.kata, &d.proxy.kata),
            ("shim.kata", &parsed.shim.kata, &d.shim.kata),
        ] {
            assert_eq!(f.path, d.path, "{name} path");
            assert_eq!(f.enable_debug, d.enable_debug, "{name} enable_debug");
        }
        let (f, d) = (&parsed.agent.kata, &AgentKata::default());
        assert_eq!(f.dial_timeout, d.dial_timeout, "dial_timeout");
        assert_eq!(f.request_timeout, d.request_timeout, "request_timeout");
        assert_eq!(f.enable_debug, d.enable_debug, "agent enable_debug");
        let (f, d) = (&parsed.runtime, &RuntimeSection::default());
        assert_eq!(f.enable_debug, d.enable_debug, "runtime enable_debug");
        assert_eq!(
            f.sandbox_stop_timeout, d.sandbox_stop_timeout,
            "sandbox_stop_timeout"
        );
        assert_eq!(f.vm_dir, d.vm_dir, "vm_dir");
        assert_eq!(f.shared_dir, d.shared_dir, "shared_dir");
        assert_eq!(
            f.internetworking_model, d.internetworking_model,
            "internetworking_model"
        );
        // Then the whole, which also covers fields added later.
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn default_file_has_every_section_and_key() {
        assert_eq!(
            schema::section_keys(""),
            Some(&["hypervisor", "proxy", "shim", "agent", "runtime", "factory"][..]),
            "source is not a file key"
        );
        for section in schema::VALUE_SECTIONS {
            let header = format!("[{section}]");
            let body = DEFAULT_FILE
                .split_once(&format!("\n{header}\n"))
                .map(|(_, after)| after.split("\n[").next().unwrap_or_default())
                .unwrap_or_else(|| panic!("{header} missing"));
            let keys = schema::section_keys(section).unwrap_or_default();
            assert!(!keys.is_empty(), "{section}");
            for key in keys {
                // Set, or commented out for keys whose default is found at run time.
                let present = body.lines().any(|l| {
                    let l = l.trim_start_matches('#');
                    l.strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                });
                assert!(
                    present,
                    "{header} {key} missing from config/configuration.toml"
                );
            }
        }
    }

    #[test]
    fn load_records_the_file_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[runtime]\nsandbox_stop_timeout = 9\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.source.as_deref(), Some(path.as_path()));
        assert_eq!(c.runtime.sandbox_stop_timeout, 9);
        let missing = dir.path().join("none.toml");
        let e = Config::load(Some(&missing)).unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e:?}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn default_file_candidates_are_prefix_share_defaults() {
        let c = default_file_candidates();
        assert!(c.len() >= 2, "{c:?}");
        assert!(c
            .iter()
            .all(|p| p.ends_with("share/defaults/kata-containers/configuration.toml")));
        assert!(c.contains(&PathBuf::from(
            "/usr/local/share/defaults/kata-containers/configuration.toml"
        )));
        assert_eq!(
            c.last(),
            Some(&PathBuf::from(
                "/usr/share/defaults/kata-containers/configuration.toml"
            ))
        );
        // The installed prefix of the running executable comes first.
        let exe_prefix = exe_dir().and_then(|d| d.parent().map(Path::to_path_buf));
        assert!(exe_prefix.is_some_and(|p| c[0].starts_with(p)), "{c:?}");
    }
}

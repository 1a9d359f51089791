//! Assembling the guest image from a kernel (one built from source by
//! `scripts/build-guest-kernel.sh`, or Debian's generic kernel package) and the agent binary:
//! DIR/vmlinux, DIR/initrd.img and DIR/manifest.json.
//!
//! Everything written is a function of the inputs only (no timestamps, no paths, sorted
//! archive entries), so rebuilding from the same .deb and agent gives byte-identical files and
//! the manifest's hashes can be compared across machines.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::built::{BuiltKernel, BuiltKernelError};
use crate::cpio::{ArchiveBuilder, CpioError};
use crate::kernel::{self, KernelError};
use crate::modules::{self, KernelModules, ModuleError};

pub const VMLINUX_FILE: &str = "vmlinux";
pub const INITRD_FILE: &str = "initrd.img";
pub const MANIFEST_FILE: &str = "manifest.json";
/// In the initramfs: the module file names, one per line, in load order.
pub const MODULE_LIST_PATH: &str = "/etc/kata-modules";
/// In the initramfs: where the modules are (flat, by file name).
pub const MODULE_DIR: &str = "/lib/modules";
/// Bumped when the manifest's meaning changes (2: kernels built from source, config hashes).
pub const MANIFEST_FORMAT: u32 = 2;
/// Manifest `kernel_build` of a kernel built from source with the repository's fragments.
pub const KERNEL_BUILD_SOURCE: &str = "linux-source";
/// Manifest `kernel_build` of Debian's generic kernel package with its modules.
pub const KERNEL_BUILD_DEBIAN: &str = "debian-package";

/// Directories every guest needs before the agent has mounted anything.
const BASE_DIRS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/tmp",
    "/etc",
    "/lib",
    "/lib/modules",
    "/sbin",
    "/root",
    "/mnt",
];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {command} on {path}")]
    Spawn {
        command: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed on {path} ({status}): {stderr}")]
    Command {
        command: String,
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path}: package control data lacks the {field} field")]
    MissingField { path: PathBuf, field: &'static str },
    #[error("{path}: expected exactly one boot/vmlinuz-<release>, found {found:?}")]
    KernelCount { path: PathBuf, found: Vec<String> },
    #[error("{path}: no lib/modules/{release} in the package")]
    NoModules { path: PathBuf, release: String },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    BuiltKernel(#[from] BuiltKernelError),
    #[error("modules {modules:?} were asked for, but a kernel built from source has none (build them in)")]
    ModulesForBuiltKernel { modules: Vec<String> },
    #[error(transparent)]
    Modules(#[from] ModuleError),
    #[error("building the initramfs failed")]
    Cpio(#[from] CpioError),
    #[error("{path}: invalid manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where the guest kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelInput {
    /// A folder made by `scripts/build-guest-kernel.sh`: everything built in, no modules.
    Built(PathBuf),
    /// Debian's `linux-image-<abi>-amd64` package: its vmlinux and the modules the guest needs.
    DebianPackage(PathBuf),
}

impl KernelInput {
    pub fn path(&self) -> &Path {
        match self {
            KernelInput::Built(p) | KernelInput::DebianPackage(p) => p,
        }
    }
}

/// What `build` needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub kernel: KernelInput,
    pub agent: PathBuf,
    pub out_dir: PathBuf,
    /// Modules to include (plus their dependencies), in preferred load order; Debian's
    /// package only (a kernel built from source has them built in).
    pub modules: Vec<String>,
}

impl BuildOptions {
    pub fn new(kernel: KernelInput, agent: PathBuf, out_dir: PathBuf) -> Self {
        let modules = match kernel {
            KernelInput::Built(_) => Vec::new(),
            KernelInput::DebianPackage(_) => modules::DEFAULT_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        Self {
            kernel,
            agent,
            out_dir,
            modules,
        }
    }
}

/// DIR/manifest.json: what the image was built from, and hashes of what it contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// KERNEL_BUILD_SOURCE or KERNEL_BUILD_DEBIAN.
    pub kernel_build: String,
    /// The source package (linux-source-6.1) or the kernel package it came from.
    pub kernel_package: String,
    pub kernel_package_version: String,
    /// SHA-256 of Debian's kernel .deb (package builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_deb_sha256: Option<String>,
    /// The kernel cache key of scripts/build-guest-kernel.sh (source builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_build_key: Option<String>,
    /// SHA-256 of the kernel's .config.
    pub kernel_config_sha256: String,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    pub vmlinux_sha256: String,
    /// Whether QEMU can boot vmlinux directly (PVH entry note present).
    pub vmlinux_pvh: bool,
    pub initrd_sha256: String,
    pub initrd_size: u64,
    /// Module file names in load order, as in /etc/kata-modules.
    pub modules: Vec<String>,
    /// Requested modules compiled into the kernel, so not shipped.
    pub builtin_modules: Vec<String>,
    pub agent_sha256: String,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = fs::read(path).map_err(|source| ImageError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ImageError::Manifest {
            path: path.to_owned(),
            source,
        })
    }
}

/// The kernel part of an image, from either input.
struct PreparedKernel {
    build: &'static str,
    package: String,
    version: String,
    deb_sha256: Option<String>,
    build_key: Option<String>,
    config_sha256: String,
    release: String,
    vmlinux: Vec<u8>,
    has_pvh_note: bool,
    /// (file name, contents) in load order.
    module_files: Vec<(String, Vec<u8>)>,
    builtin_modules: Vec<String>,
}

/// Builds the whole image into `opts.out_dir` (created if needed) and returns its manifest.
pub fn build(opts: &BuildOptions) -> Result<Manifest, ImageError> {
    let kernel = match &opts.kernel {
        KernelInput::Built(dir) => {
            if !opts.modules.is_empty() {
                return Err(ImageError::ModulesForBuiltKernel {
                    modules: opts.modules.clone(),
                });
            }
            built_kernel(dir)?
        }
        KernelInput::DebianPackage(deb) => debian_kernel(deb, &opts.modules)?,
    };
    log::info!(
        "kernel {} ({} {}), {} modules",
        kernel.release,
        kernel.package,
        kernel.version,
        kernel.module_files.len()
    );

    let agent = read(&opts.agent)?;
    if !agent.starts_with(b"\x7fELF") {
        log::warn!(
            "{} is not an ELF binary; the guest cannot run it as /init",
            opts.agent.display()
        );
    }
    let agent_sha256 = hex_sha256(&agent);
    let module_names: Vec<String> = kernel.module_files.iter().map(|(f, _)| f.clone()).collect();
    let initrd = initramfs(agent, kernel.module_files)?.to_bytes()?;

    fs::create_dir_all(&opts.out_dir).map_err(|source| ImageError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    write_atomic(&opts.out_dir.join(VMLINUX_FILE), &kernel.vmlinux)?;
    write_atomic(&opts.out_dir.join(INITRD_FILE), &initrd)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        kernel_build: kernel.build.to_owned(),
        kernel_package: kernel.package,
        kernel_package_version: kernel.version,
        kernel_deb_sha256: kernel.deb_sha256,
        kernel_build_key: kernel.build_key,
        kernel_config_sha256: kernel.config_sha256,
        kernel_release: kernel.release,
        vmlinux_sha256: hex_sha256(&kernel.vmlinux),
        vmlinux_pvh: kernel.has_pvh_note,
        initrd_sha256: hex_sha256(&initrd),
        initrd_size: initrd.len() as u64,
        modules: module_names,
        builtin_modules: kernel.builtin_modules,
        agent_sha256,
    };
    let manifest_path = opts.out_dir.join(MANIFEST_FILE);
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|source| ImageError::Manifest {
        path: manifest_path.clone(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(&manifest_path, &json)?;
    Ok(manifest)
}

/// A kernel from scripts/build-guest-kernel.sh: checked, no modules, symbols stripped (QEMU
/// maps the whole file and loads its symbol table: ~5 MiB of host memory per VM for nothing).
fn built_kernel(dir: &Path) -> Result<PreparedKernel, ImageError> {
    let mut k = BuiltKernel::load(dir)?;
    // Best effort: an unstripped vmlinux boots the same, it only costs memory.
    match strip_symbols(&dir.join("vmlinux")) {
        Ok(stripped) => k.vmlinux = stripped,
        Err(e) => log::warn!("keeping the vmlinux's symbols: {e}"),
    }
    if !kernel::has_pvh_note(&k.vmlinux) {
        return Err(BuiltKernelError::NoPvh {
            path: dir.join("vmlinux"),
        }
        .into());
    }
    Ok(PreparedKernel {
        build: KERNEL_BUILD_SOURCE,
        package: k.package,
        version: k.version,
        deb_sha256: None,
        build_key: Some(k.key),
        config_sha256: hex_sha256(&k.config),
        release: k.release,
        has_pvh_note: true,
        vmlinux: k.vmlinux,
        module_files: Vec::new(),
        builtin_modules: Vec::new(),
    })
}

/// A private folder under the system's temporary one, removed when dropped.
fn scratch_dir() -> Result<tempfile::TempDir, ImageError> {
    tempfile::Builder::new()
        .prefix("kata-osbuilder.")
        .tempdir()
        .map_err(|source| ImageError::Write {
            path: std::env::temp_dir(),
            source,
        })
}

/// `objcopy --strip-all` of an ELF vmlinux (notes, PVH's among them, stay).
fn strip_symbols(vmlinux: &Path) -> Result<Vec<u8>, ImageError> {
    let tmp = scratch_dir()?;
    let out = tmp.path().join("vmlinux");
    run(
        Command::new("objcopy")
            .arg("--strip-all")
            .arg(vmlinux)
            .arg(&out),
        "objcopy --strip-all",
        vmlinux,
    )?;
    read(&out)
}

/// Debian's generic kernel package: its vmlinux out of the bzImage, and the wanted modules
/// with their dependencies in load order.
fn debian_kernel(deb: &Path, wanted: &[String]) -> Result<PreparedKernel, ImageError> {
    let deb = &deb.to_owned();
    let (package, version) = deb_package_version(deb)?;
    log::info!("kernel package {package} {version}");

    let tmp = scratch_dir()?;
    let root = tmp.path();
    // Unpacking (~400 MB of modules) dominates the build; hashing the ~70 MB .deb meanwhile on
    // the other core hides the hash's cost.
    let deb_sha256 = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| sha256_file(deb));
        let extracted = run(
            Command::new("dpkg-deb").arg("-x").arg(deb).arg(root),
            "dpkg-deb -x",
            deb,
        );
        let hash = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        extracted.and(hash)
    })?;

    let release = kernel_release(root, deb)?;
    log::info!("kernel release {release}");
    // Debian 12 ships /lib/modules; merged-/usr packages (Debian 13) ship /usr/lib/modules.
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|p| p.is_dir())
        .ok_or_else(|| ImageError::NoModules {
            path: deb.clone(),
            release: release.clone(),
        })?;

    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    let bzimage = read(&vmlinuz)?;
    let vmlinux = kernel::extract_vmlinux(&vmlinuz, &bzimage)?;
    log::info!(
        "vmlinux: {} bytes from a {} stream at {:#x} ({:?})",
        vmlinux.elf.len(),
        vmlinux.format.name(),
        vmlinux.offset,
        vmlinux.located
    );
    if !vmlinux.has_pvh_note {
        log::warn!("vmlinux has no PVH entry note: QEMU cannot boot it directly with -kernel");
    }

    let config = root.join("boot").join(format!("config-{release}"));
    let config = config.is_file().then_some(config);
    let config_sha256 = match &config {
        Some(path) => sha256_file(path)?,
        None => String::new(),
    };
    let mut kmods = KernelModules::scan(&modules_dir, &release, config.as_deref())?;
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let plan = modules::resolve(&wanted, &mut kmods)?;
    let mut module_files = Vec::with_capacity(plan.order.len());
    for name in &plan.order {
        let file_name = kmods.file_name(name).ok_or_else(|| ModuleError::Missing {
            name: name.clone(),
            needed_by: "the load plan".to_owned(),
            dir: modules_dir.clone(),
        })?;
        module_files.push((file_name, kmods.read(name)?));
    }
    log::info!(
        "modules in load order: {}",
        module_files
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(PreparedKernel {
        build: KERNEL_BUILD_DEBIAN,
        package,
        version,
        deb_sha256: Some(deb_sha256),
        build_key: None,
        config_sha256,
        release,
        has_pvh_note: vmlinux.has_pvh_note,
        vmlinux: vmlinux.elf,
        module_files,
        builtin_modules: plan.builtin,
    })
}

/// The initramfs layout: /init is the agent, modules (if any) flat in /lib/modules with their
/// load order in /etc/kata-modules, and /dev/console so the kernel can give /init a console before
/// devtmpfs is mounted.
pub fn initramfs(
    agent: Vec<u8>,
    modules: Vec<(String, Vec<u8>)>,
) -> Result<ArchiveBuilder, CpioError> {
    let mut archive = ArchiveBuilder::new();
    for dir in BASE_DIRS {
        archive.add_dir(dir, 0o755)?;
    }
    archive.add_char_dev("/dev/console", 0o600, 5, 1)?;
    archive.add_file("/init", 0o755, agent)?;
    // A kernel with everything built in gets no module list: the agent then loads nothing.
    if modules.is_empty() {
        return Ok(archive);
    }
    let mut list = String::new();
    for (file_name, data) in modules {
        list.push_str(&file_name);
        list.push('\n');
        archive.add_file(&format!("{MODULE_DIR}/{file_name}"), 0o644, data)?;
    }
    archive.add_file(MODULE_LIST_PATH, 0o644, list.into_bytes())?;
    Ok(archive)
}

/// Package and Version from the .deb's control data.
fn deb_package_version(deb: &Path) -> Result<(String, String), ImageError> {
    let out = run(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .args(["Package", "Version"]),
        "dpkg-deb --field",
        deb,
    )?;
    let text = String::from_utf8_lossy(&out);
    let field = |name: &'static str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or(ImageError::MissingField {
                path: deb.to_owned(),
                field: name,
            })
    };
    Ok((field("Package")?, field("Version")?))
}

/// The release string from the one boot/vmlinuz-<release> in the extracted package.
fn kernel_release(root: &Path, deb: &Path) -> Result<String, ImageError> {
    let boot = root.join("boot");
    let mut found: Vec<String> = match fs::read_dir(&boot) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("vmlinuz-")
                    .map(str::to_owned)
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(ImageError::Read { path: boot, source }),
    };
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ImageError::KernelCount {
            path: deb.to_owned(),
            found,
        }),
    }
}

/// Runs a command and returns its stdout; stderr goes into the error.
fn run(cmd: &mut Command, name: &str, path: &Path) -> Result<Vec<u8>, ImageError> {
    log::debug!("running {cmd:?}");
    let out = cmd.output().map_err(|source| ImageError::Spawn {
        command: name.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(ImageError::Command {
            command: name.to_owned(),
            path: path.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes via a temporary name and a rename, so a reader never sees a half-written image.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let err = |source| ImageError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

pub fn hex_sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Streams the file through the hash: the kernel .deb is ~70 MB.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let err = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cpio::{parse_newc, EntryKind};
    use crate::testutil;

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn initramfs_layout() {
        let modules = vec![
            ("virtio_ring.ko".to_string(), b"ring".to_vec()),
            ("virtio-rng.ko".to_string(), b"rng".to_vec()),
        ];
        let bytes = initramfs(b"\x7fELFagent".to_vec(), modules)
            .unwrap()
            .to_bytes()
            .unwrap();
        let entries = parse_newc(&bytes).unwrap();
        let find = |p: &str| entries.iter().find(|e| e.entry.path == p).unwrap();
        assert_eq!(find("init").mode, 0o100755);
        assert_eq!(find("dev/console").mode, 0o020600);
        assert_eq!(
            (
                find("dev/console").rdev_major,
                find("dev/console").rdev_minor
            ),
            (5, 1)
        );
        for d in BASE_DIRS {
            assert_eq!(find(&d[1..]).mode, 0o040755, "{d}");
        }
        assert_eq!(find("lib/modules/virtio-rng.ko").mode, 0o100644);
        assert_eq!(
            find("etc/kata-modules").entry.kind,
            EntryKind::File(b"virtio_ring.ko\nvirtio-rng.ko\n".to_vec())
        );
        assert_eq!(entries.len(), BASE_DIRS.len() + 1 + 1 + 2 + 1);
    }

    /// End to end on a synthetic kernel package; needs dpkg-deb (always there on Debian).
    #[test]
    fn build_is_deterministic() {
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            eprintln!("dpkg-deb not installed; skipping");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let deb = testutil::fake_kernel_deb(tmp.path(), "9.9.9-1-amd64");
        let agent = tmp.path().join("agent");
        fs::write(&agent, b"\x7fELF not really an agent").unwrap();
        let wanted = ["virtio-rng", "9p", "overlay"];

        let mut results = Vec::new();
        for out in ["out1", "out2"] {
            let mut opts = BuildOptions::new(
                KernelInput::DebianPackage(deb.clone()),
                agent.clone(),
                tmp.path().join(out),
            );
            opts.modules = wanted.iter().map(|s| s.to_string()).collect();
            let manifest = build(&opts).unwrap();
            let initrd = fs::read(opts.out_dir.join(INITRD_FILE)).unwrap();
            let json = fs::read(opts.out_dir.join(MANIFEST_FILE)).unwrap();
            let vmlinux = fs::read(opts.out_dir.join(VMLINUX_FILE)).unwrap();
            assert_eq!(
                Manifest::load(&opts.out_dir.join(MANIFEST_FILE)).unwrap(),
                manifest
            );
            results.push((initrd, json, vmlinux, manifest));
        }
        assert_eq!(results[0].0, results[1].0, "initrd differs");
        assert_eq!(results[0].1, results[1].1, "manifest differs");
        let (initrd, _, vmlinux, manifest) = &results[0];
        assert_eq!(vmlinux, &testutil::fake_elf(true));
        assert_eq!(manifest.kernel_package, "linux-image-9.9.9-1-amd64");
        assert_eq!(manifest.kernel_package_version, "9.9.9-1");
        assert_eq!(manifest.kernel_release, "9.9.9-1-amd64");
        assert_eq!(manifest.kernel_deb_sha256, Some(sha256_file(&deb).unwrap()));
        assert_eq!(manifest.kernel_build, KERNEL_BUILD_DEBIAN);
        assert_eq!(manifest.initrd_sha256, hex_sha256(initrd));
        assert!(manifest.vmlinux_pvh);
        assert_eq!(
            manifest.modules,
            [
                "virtio.ko",
                "virtio_ring.ko",
                "virtio-rng.ko",
                "9pnet.ko",
                "netfs.ko",
                "fscache.ko",
                "9p.ko"
            ]
        );
        assert_eq!(manifest.builtin_modules, ["overlay"]);
        let entries = parse_newc(initrd).unwrap();
        let list = entries
            .iter()
            .find(|e| e.entry.path == "etc/kata-modules")
            .unwrap();
        let expected: String = manifest.modules.iter().map(|m| format!("{m}\n")).collect();
        assert_eq!(list.entry.kind, EntryKind::File(expected.into_bytes()));
    }

    #[test]
    fn bad_deb_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let deb = tmp.path().join("broken.deb");
        fs::write(&deb, b"not a deb").unwrap();
        let opts = BuildOptions::new(
            KernelInput::DebianPackage(deb.clone()),
            deb.clone(),
            tmp.path().join("out"),
        );
        let err = build(&opts).unwrap_err();
        assert!(err.to_string().contains("broken.deb"), "{err}");
        assert!(!tmp.path().join("out").exists());
    }

    /// A kernel built from source: the image is the agent alone, no module list.
    #[test]
    fn built_kernel_image_has_no_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let kdir = tmp.path().join("kernel");
        fs::create_dir(&kdir).unwrap();
        let config: String = crate::built::REQUIRED_OPTIONS
            .iter()
            .map(|o| format!("{o}=y\n"))
            .collect();
        fs::write(kdir.join("vmlinux"), testutil::fake_elf(true)).unwrap();
        fs::write(kdir.join("config"), &config).unwrap();
        fs::write(kdir.join("release"), "6.1.192-kata-rs\n").unwrap();
        fs::write(kdir.join("source"), "linux-source-6.1 6.1.192-3\n").unwrap();
        fs::write(kdir.join("key"), "0123456789abcdef\n").unwrap();
        let agent = tmp.path().join("agent");
        fs::write(&agent, b"\x7fELF agent").unwrap();

        let mut opts = BuildOptions::new(
            KernelInput::Built(kdir.clone()),
            agent.clone(),
            tmp.path().join("out"),
        );
        let manifest = build(&opts).unwrap();
        assert_eq!(manifest.kernel_build, KERNEL_BUILD_SOURCE);
        assert_eq!(manifest.kernel_release, "6.1.192-kata-rs");
        assert_eq!(manifest.kernel_package, "linux-source-6.1");
        assert_eq!(
            manifest.kernel_build_key.as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(manifest.kernel_config_sha256, hex_sha256(config.as_bytes()));
        assert_eq!(manifest.kernel_deb_sha256, None);
        assert!(manifest.modules.is_empty());
        let initrd = fs::read(opts.out_dir.join(INITRD_FILE)).unwrap();
        let entries = parse_newc(&initrd).unwrap();
        assert!(entries.iter().all(|e| e.entry.path != "etc/kata-modules"));
        assert_eq!(entries.len(), BASE_DIRS.len() + 2);

        opts.modules = vec!["ext4".into()];
        assert!(matches!(
            build(&opts),
            Err(ImageError::ModulesForBuiltKernel { .. })
        ));
    }
}

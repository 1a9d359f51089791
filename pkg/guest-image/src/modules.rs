//! Kernel module discovery and load ordering.
//!
//! Debian's kernel package ships no modules.dep (depmod runs at install time), so the
//! dependencies are read from each module's `.modinfo` ELF section (`depends=a,b`), the same
//! data depmod would use, and ordered here so every module comes after what it needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use crate::compress;

/// Modules the guest needs, in the order the agent should load them when they are independent:
/// virtio transport, console (agent channel), block, net, 9p and virtio-fs shared filesystems,
/// overlay for container rootfs, virtio-rng so early getrandom does not stall, and ext4 for
/// block-device rootfs.
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_console",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "netfs",
    "fscache",
    "9pnet",
    "9p",
    "9pnet_virtio",
    "fuse",
    "virtiofs",
    "overlay",
    "virtio-rng",
    // A hot-plugged block device's filesystem (a devicemapper/loop rootfs); ext4 checksums
    // its metadata with crc32c.
    "crc32c_generic",
    "ext4",
];

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable kernel module: {reason}")]
    BadElf { path: PathBuf, reason: String },
    #[error("{path}: cannot decompress module")]
    Decompress {
        path: PathBuf,
        #[source]
        source: compress::CompressError,
    },
    #[error("module {name:?} (needed by {needed_by}) has no .ko under {dir} and is not built into the kernel")]
    Missing {
        name: String,
        needed_by: String,
        dir: PathBuf,
    },
    #[error("module dependency cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("{path} was built for {vermagic:?}, not kernel {release}")]
    WrongKernel {
        path: PathBuf,
        vermagic: String,
        release: String,
    },
}

/// Module names use '-' and '_' interchangeably; the kernel itself compares with '_'.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The fields of `.modinfo` this crate cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, present in modules built by 5.x+ kernels.
    pub name: Option<String>,
    /// `depends=`, normalised, in the order listed.
    pub depends: Vec<String>,
    /// `vermagic=`, starts with the kernel release the module was built for.
    pub vermagic: Option<String>,
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo_section(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for record in section.split(|b| *b == 0) {
        // Records are ASCII in practice; lossy conversion keeps odd descriptions from failing
        // the whole build.
        let record = String::from_utf8_lossy(record);
        let Some((key, value)) = record.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(normalize_name(value)),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize_name),
            ),
            "vermagic" => info.vermagic = Some(value.to_owned()),
            _ => {}
        }
    }
    info
}

/// Finds the `.modinfo` section of a 64-bit little-endian ELF relocatable and parses it.
/// `path` is only used in errors.
pub fn parse_modinfo(path: &Path, elf: &[u8]) -> Result<ModInfo, ModuleError> {
    let bad = |reason: &str| ModuleError::BadElf {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if !elf.starts_with(b"\x7fELF") {
        return Err(bad("no ELF magic"));
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian: the only layout of x86_64 modules.
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(bad("not a 64-bit little-endian ELF"));
    }
    let shoff = read_u64(elf, 0x28).ok_or_else(|| bad("truncated ELF header"))?;
    let shentsize = read_u16(elf, 0x3A).ok_or_else(|| bad("truncated ELF header"))? as usize;
    let shnum = read_u16(elf, 0x3C).ok_or_else(|| bad("truncated ELF header"))? as usize;
    let shstrndx = read_u16(elf, 0x3E).ok_or_else(|| bad("truncated ELF header"))? as usize;
    if shentsize < 0x40 {
        return Err(bad("section header entries too small"));
    }
    let section = |index: usize| -> Option<(u32, &[u8])> {
        let base = usize::try_from(shoff)
            .ok()?
            .checked_add(index.checked_mul(shentsize)?)?;
        let name = read_u32(elf, base)?;
        let offset = usize::try_from(read_u64(elf, base + 0x18)?).ok()?;
        let size = usize::try_from(read_u64(elf, base + 0x20)?).ok()?;
        Some((name, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, shstrtab) = section(shstrndx).ok_or_else(|| bad("bad section name table"))?;
    for index in 0..shnum {
        let (name_off, data) = section(index).ok_or_else(|| bad("section out of bounds"))?;
        let name = shstrtab
            .get(name_off as usize..)
            .and_then(|s| s.split(|b| *b == 0).next())
            .ok_or_else(|| bad("bad section name offset"))?;
        if name == b".modinfo" {
            return Ok(parse_modinfo_section(data));
        }
    }
    Err(bad("no .modinfo section"))
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What the resolver needs to know about a kernel's modules; a trait so tests can use a fake set.
pub trait ModuleProvider {
    /// Dependencies of module `name` (normalised), or `None` when no .ko exists for it.
    fn depends(&mut self, name: &str) -> Result<Option<Vec<String>>, ModuleError>;
    /// Whether `name` is compiled into the kernel; the reason is logged.
    fn builtin(&self, name: &str) -> Option<String>;
    /// Where modules were looked for, for the error message.
    fn location(&self) -> PathBuf;
}

/// The result of resolving: modules to load in order, and wanted modules that are built in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Normalised names, every module after all of its dependencies.
    pub order: Vec<String>,
    /// Normalised names of requested modules that are compiled into the kernel.
    pub builtin: Vec<String>,
}

/// Computes the load order of `wanted` plus everything they depend on.
///
/// The order is the wanted list's order, with each module's missing dependencies inserted just
/// before it (depth-first, dependencies in alphabetical order), so it is stable across runs and
/// only moves a module when a dependency forces it to.
pub fn resolve<P: ModuleProvider>(
    wanted: &[&str],
    provider: &mut P,
) -> Result<LoadPlan, ModuleError> {
    #[derive(PartialEq)]
    enum State {
        Visiting,
        Done,
    }
    let mut state: HashMap<String, State> = HashMap::new();
    let mut plan = LoadPlan::default();
    // Explicit stack frames instead of recursion: (module, sorted deps, next dep index).
    for root in wanted {
        let root = normalize_name(root);
        if state.contains_key(&root) {
            continue;
        }
        let mut stack: Vec<(String, Vec<String>, usize)> = Vec::new();
        match enter(&root, "the wanted list", provider, &mut plan)? {
            Some(deps) => {
                state.insert(root.clone(), State::Visiting);
                stack.push((root, deps, 0));
            }
            None => {
                state.insert(root, State::Done);
            }
        }
        while let Some((name, deps, next)) = stack.last_mut() {
            let Some(dep) = deps.get(*next).cloned() else {
                let name = name.clone();
                stack.pop();
                state.insert(name.clone(), State::Done);
                plan.order.push(name);
                continue;
            };
            *next += 1;
            let parent = name.clone();
            match state.get(&dep) {
                Some(State::Done) => {}
                Some(State::Visiting) => {
                    let start = stack.iter().position(|(n, _, _)| *n == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|(n, _, _)| n.clone()).collect();
                    cycle.push(dep);
                    return Err(ModuleError::Cycle { cycle });
                }
                None => match enter(&dep, &parent, provider, &mut plan)? {
                    Some(deps) => {
                        state.insert(dep.clone(), State::Visiting);
                        stack.push((dep, deps, 0));
                    }
                    None => {
                        state.insert(dep, State::Done);
                    }
                },
            }
        }
    }
    Ok(plan)
}

/// Looks a module up: its sorted dependencies if it is a .ko, `None` if built in, error if
/// neither.
fn enter<P: ModuleProvider>(
    name: &str,
    needed_by: &str,
    provider: &mut P,
    plan: &mut LoadPlan,
) -> Result<Option<Vec<String>>, ModuleError> {
    if let Some(mut deps) = provider.depends(name)? {
        deps.sort();
        deps.dedup();
        return Ok(Some(deps));
    }
    if let Some(reason) = provider.builtin(name) {
        log::info!("module {name} has no .ko: built into the kernel ({reason}), skipped");
        plan.builtin.push(name.to_owned());
        return Ok(None);
    }
    Err(ModuleError::Missing {
        name: name.to_owned(),
        needed_by: needed_by.to_owned(),
        dir: provider.location(),
    })
}

/// The modules of one extracted kernel: `lib/modules/<release>` plus the kernel config.
pub struct KernelModules {
    dir: PathBuf,
    release: String,
    /// Normalised module name → path of its .ko (possibly compressed).
    index: BTreeMap<String, PathBuf>,
    /// Normalised names listed in modules.builtin.
    builtin_list: BTreeSet<String>,
    /// `CONFIG_X=y` symbols from the kernel config, without the prefix.
    config_y: BTreeSet<String>,
    info_cache: HashMap<String, ModInfo>,
}

impl KernelModules {
    /// Indexes every .ko under `modules_dir` (= lib/modules/<release>). `config` is
    /// boot/config-<release>, if the package has one.
    pub fn scan(
        modules_dir: &Path,
        release: &str,
        config: Option<&Path>,
    ) -> Result<Self, ModuleError> {
        let mut index: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut files = Vec::new();
        collect_ko_files(modules_dir, &mut files)?;
        // Sorted so a (rare) duplicate name always resolves to the same file.
        files.sort();
        for path in files {
            let Some(stem) = ko_stem(&path) else { continue };
            let name = normalize_name(stem);
            if let Some(first) = index.get(&name) {
                log::warn!(
                    "module {name} exists twice: using {}, ignoring {}",
                    first.display(),
                    path.display()
                );
                continue;
            }
            index.insert(name, path);
        }
        let builtin_list = match fs::read_to_string(modules_dir.join("modules.builtin")) {
            Ok(text) => text
                .lines()
                .filter_map(|l| ko_stem(Path::new(l.trim())).map(normalize_name))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(ModuleError::Io {
                    path: modules_dir.join("modules.builtin"),
                    source,
                })
            }
        };
        let config_y = match config {
            Some(path) => fs::read_to_string(path)
                .map_err(|source| ModuleError::Io {
                    path: path.to_owned(),
                    source,
                })?
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("CONFIG_")?
                        .strip_suffix("=y")
                        .map(str::to_owned)
                })
                .collect(),
            None => BTreeSet::new(),
        };
        log::debug!(
            "indexed {} modules under {}",
            index.len(),
            modules_dir.display()
        );
        Ok(Self {
            dir: modules_dir.to_owned(),
            release: release.to_owned(),
            index,
            builtin_list,
            config_y,
            info_cache: HashMap::new(),
        })
    }

    /// Path of the .ko for a normalised name.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.index.get(name).map(PathBuf::as_path)
    }

    /// The module's uncompressed bytes (compressed modules are decompressed, because the agent
    /// loads them with a plain finit_module).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, ModuleError> {
        let path = self.index.get(name).ok_or_else(|| ModuleError::Missing {
            name: name.to_owned(),
            needed_by: "the load plan".to_owned(),
            dir: self.dir.clone(),
        })?;
        let raw = fs::read(path).map_err(|source| ModuleError::Io {
            path: path.clone(),
            source,
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "ko" {
            return Ok(strip_signature(raw));
        }
        let format = compress::detect(&raw).ok_or_else(|| ModuleError::BadElf {
            path: path.clone(),
            reason: format!("unknown compression of .{ext} file"),
        })?;
        compress::decompress(format, &raw, raw.len() * 3).map_err(|source| {
            ModuleError::Decompress {
                path: path.clone(),
                source,
            }
        })
    }

    /// The file name the module gets in the initramfs: always plain `.ko`.
    pub fn file_name(&self, name: &str) -> Option<String> {
        self.index
            .get(name)
            .and_then(|p| ko_stem(p))
            .map(|s| format!("{s}.ko"))
    }

    fn info(&mut self, name: &str) -> Result<Option<ModInfo>, ModuleError> {
        if let Some(info) = self.info_cache.get(name) {
            return Ok(Some(info.clone()));
        }
        let Some(path) = self.index.get(name).cloned() else {
            return Ok(None);
        };
        let bytes = self.read(name)?;
        let info = parse_modinfo(&path, &bytes)?;
        // vermagic is "<release> SMP preempt mod_unload ..."; a module from another build
        // would be refused by the guest kernel, so catch it here.
        if let Some(vermagic) = &info.vermagic {
            if vermagic.split_whitespace().next() != Some(self.release.as_str()) {
                return Err(ModuleError::WrongKernel {
                    path,
                    vermagic: vermagic.clone(),
                    release: self.release.clone(),
                });
            }
        }
        self.info_cache.insert(name.to_owned(), info.clone());
        Ok(Some(info))
    }
}

impl ModuleProvider for KernelModules {
    fn depends(&mut self, name: &str) -> Result<Option<Vec<String>>, ModuleError> {
        Ok(self.info(name)?.map(|i| i.depends))
    }

    fn builtin(&self, name: &str) -> Option<String> {
        if self.builtin_list.contains(name) {
            return Some("listed in modules.builtin".to_owned());
        }
        // Config symbols usually follow the module name, sometimes with an _FS suffix
        // (overlay → OVERLAY_FS); other spellings need modules.builtin.
        let upper = name.to_ascii_uppercase();
        [upper.clone(), format!("{upper}_FS")]
            .into_iter()
            .find(|sym| self.config_y.contains(sym))
            .map(|sym| format!("CONFIG_{sym}=y"))
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }
}

fn collect_ko_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModuleError> {
    let io = |source| ModuleError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|source| ModuleError::Io {
            path: path.clone(),
            source,
        })?;
        if file_type.is_dir() {
            collect_ko_files(&path, out)?;
        } else if file_type.is_file() && ko_stem(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// `foo` for `.../foo.ko`, `foo.ko.xz`, `foo.ko.gz`, `foo.ko.zst`.
fn ko_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    ["", ".xz", ".gz", ".zst"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix)?.strip_suffix(".ko"))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil::fake_module;

    struct Fake {
        deps: BTreeMap<String, Vec<String>>,
        builtin: BTreeSet<String>,
    }

    impl Fake {
        fn new(mods: &[(&str, &[&str])], builtin: &[&str]) -> Self {
            Fake {
                deps: mods
                    .iter()
                    .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
                    .collect(),
                builtin: builtin.iter().map(|s| s.to_string()).collect(),
            }
        }
    }

    impl ModuleProvider for Fake {
        fn depends(&mut self, name: &str) -> Result<Option<Vec<String>>, ModuleError> {
            Ok(self.deps.get(name).cloned())
        }
        fn builtin(&self, name: &str) -> Option<String> {
            self.builtin.contains(name).then(|| "fake".to_string())
        }
        fn location(&self) -> PathBuf {
            PathBuf::from("/fake")
        }
    }

    #[test]
    fn dependencies_come_first_and_order_is_stable() {
        let mut p = Fake::new(
            &[
                ("virtio_ring", &[]),
                ("virtio", &[]),
                (
                    "virtio_pci",
                    &["virtio_ring", "virtio", "virtio_pci_modern_dev"],
                ),
                ("virtio_pci_modern_dev", &[]),
                ("9p", &["netfs", "9pnet", "fscache"]),
                ("9pnet", &[]),
                ("fscache", &["netfs"]),
                ("netfs", &[]),
                ("virtio_rng", &["virtio", "virtio_ring"]),
            ],
            &[],
        );
        let plan = resolve(&["virtio-rng", "9p", "virtio_pci"], &mut p).unwrap();
        assert_eq!(
            plan.order,
            [
                "virtio",
                "virtio_ring",
                "virtio_rng",
                "9pnet",
                "netfs",
                "fscache",
                "9p",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        // Already-ordered input stays exactly as given.
        let wanted = [
            "virtio_ring",
            "virtio",
            "virtio_pci_modern_dev",
            "virtio_pci",
        ];
        assert_eq!(resolve(&wanted, &mut p).unwrap().order, wanted);
    }

    #[test]
    fn every_module_after_its_deps() {
        let mut p = Fake::new(
            &[
                ("a", &["b", "c"]),
                ("b", &["d"]),
                ("c", &["d", "e"]),
                ("d", &[]),
                ("e", &["d"]),
            ],
            &[],
        );
        let plan = resolve(&["a", "e"], &mut p).unwrap();
        assert_eq!(plan.order, ["d", "b", "e", "c", "a"]);
        for (i, m) in plan.order.iter().enumerate() {
            for dep in &p.deps[m] {
                let j = plan.order.iter().position(|x| x == dep).unwrap();
                assert!(j < i, "{dep} must precede {m}");
            }
        }
    }

    #[test]
    fn builtin_skipped_missing_fails_cycle_fails() {
        let mut p = Fake::new(&[("a", &["b"]), ("b", &[])], &["virtio"]);
        let plan = resolve(&["virtio", "a"], &mut p).unwrap();
        assert_eq!(plan.order, ["b", "a"]);
        assert_eq!(plan.builtin, ["virtio"]);

        let err = resolve(&["nosuch"], &mut p).unwrap_err();
        assert!(matches!(err, ModuleError::Missing { ref name, .. } if name == "nosuch"));

        let mut p = Fake::new(&[("a", &["nodep"])], &[]);
        let err = resolve(&["a"], &mut p).unwrap_err();
        assert!(matches!(err, ModuleError::Missing { ref needed_by, .. } if needed_by == "a"));

        let mut p = Fake::new(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])], &[]);
        let err = resolve(&["a"], &mut p).unwrap_err();
        assert_eq!(err.to_string(), "module dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn modinfo_section_parsing() {
        let section = b"license=GPL\0depends=virtio_ring,virtio\0retpoline=Y\0intree=Y\0name=virtio-rng\0vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \0\0\0";
        let info = parse_modinfo_section(section);
        assert_eq!(info.name.as_deref(), Some("virtio_rng"));
        assert_eq!(info.depends, ["virtio_ring", "virtio"]);
        assert!(info.vermagic.unwrap().starts_with("6.1.0-56-amd64 "));
        assert!(parse_modinfo_section(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn modinfo_from_elf_bytes() {
        let elf = fake_module(b"name=9p\0depends=9pnet,netfs,fscache\0");
        let info = parse_modinfo(Path::new("9p.ko"), &elf).unwrap();
        assert_eq!(info.name.as_deref(), Some("9p"));
        assert_eq!(info.depends, ["9pnet", "netfs", "fscache"]);

        let err = parse_modinfo(Path::new("x.ko"), b"not an elf").unwrap_err();
        assert!(err.to_string().contains("x.ko"));
        let truncated = &elf[..elf.len() - 40];
        assert!(parse_modinfo(Path::new("t.ko"), truncated).is_err());
    }

    #[test]
    fn kernel_modules_scan_and_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let release = "9.9.9-test";
        let vm = format!("vermagic={release} SMP mod_unload\0");
        let dir = tmp.path().join("lib/modules").join(release);
        fs::create_dir_all(dir.join("kernel/a")).unwrap();
        fs::create_dir_all(dir.join("kernel/b")).unwrap();
        let write = |rel: &str, info: &str| {
            fs::write(dir.join(rel), fake_module(format!("{info}{vm}").as_bytes())).unwrap();
        };
        write("kernel/a/virtio-rng.ko", "depends=virtio_ring\0");
        write("kernel/b/virtio_ring.ko", "depends=\0");
        // Compressed module: must be found and decompressed.
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(
            &mut enc,
            &fake_module(format!("depends=virtio_ring\0{vm}").as_bytes()),
        )
        .unwrap();
        fs::write(dir.join("kernel/a/fuse.ko.xz"), enc.finish().unwrap()).unwrap();
        fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap();
        let config = tmp.path().join("config");
        fs::write(&config, "CONFIG_OVERLAY_FS=y\nCONFIG_FOO=m\n").unwrap();

        let mut km = KernelModules::scan(&dir, release, Some(&config)).unwrap();
        let plan = resolve(&["virtio", "overlay", "fuse", "virtio_rng"], &mut km).unwrap();
        assert_eq!(plan.order, ["virtio_ring", "fuse", "virtio_rng"]);
        assert_eq!(plan.builtin, ["virtio", "overlay"]);
        assert_eq!(km.file_name("virtio_rng").unwrap(), "virtio-rng.ko");
        assert_eq!(km.file_name("fuse").unwrap(), "fuse.ko");
        assert!(km.read("fuse").unwrap().starts_with(b"\x7fELF"));
        assert!(resolve(&["foo"], &mut km).is_err());

        fs::write(
            dir.join("kernel/a/other.ko"),
            fake_module(b"depends=\0vermagic=1.0.0 SMP\0"),
        )
        .unwrap();
        let mut km = KernelModules::scan(&dir, release, None).unwrap();
        assert!(matches!(
            resolve(&["other"], &mut km),
            Err(ModuleError::WrongKernel { .. })
        ));
    }
}

/// Marker that ends a module carrying an appended signature.
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Drops a module's appended signature. Checking it (RSA + SHA-256 per module) is most of the
/// module load time under TCG; the modules come from the package whose hash the manifest
/// records, and the kernel does not enforce signatures (CONFIG_MODULE_SIG_FORCE unset), so it
/// loads them and marks itself tainted. A module without a valid trailer is left as it is.
pub fn strip_signature(mut ko: Vec<u8>) -> Vec<u8> {
    // struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len.
    const INFO_LEN: usize = 12;
    let Some(body_end) = ko.len().checked_sub(SIGNATURE_MAGIC.len()) else {
        return ko;
    };
    if &ko[body_end..] != SIGNATURE_MAGIC || body_end < INFO_LEN {
        return ko;
    }
    let info = &ko[body_end - INFO_LEN..body_end];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let extra = usize::from(info[3]) + usize::from(info[4]);
    let Some(start) = (body_end - INFO_LEN).checked_sub(sig_len + extra) else {
        return ko;
    };
    ko.truncate(start);
    ko
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    #[test]
    fn strips_an_appended_signature_and_nothing_else() {
        let mut ko = b"\x7fELF-module-body".to_vec();
        let body = ko.clone();
        ko.extend_from_slice(&[0xAA; 5]); // the PKCS#7 blob
        ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        ko.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(strip_signature(ko), body);
        assert_eq!(strip_signature(body.clone()), body);
        let mut bogus = b"x".to_vec();
        bogus.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        bogus.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(strip_signature(bogus.clone()), bogus);
    }
}

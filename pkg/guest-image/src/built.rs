//! A guest kernel built from source by `scripts/build-guest-kernel.sh`: a folder holding
//! `vmlinux`, `config`, `release`, `source` ("<package> <version>") and `key` (the cache key).
//!
//! Such a kernel has everything built in and no modules; before an image is made from it, its
//! configuration is checked for what the agent relies on, so a kernel that lost an option fails
//! here with the option's name instead of as a guest that never answers.

use std::fs;
use std::path::{Path, PathBuf};

use crate::kernel;

/// What the agent and the runtime need from a guest kernel, as configuration options. Each
/// stands for one of the Debian kernel's modules in `DEFAULT_MODULES`, or for something the
/// agent does at start (devtmpfs, cgroups, namespaces).
pub const REQUIRED_OPTIONS: &[&str] = &[
    "CONFIG_PVH",
    "CONFIG_VIRTIO_PCI",
    "CONFIG_VIRTIO_CONSOLE",
    "CONFIG_HW_RANDOM_VIRTIO",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_NET",
    "CONFIG_NET_9P_VIRTIO",
    "CONFIG_9P_FS",
    "CONFIG_FUSE_FS",
    "CONFIG_VIRTIO_FS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_EXT4_FS",
    "CONFIG_DEVTMPFS",
    "CONFIG_TMPFS",
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_CGROUPS",
    "CONFIG_MEMCG",
    "CONFIG_NAMESPACES",
    "CONFIG_SECCOMP_FILTER",
    "CONFIG_UNIX98_PTYS",
    "CONFIG_HOTPLUG_PCI_PCIE",
];

#[derive(Debug, thiserror::Error)]
pub enum BuiltKernelError {
    #[error("cannot read {path} (is it a folder made by scripts/build-guest-kernel.sh?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected one line \"<package> <version>\", found {found:?}")]
    Source { path: PathBuf, found: String },
    #[error("{path} is not an ELF vmlinux")]
    NotElf { path: PathBuf },
    #[error("{path} has no PVH entry note: QEMU cannot boot it with -kernel (CONFIG_PVH)")]
    NoPvh { path: PathBuf },
    #[error("{path}: the guest needs {missing:?} built in (=y); add them to kernel/fragments/")]
    MissingOptions { path: PathBuf, missing: Vec<String> },
    #[error("{path} has loadable modules enabled; this image ships none, so build everything in (CONFIG_MODULES is not set)")]
    HasModules { path: PathBuf },
}

/// A built kernel, read and checked.
#[derive(Debug)]
pub struct BuiltKernel {
    pub package: String,
    pub version: String,
    pub key: String,
    pub release: String,
    pub config: Vec<u8>,
    pub vmlinux: Vec<u8>,
}

impl BuiltKernel {
    pub fn load(dir: &Path) -> Result<Self, BuiltKernelError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read(&path).map_err(|source| BuiltKernelError::Read { path, source })
        };
        let text = |name: &str| read(name).map(|b| String::from_utf8_lossy(&b).trim().to_owned());

        let source = text("source")?;
        let (package, version) = source
            .split_once(' ')
            .filter(|(p, v)| !p.is_empty() && !v.is_empty() && !v.contains(char::is_whitespace))
            .ok_or_else(|| BuiltKernelError::Source {
                path: dir.join("source"),
                found: source.clone(),
            })?;
        let vmlinux = read("vmlinux")?;
        let vmlinux_path = dir.join("vmlinux");
        if !vmlinux.starts_with(b"\x7fELF") {
            return Err(BuiltKernelError::NotElf { path: vmlinux_path });
        }
        if !kernel::has_pvh_note(&vmlinux) {
            return Err(BuiltKernelError::NoPvh { path: vmlinux_path });
        }
        let config = read("config")?;
        check_config(&dir.join("config"), &String::from_utf8_lossy(&config))?;
        Ok(Self {
            package: package.to_owned(),
            version: version.to_owned(),
            key: text("key")?,
            release: text("release")?,
            config,
            vmlinux,
        })
    }
}

/// Every option in REQUIRED_OPTIONS is `=y`, and modules are off.
pub fn check_config(path: &Path, config: &str) -> Result<(), BuiltKernelError> {
    let built_in = |name: &str| {
        config
            .lines()
            .any(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')) == Some("y"))
    };
    let missing: Vec<String> = REQUIRED_OPTIONS
        .iter()
        .filter(|o| !built_in(o))
        .map(|o| o.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(BuiltKernelError::MissingOptions {
            path: path.to_owned(),
            missing,
        });
    }
    if built_in("CONFIG_MODULES") {
        return Err(BuiltKernelError::HasModules {
            path: path.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil;

    fn full_config() -> String {
        REQUIRED_OPTIONS
            .iter()
            .map(|o| format!("{o}=y\n"))
            .collect()
    }

    fn write_dir(dir: &Path, config: &str, source: &str) {
        fs::write(dir.join("vmlinux"), testutil::fake_elf(true)).unwrap();
        fs::write(dir.join("config"), config).unwrap();
        fs::write(dir.join("release"), "6.1.192-kata-rs\n").unwrap();
        fs::write(dir.join("source"), source).unwrap();
        fs::write(dir.join("key"), "0123456789abcdef\n").unwrap();
    }

    #[test]
    fn loads_a_complete_folder() {
        let tmp = tempfile::tempdir().unwrap();
        write_dir(tmp.path(), &full_config(), "linux-source-6.1 6.1.192-3\n");
        let k = BuiltKernel::load(tmp.path()).unwrap();
        assert_eq!(
            (k.package.as_str(), k.version.as_str()),
            ("linux-source-6.1", "6.1.192-3")
        );
        assert_eq!(k.release, "6.1.192-kata-rs");
        assert_eq!(k.key, "0123456789abcdef");
    }

    #[test]
    fn a_lost_option_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let config =
            full_config().replace("CONFIG_VIRTIO_FS=y\n", "# CONFIG_VIRTIO_FS is not set\n");
        write_dir(tmp.path(), &config, "linux-source-6.1 6.1.192-3");
        let err = BuiltKernel::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("CONFIG_VIRTIO_FS"), "{err}");
        assert!(!err.contains("CONFIG_9P_FS"), "{err}");
    }

    #[test]
    fn modules_or_a_module_option_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let config = full_config() + "CONFIG_MODULES=y\n";
        write_dir(tmp.path(), &config, "linux-source-6.1 6.1.192-3");
        assert!(matches!(
            BuiltKernel::load(tmp.path()),
            Err(BuiltKernelError::HasModules { .. })
        ));
        let config = full_config().replace("CONFIG_EXT4_FS=y", "CONFIG_EXT4_FS=m");
        assert!(matches!(
            check_config(Path::new("config"), &config),
            Err(BuiltKernelError::MissingOptions { .. })
        ));
    }

    #[test]
    fn bad_source_line_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_dir(tmp.path(), &full_config(), "linux-source-6.1\n");
        assert!(matches!(
            BuiltKernel::load(tmp.path()),
            Err(BuiltKernelError::Source { .. })
        ));
        fs::remove_file(tmp.path().join("source")).unwrap();
        let err = BuiltKernel::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn vmlinux_without_pvh_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write_dir(tmp.path(), &full_config(), "linux-source-6.1 6.1.192-3");
        fs::write(tmp.path().join("vmlinux"), testutil::fake_elf(false)).unwrap();
        assert!(matches!(
            BuiltKernel::load(tmp.path()),
            Err(BuiltKernelError::NoPvh { .. })
        ));
    }
}

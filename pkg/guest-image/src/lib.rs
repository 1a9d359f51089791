//! Builds the guest image: kernel fetch, vmlinux extraction, initramfs.
//!
//! `kata-osbuilder` turns a Debian `linux-image-<abi>-amd64` package (fetched by
//! `scripts/fetch-guest-kernel.sh`) and the agent binary into `vmlinux`, `initrd.img` and
//! `manifest.json`; see [`image::build`].

pub mod compress;
pub mod cpio;
pub mod image;
pub mod kernel;
pub mod modules;

#[cfg(test)]
mod testutil;

pub use image::{build, BuildOptions, Manifest, INITRD_FILE, MANIFEST_FILE, VMLINUX_FILE};
pub use modules::DEFAULT_MODULES;

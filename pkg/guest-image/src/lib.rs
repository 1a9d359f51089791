//! Builds the guest image: vmlinux, initramfs and manifest.
//!
//! `kata-osbuilder` turns a kernel and the agent binary into `vmlinux`, `initrd.img` and
//! `manifest.json`; see [`image::build`]. The kernel is the project's own, built from source by
//! `scripts/build-guest-kernel.sh` (see [`built`]), or Debian's generic `linux-image-<abi>-amd64`
//! package (fetched by `scripts/fetch-guest-kernel.sh`) with the modules the guest needs.

pub mod built;
pub mod compress;
pub mod cpio;
pub mod image;
pub mod kernel;
pub mod modules;

#[cfg(test)]
mod testutil;

pub use image::{
    build, BuildOptions, KernelInput, Manifest, INITRD_FILE, MANIFEST_FILE, VMLINUX_FILE,
};
pub use modules::DEFAULT_MODULES;

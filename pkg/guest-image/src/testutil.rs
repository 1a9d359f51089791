//! Synthetic kernels, modules and packages for the unit tests.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel::{
    ELF_MAGIC, HEADER_MAGIC_AT, PAYLOAD_LENGTH_AT, PAYLOAD_OFFSET_AT, PT_NOTE, SETUP_SECTS,
    VERSION_AT, XEN_ELFNOTE_PHYS32_ENTRY,
};

/// An ELF64 header plus one PT_NOTE program header holding the Xen PVH note.
pub fn fake_elf(with_note: bool) -> Vec<u8> {
    let mut elf = vec![0u8; 0x40 + 0x38];
    elf[..4].copy_from_slice(ELF_MAGIC);
    elf[4] = 2;
    elf[5] = 1;
    elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
    elf[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
    let note_off = elf.len();
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&4u32.to_le_bytes());
    let kind = if with_note {
        XEN_ELFNOTE_PHYS32_ENTRY
    } else {
        1
    };
    note.extend_from_slice(&kind.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&0x1000000u32.to_le_bytes());
    elf.extend_from_slice(&note);
    let ph = 0x40;
    elf[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
    elf[ph + 8..ph + 16].copy_from_slice(&(note_off as u64).to_le_bytes());
    elf[ph + 0x20..ph + 0x28].copy_from_slice(&(note.len() as u64).to_le_bytes());
    elf.extend_from_slice(&[0xAB; 1000]);
    elf
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = xz2::write::XzEncoder::new(Vec::new(), 1);
    enc.write_all(data).unwrap();
    let mut out = enc.finish().unwrap();
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A bzImage-shaped buffer: boot sector + 2 setup sectors, then junk and the payload.
pub fn fake_bzimage(payload: &[u8], with_header: bool) -> Vec<u8> {
    let mut img = vec![0u8; 3 * 512];
    let junk = 100usize;
    if with_header {
        img[SETUP_SECTS] = 2;
        img[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(b"HdrS");
        img[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        img[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&(junk as u32).to_le_bytes());
        img[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
    }
    // Junk containing a false gzip magic, to exercise the scan's retry.
    let mut j = vec![0x90u8; junk];
    j[10..13].copy_from_slice(&[0x1F, 0x8B, 0x08]);
    img.extend_from_slice(&j);
    img.extend_from_slice(payload);
    img.extend_from_slice(&[0u8; 64]);
    img
}

/// Builds a minimal ELF64 LE relocatable with a .modinfo section and a section name table.
pub fn fake_module(modinfo: &[u8]) -> Vec<u8> {
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let mut elf = vec![0u8; 0x40];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little-endian
    elf[6] = 1;
    let modinfo_off = elf.len();
    elf.extend_from_slice(modinfo);
    let shstr_off = elf.len();
    elf.extend_from_slice(shstrtab);
    elf.resize(elf.len().next_multiple_of(8), 0);
    let shoff = elf.len();
    let mut sh = |name: u32, off: usize, size: usize| {
        let mut h = vec![0u8; 0x40];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
        h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
        elf.extend_from_slice(&h);
    };
    sh(0, 0, 0); // SHN_UNDEF
    sh(1, modinfo_off, modinfo.len());
    sh(10, shstr_off, shstrtab.len());
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3A..0x3C].copy_from_slice(&0x40u16.to_le_bytes());
    elf[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
    elf
}

/// A .deb shaped like Debian's linux-image package, built with dpkg-deb.
pub fn fake_kernel_deb(dir: &Path, release: &str) -> PathBuf {
    let root = dir.join("debroot");
    let modules = root.join("lib/modules").join(release);
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::create_dir_all(modules.join("kernel/drivers")).unwrap();
    fs::create_dir_all(modules.join("kernel/fs")).unwrap();
    let version = release.trim_end_matches("-amd64");
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: linux-image-{release}\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: test <test@example.invalid>\nDescription: fake kernel\n"
        ),
    )
    .unwrap();
    fs::write(
        root.join("boot").join(format!("vmlinuz-{release}")),
        fake_bzimage(&xz(&fake_elf(true)), true),
    )
    .unwrap();
    fs::write(
        root.join("boot").join(format!("config-{release}")),
        "CONFIG_FOO=y\n",
    )
    .unwrap();
    fs::write(
        modules.join("modules.builtin"),
        "kernel/fs/overlayfs/overlay.ko\n",
    )
    .unwrap();
    let vermagic = format!("vermagic={release} SMP preempt mod_unload modversions \0");
    for (rel, deps) in [
        ("drivers/virtio_ring.ko", ""),
        ("drivers/virtio.ko", ""),
        ("drivers/virtio-rng.ko", "virtio_ring,virtio"),
        ("fs/9p.ko", "9pnet,netfs,fscache"),
        ("fs/9pnet.ko", ""),
        ("fs/netfs.ko", ""),
        ("fs/fscache.ko", "netfs"),
        ("fs/unused.ko", ""),
    ] {
        let info = format!("license=GPL\0depends={deps}\0{vermagic}");
        fs::write(
            modules.join("kernel").join(rel),
            fake_module(info.as_bytes()),
        )
        .unwrap();
    }
    let deb = dir.join(format!("linux-image-{release}_{version}_amd64.deb"));
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "-b"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}

//! Getting the uncompressed ELF vmlinux out of an x86 bzImage.
//!
//! QEMU can boot the ELF directly through its PVH note, which saves the ~3.4 s the bzImage
//! spends decompressing itself under TCG. The bzImage carries the ELF as one compressed stream
//! (vmlinux.bin, possibly followed by relocation data) whose position the setup header records;
//! when the header is too old or inconsistent, the stream is found by its magic instead.

use std::path::{Path, PathBuf};

use crate::compress::{self, Format};

/// Offsets in the x86 boot protocol's setup header (Documentation/arch/x86/boot.rst).
pub(crate) const SETUP_SECTS: usize = 0x1F1;
pub(crate) const HEADER_MAGIC_AT: usize = 0x202;
pub(crate) const VERSION_AT: usize = 0x206;
pub(crate) const PAYLOAD_OFFSET_AT: usize = 0x248;
pub(crate) const PAYLOAD_LENGTH_AT: usize = 0x24C;
/// payload_offset/payload_length exist from boot protocol 2.08 on.
const MIN_PAYLOAD_VERSION: u16 = 0x0208;
/// Candidates tried when scanning for the payload; real images have few false magic matches.
const MAX_SCAN_CANDIDATES: usize = 64;

pub(crate) const ELF_MAGIC: &[u8] = b"\x7fELF";
pub(crate) const PT_NOTE: u32 = 4;
/// XEN_ELFNOTE_PHYS32_ENTRY: the PVH entry point QEMU needs to boot an ELF kernel.
pub(crate) const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}: no compressed kernel payload found (looked for xz and gzip streams{found})")]
    NoPayload { path: PathBuf, found: String },
    #[error("{path}: the payload is compressed with {format}, which is not supported")]
    Unsupported { path: PathBuf, format: &'static str },
    #[error("{path}: decompressing the kernel payload failed")]
    Decompress {
        path: PathBuf,
        #[source]
        source: compress::CompressError,
    },
    #[error("{path}: the decompressed payload is not an ELF file")]
    NotElf { path: PathBuf },
}

/// How the payload was located, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    SetupHeader,
    MagicScan,
}

/// The extracted kernel.
#[derive(Debug)]
pub struct Vmlinux {
    pub elf: Vec<u8>,
    pub format: Format,
    pub located: Located,
    /// Offset of the compressed stream inside the bzImage.
    pub offset: usize,
    /// Whether the ELF has the PVH entry note QEMU's direct ELF boot relies on.
    pub has_pvh_note: bool,
}

/// Extracts the ELF vmlinux from `bzimage`. `path` is only used in errors.
pub fn extract_vmlinux(path: &Path, bzimage: &[u8]) -> Result<Vmlinux, KernelError> {
    if let Some((offset, payload)) = header_payload(bzimage) {
        match compress::detect(payload) {
            Some(format) if !format.supported() => {
                return Err(KernelError::Unsupported {
                    path: path.to_owned(),
                    format: format.name(),
                })
            }
            Some(format) => {
                // The build appends the uncompressed size (LE u32) to the stream.
                let size = payload
                    .len()
                    .checked_sub(4)
                    .and_then(|at| payload.get(at..))
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, |b| u32::from_le_bytes(b) as usize);
                let elf = compress::decompress(format, payload, size).map_err(|source| {
                    KernelError::Decompress {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                if !elf.starts_with(ELF_MAGIC) {
                    return Err(KernelError::NotElf {
                        path: path.to_owned(),
                    });
                }
                if size != 0 && size != elf.len() {
                    log::warn!(
                        "{}: payload claims {size} bytes uncompressed, got {}",
                        path.display(),
                        elf.len()
                    );
                }
                return Ok(finish(elf, format, Located::SetupHeader, offset));
            }
            None => log::warn!(
                "{}: setup header payload has no known magic; scanning the image",
                path.display()
            ),
        }
    }
    scan(path, bzimage)
}

fn finish(elf: Vec<u8>, format: Format, located: Located, offset: usize) -> Vmlinux {
    let has_pvh_note = has_pvh_note(&elf);
    Vmlinux {
        elf,
        format,
        located,
        offset,
        has_pvh_note,
    }
}

/// The payload slice the setup header points at, if the header is present and sane.
fn header_payload(image: &[u8]) -> Option<(usize, &[u8])> {
    if image.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes(image.get(VERSION_AT..VERSION_AT + 2)?.try_into().ok()?);
    if version < MIN_PAYLOAD_VERSION {
        return None;
    }
    // setup_sects 0 means 4 for historical reasons; the protected-mode code follows the
    // setup sectors plus the boot sector.
    let setup_sects = match *image.get(SETUP_SECTS)? {
        0 => 4,
        n => n as usize,
    };
    let read_u32 = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let start = (setup_sects + 1) * 512 + read_u32(PAYLOAD_OFFSET_AT)?;
    let len = read_u32(PAYLOAD_LENGTH_AT)?;
    Some((start, image.get(start..start.checked_add(len)?)?))
}

/// Fallback: try each xz or gzip magic in the image until one decompresses to an ELF.
fn scan(path: &Path, image: &[u8]) -> Result<Vmlinux, KernelError> {
    let mut seen_unsupported = Vec::new();
    let mut tried = 0;
    for offset in 0..image.len() {
        let rest = &image[offset..];
        let Some(format) = compress::detect(rest) else {
            continue;
        };
        if !format.supported() {
            // Only remembered: random bytes match short magics like "BZh" easily.
            if !seen_unsupported.contains(&format.name()) {
                seen_unsupported.push(format.name());
            }
            continue;
        }
        tried += 1;
        if tried > MAX_SCAN_CANDIDATES {
            break;
        }
        match compress::decompress(format, rest, 0) {
            Ok(elf) if elf.starts_with(ELF_MAGIC) => {
                return Ok(finish(elf, format, Located::MagicScan, offset))
            }
            Ok(_) => log::debug!("{format:?} stream at {offset:#x} is not an ELF"),
            Err(e) => log::debug!("{format:?} candidate at {offset:#x}: {e}"),
        }
    }
    let found = if seen_unsupported.is_empty() {
        String::new()
    } else {
        format!("; possible {} magic seen", seen_unsupported.join("/"))
    };
    Err(KernelError::NoPayload {
        path: path.to_owned(),
        found,
    })
}

/// Looks for the Xen PHYS32_ENTRY note among the ELF64 program headers.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    fn u16_at(b: &[u8], at: usize) -> Option<usize> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
    }
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], at: usize) -> Option<usize> {
        usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
    }
    let check = || -> Option<bool> {
        if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
            return Some(false);
        }
        let phoff = u64_at(elf, 0x20)?;
        let phentsize = u16_at(elf, 0x36)?;
        let phnum = u16_at(elf, 0x38)?;
        for i in 0..phnum {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if u32_at(elf, ph)? != PT_NOTE {
                continue;
            }
            let offset = u64_at(elf, ph + 0x08)?;
            let size = u64_at(elf, ph + 0x20)?;
            let notes = elf.get(offset..offset.checked_add(size)?)?;
            let mut pos = 0;
            while pos + 12 <= notes.len() {
                let namesz = u32_at(notes, pos)? as usize;
                let descsz = u32_at(notes, pos + 4)? as usize;
                let kind = u32_at(notes, pos + 8)?;
                let name = notes.get(pos + 12..pos + 12 + namesz)?;
                if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                    return Some(true);
                }
                pos += 12 + ((namesz + 3) & !3) + ((descsz + 3) & !3);
            }
        }
        Some(false)
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil::{fake_bzimage, fake_elf, gzip, xz};

    #[test]
    fn xz_via_setup_header() {
        let elf = fake_elf(true);
        let v = extract_vmlinux(Path::new("k"), &fake_bzimage(&xz(&elf), true)).unwrap();
        assert_eq!(v.elf, elf);
        assert_eq!(
            (v.format, v.located, v.offset),
            (Format::Xz, Located::SetupHeader, 3 * 512 + 100)
        );
        assert!(v.has_pvh_note);
    }

    #[test]
    fn gzip_and_xz_via_scan() {
        let elf = fake_elf(false);
        let v = extract_vmlinux(Path::new("k"), &fake_bzimage(&gzip(&elf), false)).unwrap();
        assert_eq!((v.format, v.located), (Format::Gzip, Located::MagicScan));
        assert_eq!(v.elf, elf);
        assert!(!v.has_pvh_note);
        let v = extract_vmlinux(Path::new("k"), &fake_bzimage(&xz(&elf), false)).unwrap();
        assert_eq!((v.format, v.located), (Format::Xz, Located::MagicScan));
    }

    #[test]
    fn non_elf_payload_is_rejected() {
        let err = extract_vmlinux(Path::new("bz"), &fake_bzimage(&xz(b"not elf at all"), true))
            .unwrap_err();
        assert!(matches!(err, KernelError::NotElf { .. }));
        let err = extract_vmlinux(Path::new("bz"), b"garbage").unwrap_err();
        assert!(err.to_string().starts_with("bz:"));
    }

    #[test]
    fn unsupported_format_is_named() {
        let mut zstd = vec![0x28, 0xB5, 0x2F, 0xFD];
        zstd.extend_from_slice(&[0; 16]);
        let err = extract_vmlinux(Path::new("bz"), &fake_bzimage(&zstd, true)).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }
}

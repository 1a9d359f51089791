//! Deterministic writer (and a small reader) for the "newc" cpio format, the one format the
//! kernel's initramfs unpacker accepts.
//!
//! Entries are collected first and written sorted by path, with mtime 0, uid/gid 0 and inode
//! numbers assigned by position, so the same set of entries always yields the same bytes
//! whatever order the caller added them in. Sorting by the full path also puts every directory
//! before its contents, because a parent path is a prefix of its children's paths.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Magic of the newc format without CRC ("070702" would be the CRC variant).
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Fixed size of a newc header: the magic plus 13 eight-digit hex fields.
const HEADER_LEN: usize = 6 + 13 * 8;
const TRAILER: &str = "TRAILER!!!";

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;
const S_IFLNK: u32 = 0o120000;

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("duplicate archive entry {path:?}")]
    Duplicate { path: String },
    #[error("archive entry {path:?} is too large for newc ({size} bytes)")]
    TooLarge { path: String, size: usize },
    #[error("writing the archive failed")]
    Io(#[from] io::Error),
    #[error("malformed cpio archive at offset {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
}

/// What an archive entry is; permission bits are kept separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    CharDev { major: u32, minor: u32 },
    Symlink(String),
}

impl EntryKind {
    fn type_bits(&self) -> u32 {
        match self {
            EntryKind::Dir => S_IFDIR,
            EntryKind::File(_) => S_IFREG,
            EntryKind::CharDev { .. } => S_IFCHR,
            EntryKind::Symlink(_) => S_IFLNK,
        }
    }
}

/// An entry as stored in (or read back from) an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, relative (no leading '/'), as the kernel expects.
    pub path: String,
    /// Permission bits only (e.g. 0o755).
    pub perm: u32,
    pub kind: EntryKind,
}

/// Collects entries and writes them as one deterministic newc archive.
#[derive(Debug, Default)]
pub struct ArchiveBuilder {
    entries: BTreeMap<String, (u32, EntryKind)>,
}

impl ArchiveBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::Dir)
    }

    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::File(data))
    }

    pub fn add_char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::CharDev { major, minor })
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.add(path, 0o777, EntryKind::Symlink(target.to_owned()))
    }

    /// Adds an entry; `path` may be given with or without a leading '/'.
    pub fn add(&mut self, path: &str, perm: u32, kind: EntryKind) -> Result<(), CpioError> {
        let path = normalize_path(path)?;
        if self.entries.contains_key(&path) {
            return Err(CpioError::Duplicate { path });
        }
        self.entries.insert(path, (perm & 0o7777, kind));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes all entries sorted by path, then the trailer. Returns the bytes written.
    pub fn write_to<W: Write>(&self, out: W) -> Result<u64, CpioError> {
        let mut out = CountingWriter {
            inner: out,
            count: 0,
        };
        for (index, (path, (perm, kind))) in self.entries.iter().enumerate() {
            // Inode 0 is avoided because some unpackers treat it as "no inode".
            let ino = u32::try_from(index + 1).map_err(|_| CpioError::TooLarge {
                path: path.clone(),
                size: index,
            })?;
            let (data, nlink, rdev): (&[u8], u32, (u32, u32)) = match kind {
                EntryKind::Dir => (&[], 2, (0, 0)),
                EntryKind::File(d) => (d, 1, (0, 0)),
                EntryKind::CharDev { major, minor } => (&[], 1, (*major, *minor)),
                EntryKind::Symlink(target) => (target.as_bytes(), 1, (0, 0)),
            };
            let header = Header {
                ino,
                mode: kind.type_bits() | perm,
                nlink,
                filesize: data.len(),
                rdev,
            };
            write_entry(&mut out, path, &header, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            filesize: 0,
            rdev: (0, 0),
        };
        write_entry(&mut out, TRAILER, &trailer, &[])?;
        out.flush()?;
        Ok(out.count)
    }

    /// Convenience for tests and hashing: the whole archive in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CpioError> {
        let mut buf = Vec::new();
        self.write_to(&mut buf)?;
        Ok(buf)
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: usize,
    rdev: (u32, u32),
}

fn write_entry<W: Write>(
    out: &mut CountingWriter<W>,
    name: &str,
    h: &Header,
    data: &[u8],
) -> Result<(), CpioError> {
    let too_large = |size| CpioError::TooLarge {
        path: name.to_owned(),
        size,
    };
    let filesize = u32::try_from(h.filesize).map_err(|_| too_large(h.filesize))?;
    // namesize counts the terminating NUL.
    let namesize = u32::try_from(name.len() + 1).map_err(|_| too_large(name.len()))?;
    let fields: [u32; 13] = [
        h.ino, h.mode, 0, // uid
        0, // gid
        h.nlink, 0, // mtime
        filesize, 0, // devmajor: the archive describes no real filesystem
        0, // devminor
        h.rdev.0, h.rdev.1, namesize, 0, // check: only used by the "070702" variant
    ];
    let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    header.extend_from_slice(NEWC_MAGIC);
    for f in fields {
        header.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    header.extend_from_slice(name.as_bytes());
    header.push(0);
    header.resize(align4(header.len()), 0);
    out.write_all(&header)?;
    out.write_all(data)?;
    let pad = align4(data.len()) - data.len();
    out.write_all(&[0u8; 3][..pad])?;
    Ok(())
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn normalize_path(path: &str) -> Result<String, CpioError> {
    let invalid = |reason| CpioError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if trimmed.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    if trimmed.ends_with('/') || trimmed.contains("//") {
        return Err(invalid("empty path component"));
    }
    if trimmed.split('/').any(|c| c == "." || c == "..") {
        return Err(invalid("'.' or '..' component"));
    }
    if trimmed == TRAILER {
        return Err(invalid("reserved trailer name"));
    }
    Ok(trimmed.to_owned())
}

/// Counts bytes so the caller learns the archive size without a second pass.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A parsed header, with every field, so tests can check what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEntry {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub entry: Entry,
}

/// Parses a newc archive up to its trailer (the trailer itself is not returned).
pub fn parse_newc(data: &[u8]) -> Result<Vec<ParsedEntry>, CpioError> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let malformed = |offset, reason: String| CpioError::Malformed { offset, reason };
        let header = data
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| malformed(pos, "truncated header".into()))?;
        if &header[..6] != NEWC_MAGIC {
            return Err(malformed(pos, "bad magic".into()));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let raw = &header[6 + i * 8..6 + (i + 1) * 8];
            let text = std::str::from_utf8(raw)
                .map_err(|_| malformed(pos, format!("field {i} is not ASCII")))?;
            *f = u32::from_str_radix(text, 16)
                .map_err(|_| malformed(pos, format!("field {i} is not hex: {text:?}")))?;
        }
        let [ino, mode, uid, gid, nlink, mtime, filesize, _devmaj, _devmin, rmaj, rmin, namesize, _check] =
            fields;
        let name_start = pos + HEADER_LEN;
        let name_end = name_start + namesize as usize;
        let name_bytes = data
            .get(name_start..name_end)
            .ok_or_else(|| malformed(pos, "truncated name".into()))?;
        let (last, name_bytes) = name_bytes
            .split_last()
            .ok_or_else(|| malformed(pos, "empty name".into()))?;
        if *last != 0 {
            return Err(malformed(pos, "name not NUL-terminated".into()));
        }
        let name = String::from_utf8(name_bytes.to_vec())
            .map_err(|_| malformed(pos, "name is not UTF-8".into()))?;
        // Offsets are absolute and every header starts 4-aligned, so aligning the absolute
        // offset is the same as aligning relative to the header.
        let data_start = align4(name_end);
        let padding = data
            .get(name_end..data_start)
            .ok_or_else(|| malformed(pos, "truncated name padding".into()))?;
        if padding.iter().any(|b| *b != 0) {
            return Err(malformed(pos, "non-zero name padding".into()));
        }
        let data_end = data_start + filesize as usize;
        let body = data
            .get(data_start..data_end)
            .ok_or_else(|| malformed(pos, format!("truncated data of {name:?}")))?;
        pos = align4(data_end);
        if name == TRAILER {
            return Ok(entries);
        }
        let kind = match mode & S_IFMT {
            S_IFDIR => EntryKind::Dir,
            S_IFREG => EntryKind::File(body.to_vec()),
            S_IFCHR => EntryKind::CharDev {
                major: rmaj,
                minor: rmin,
            },
            S_IFLNK => EntryKind::Symlink(
                String::from_utf8(body.to_vec())
                    .map_err(|_| malformed(pos, "symlink target is not UTF-8".into()))?,
            ),
            other => return Err(malformed(pos, format!("unsupported file type {other:o}"))),
        };
        entries.push(ParsedEntry {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            rdev_major: rmaj,
            rdev_minor: rmin,
            entry: Entry {
                path: name,
                perm: mode & 0o7777,
                kind,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> ArchiveBuilder {
        let mut b = ArchiveBuilder::new();
        // Added out of order on purpose: output must be sorted.
        b.add_file("/lib/modules/a.ko", 0o644, b"abc".to_vec())
            .unwrap();
        b.add_dir("/lib", 0o755).unwrap();
        b.add_file("/init", 0o755, vec![0x7f, b'E', b'L', b'F', 1])
            .unwrap();
        b.add_dir("/lib/modules", 0o755).unwrap();
        b.add_dir("/dev", 0o755).unwrap();
        b.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
        b.add_symlink("/sbin", "bin").unwrap();
        b.add_file("/empty", 0o644, Vec::new()).unwrap();
        b
    }

    #[test]
    fn round_trip() {
        let bytes = sample().to_bytes().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let parsed = parse_newc(&bytes).unwrap();
        let paths: Vec<&str> = parsed.iter().map(|e| e.entry.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "empty",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/a.ko",
                "sbin"
            ]
        );
        for (i, e) in parsed.iter().enumerate() {
            assert_eq!(e.ino as usize, i + 1);
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0));
        }
        let console = &parsed[1];
        assert_eq!(console.mode, 0o020600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        let init = &parsed[3];
        assert_eq!(init.mode, 0o100755);
        assert_eq!(
            init.entry.kind,
            EntryKind::File(vec![0x7f, b'E', b'L', b'F', 1])
        );
        assert_eq!(parsed[4].mode, 0o040755);
        assert_eq!(parsed[4].nlink, 2);
        assert_eq!(parsed[7].entry.kind, EntryKind::Symlink("bin".into()));
    }

    #[test]
    fn exact_header_bytes() {
        let mut b = ArchiveBuilder::new();
        b.add_file("a", 0o644, b"hello".to_vec()).unwrap();
        let bytes = b.to_bytes().unwrap();
        let expected_header = concat!(
            "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "00000000",
            "00000005", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000"
        );
        assert_eq!(&bytes[..110], expected_header.as_bytes());
        // name "a\0" ends at 112, already aligned; data then padded to 120.
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..117], b"hello");
        assert_eq!(&bytes[117..120], &[0, 0, 0]);
        assert_eq!(&bytes[120..126], b"070701");
        let trailer_name = 120 + 110;
        assert_eq!(&bytes[trailer_name..trailer_name + 11], b"TRAILER!!!\0");
        assert_eq!(bytes.len(), align4(trailer_name + 11));
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut reversed = ArchiveBuilder::new();
        reversed.add_file("/empty", 0o644, Vec::new()).unwrap();
        reversed.add_symlink("/sbin", "bin").unwrap();
        reversed.add_char_dev("/dev/console", 0o600, 5, 1).unwrap();
        reversed.add_dir("/dev", 0o755).unwrap();
        reversed.add_dir("/lib/modules", 0o755).unwrap();
        reversed
            .add_file("/init", 0o755, vec![0x7f, b'E', b'L', b'F', 1])
            .unwrap();
        reversed.add_dir("/lib", 0o755).unwrap();
        reversed
            .add_file("/lib/modules/a.ko", 0o644, b"abc".to_vec())
            .unwrap();
        assert_eq!(sample().to_bytes().unwrap(), reversed.to_bytes().unwrap());
    }

    #[test]
    fn rejects_bad_paths_and_duplicates() {
        let mut b = ArchiveBuilder::new();
        assert!(b.add_dir("/", 0o755).is_err());
        assert!(b.add_dir("a/../b", 0o755).is_err());
        assert!(b.add_dir("a//b", 0o755).is_err());
        assert!(b.add_dir("TRAILER!!!", 0o755).is_err());
        b.add_dir("/x", 0o755).unwrap();
        assert!(matches!(
            b.add_dir("x", 0o700),
            Err(CpioError::Duplicate { .. })
        ));
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_newc(b"070707").is_err());
        let mut bytes = sample().to_bytes().unwrap();
        bytes.truncate(bytes.len() - 20);
        assert!(parse_newc(&bytes).is_err());
    }

    /// Cross-checks against GNU cpio when the host has it; skipped silently otherwise.
    #[test]
    fn gnu_cpio_lists_the_archive() {
        use std::process::{Command, Stdio};
        let bytes = sample().to_bytes().unwrap();
        let child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("cpio not installed; skipping");
            return;
        };
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 8, "{listing}");
        assert!(lines[1].starts_with("crw-------"), "{listing}");
        assert!(
            lines[1].contains("5,") && lines[1].ends_with("dev/console"),
            "{listing}"
        );
        assert!(
            lines[3].starts_with("-rwxr-xr-x") && lines[3].ends_with(" init"),
            "{listing}"
        );
        assert!(
            lines[7].starts_with("lrwxrwxrwx") && lines[7].ends_with("sbin -> bin"),
            "{listing}"
        );
    }
}

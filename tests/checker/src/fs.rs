//! `kata-spec-checker --fs DIR`: POSIX file semantics in a shared folder (a volume or the
//! rootfs, over 9p or virtio-fs), each checked against what a local filesystem does.
//! `--fs-ro DIR`: every kind of write is refused with EROFS.

use crate::report::{Outcome, Report};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn io<T>(what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

pub fn check_rw(dir: &Path, r: &mut Report) {
    let work = dir.join(format!("fscheck-{}", std::process::id()));
    if let Err(e) = fs::create_dir(&work) {
        r.record(
            "fs.mkdir",
            Outcome::Fail(format!("{}: {e}", work.display())),
        );
        return;
    }
    r.record("fs.mkdir", Outcome::Pass);
    r.record("fs.write_fsync_read", write_fsync_read(&work));
    r.record("fs.rename", rename(&work));
    r.record("fs.hard_link", hard_link(&work));
    r.record("fs.symlink", symlink(&work));
    r.record("fs.chmod", chmod(&work));
    r.record("fs.ownership", ownership(&work));
    r.record("fs.mmap", mmap(&work));
    r.record("fs.unlink_rmdir", cleanup(&work));
}

fn write_fsync_read(d: &Path) -> Result<Outcome, String> {
    let p = d.join("data");
    let mut f = io("create", File::create(&p))?;
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    io("write", f.write_all(&data))?;
    io("fsync", f.sync_all())?;
    drop(f);
    let mut back = Vec::new();
    io(
        "read",
        File::open(&p).and_then(|mut f| f.read_to_end(&mut back)),
    )?;
    Ok(Outcome::expect_eq(data.len(), back.len()).and(back == data, "content differs"))
}

fn rename(d: &Path) -> Result<Outcome, String> {
    let (a, b) = (d.join("old"), d.join("new"));
    io("create", fs::write(&a, b"renamed"))?;
    io("rename", fs::rename(&a, &b))?;
    let content = io("read", fs::read(&b))?;
    Ok(Outcome::expect_eq(false, a.exists()).and(content == b"renamed", "content lost"))
}

fn hard_link(d: &Path) -> Result<Outcome, String> {
    let (a, b) = (d.join("target"), d.join("link"));
    io("create", fs::write(&a, b"linked"))?;
    io("link", fs::hard_link(&a, &b))?;
    let (ma, mb) = (io("stat", fs::metadata(&a))?, io("stat", fs::metadata(&b))?);
    Ok(Outcome::expect_eq((2, ma.ino()), (mb.nlink(), mb.ino())))
}

fn symlink(d: &Path) -> Result<Outcome, String> {
    let l = d.join("sym");
    io("create", fs::write(d.join("pointee"), b"via symlink"))?;
    io("symlink", std::os::unix::fs::symlink("pointee", &l))?;
    let target = io("readlink", fs::read_link(&l))?;
    let content = io("read through", fs::read(&l))?;
    Ok(
        Outcome::expect_eq(Path::new("pointee"), target.as_path()).and(
            content == b"via symlink",
            "content through the link differs",
        ),
    )
}

fn chmod(d: &Path) -> Result<Outcome, String> {
    let p = d.join("mode");
    io("create", fs::write(&p, b"x"))?;
    io(
        "chmod",
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)),
    )?;
    let mode = io("stat", fs::metadata(&p))?.permissions().mode() & 0o7777;
    Ok(Outcome::expect_eq(0o640, mode))
}

fn ownership(d: &Path) -> Result<Outcome, String> {
    let p = d.join("owned");
    io("create", fs::write(&p, b"x"))?;
    let m = io("stat", fs::metadata(&p))?;
    Ok(Outcome::expect_eq(
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
        (m.uid(), m.gid()),
    ))
}

/// A shared writable mapping: what is stored through it is what read(2) sees after msync.
fn mmap(d: &Path) -> Result<Outcome, String> {
    use nix::sys::mman::{mmap, msync, munmap, MapFlags, MsFlags, ProtFlags};
    let p = d.join("mapped");
    let f = io(
        "create",
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p),
    )?;
    io("truncate", f.set_len(4096))?;
    let len = std::num::NonZeroUsize::new(4096).ok_or("zero length")?;
    // SAFETY: a fresh shared mapping of a file we own, unmapped before returning.
    let addr = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &f,
            0,
        )
    }
    .map_err(|e| format!("mmap: {e}"))?;
    let msg = b"written through mmap";
    // SAFETY: the mapping is 4096 bytes long and writable.
    unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), addr.as_ptr().cast::<u8>(), msg.len()) };
    // SAFETY: the mapping made above, of `len` bytes.
    let synced = unsafe { msync(addr, 4096, MsFlags::MS_SYNC) };
    // SAFETY: unmapping what we mapped.
    let _ = unsafe { munmap(addr, 4096) };
    synced.map_err(|e| format!("msync: {e}"))?;
    let mut back = vec![0u8; msg.len()];
    io(
        "read",
        File::open(&p).and_then(|mut f| f.read_exact(&mut back)),
    )?;
    Ok(Outcome::expect_eq(&msg[..], &back[..]))
}

fn cleanup(d: &Path) -> Result<Outcome, String> {
    io("remove", fs::remove_dir_all(d))?;
    Ok(Outcome::expect_eq(false, d.exists()))
}

/// Every write is refused with EROFS.
pub fn check_ro(dir: &Path, r: &mut Report) {
    let erofs = |what: &str, res: std::io::Result<()>| match res {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Outcome::Pass,
        Err(e) => Outcome::Fail(format!("{what}: expected EROFS, got {e}")),
        Ok(()) => Outcome::Fail(format!("{what} succeeded on a read-only volume")),
    };
    r.record(
        "fs_ro.create",
        erofs("create", fs::write(dir.join("nope"), b"x")),
    );
    r.record(
        "fs_ro.mkdir",
        erofs("mkdir", fs::create_dir(dir.join("nope.d"))),
    );
    let existing = fs::read_dir(dir)
        .ok()
        .and_then(|mut rd| rd.find_map(|e| e.ok().map(|e| e.path())));
    match existing {
        Some(p) => {
            r.record(
                "fs_ro.chmod",
                erofs(
                    "chmod",
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)),
                ),
            );
            r.record("fs_ro.unlink", erofs("unlink", fs::remove_file(&p)));
        }
        None => r.record(
            "fs_ro.existing",
            Outcome::Skip("the volume is empty".into()),
        ),
    }
}

/// `--fs-bench DIR`: sequential write (fsync'd) and read of `mib` MiB, then create, stat and
/// delete `files` small files; prints one JSON object (MB/s, ops/s). Measures, asserts nothing.
pub fn bench(dir: &Path, mib: usize, files: usize) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    use std::time::Instant;
    let work = dir.join(format!("fsbench-{}", std::process::id()));
    io("mkdir", fs::create_dir_all(&work))?;
    let path = work.join("seq");
    let chunk = vec![0x5au8; 1 << 20];
    let t0 = Instant::now();
    let mut f = io("create", File::create(&path))?;
    for _ in 0..mib {
        io("write", f.write_all(&chunk))?;
    }
    io("fsync", f.sync_all())?;
    let write_s = t0.elapsed().as_secs_f64();
    // Drop the file's clean pages so the read comes from the filesystem, not the page cache.
    // SAFETY: posix_fadvise on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(f);
    let t0 = Instant::now();
    let mut f = io("open", File::open(&path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = io("read", f.read(&mut buf))?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let read_s = t0.elapsed().as_secs_f64();
    io("remove", fs::remove_file(&path))?;
    let t0 = Instant::now();
    for i in 0..files {
        io("create small", fs::write(work.join(format!("f{i}")), b"x"))?;
    }
    let create_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..files {
        io("stat", fs::metadata(work.join(format!("f{i}"))))?;
    }
    let stat_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..files {
        io("delete", fs::remove_file(work.join(format!("f{i}"))))?;
    }
    let delete_s = t0.elapsed().as_secs_f64();
    io("rmdir", fs::remove_dir(&work))?;
    let mb = (mib << 20) as f64 / 1e6;
    let ops = |s: f64| if s > 0.0 { files as f64 / s } else { 0.0 };
    Ok(serde_json::json!({
        "write_mb_s": mb / write_s.max(1e-9),
        "read_mb_s": (total as f64 / 1e6) / read_s.max(1e-9),
        "create_ops_s": ops(create_s),
        "stat_ops_s": ops(stat_s),
        "delete_ops_s": ops(delete_s),
    })
    .to_string())
}

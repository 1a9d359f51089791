//! `--fuse-mount DIR`: a real FUSE mount through /dev/fuse, served by a minimal in-process
//! filesystem (an empty root folder), to show the guest kernel gives containers FUSE.
//!
//! The kernel's side: open /dev/fuse, mount type `fuse` with `fd=N`, answer INIT, then answer
//! GETATTR of the root so `stat` on the mount point shows the filesystem's own root
//! (inode 1, mode 0755 folder); every other request gets ENOSYS. Unmounting ends the session.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const FUSE_GETATTR: u32 = 3;
const FUSE_INIT: u32 = 26;
const FUSE_DESTROY: u32 = 38;
/// struct fuse_in_header.
const IN_HEADER_LEN: usize = 40;
/// struct fuse_out_header.
const OUT_HEADER_LEN: usize = 16;
/// The protocol minor answered in INIT: 7.31 (every field of fuse_init_out up to max_pages).
const MINOR: u32 = 31;
const ROOT_INO: u64 = 1;

fn reply(dev: &mut std::fs::File, unique: u64, error: i32, body: &[u8]) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(OUT_HEADER_LEN + body.len());
    msg.extend_from_slice(&((OUT_HEADER_LEN + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&error.to_ne_bytes());
    msg.extend_from_slice(&unique.to_ne_bytes());
    msg.extend_from_slice(body);
    dev.write_all(&msg)
}

/// struct fuse_init_out (64 bytes from 7.23 on): major, minor, max_readahead, flags,
/// max_background, congestion_threshold, max_write, time_gran, max_pages, map_alignment,
/// flags2, unused[7].
fn init_out() -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&7u32.to_ne_bytes());
    b.extend_from_slice(&MINOR.to_ne_bytes());
    b.extend_from_slice(&(128u32 << 10).to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&16u16.to_ne_bytes());
    b.extend_from_slice(&12u16.to_ne_bytes());
    b.extend_from_slice(&(128u32 << 10).to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes());
    b.extend_from_slice(&32u16.to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.resize(64, 0);
    b
}

/// struct fuse_attr_out: attr_valid, attr_valid_nsec, dummy, then struct fuse_attr of the
/// root folder (ino, size, blocks, a/m/ctime, their nsecs, mode, nlink, uid, gid, rdev,
/// blksize, flags).
fn root_attr_out() -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    b.extend_from_slice(&1u64.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&ROOT_INO.to_ne_bytes());
    b.extend_from_slice(&[0u8; 8 * 5]);
    b.extend_from_slice(&[0u8; 4 * 3]);
    b.extend_from_slice(&(libc::S_IFDIR | 0o755).to_ne_bytes());
    b.extend_from_slice(&2u32.to_ne_bytes());
    b.extend_from_slice(&[0u8; 4 * 3]);
    b.extend_from_slice(&4096u32.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// Answers requests until the session ends (the read fails once unmounted).
fn serve(mut dev: std::fs::File) {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match dev.read(&mut buf) {
            Ok(n) if n >= IN_HEADER_LEN => {}
            _ => return,
        }
        let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let opcode = word(4);
        let mut unique = [0u8; 8];
        unique.copy_from_slice(&buf[8..16]);
        let unique = u64::from_ne_bytes(unique);
        let sent = match opcode {
            FUSE_INIT => reply(&mut dev, unique, 0, &init_out()),
            FUSE_GETATTR => reply(&mut dev, unique, 0, &root_attr_out()),
            FUSE_DESTROY => return,
            _ => reply(&mut dev, unique, -libc::ENOSYS, &[]),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Mounts, stats the root through the filesystem, unmounts; prints one line per step.
pub fn mount_and_check(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("opening /dev/fuse: {e}"))?;
    let options = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
    nix::mount::mount(
        Some("kata-fuse-probe"),
        dir,
        Some("fuse"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| format!("mount -t fuse on {}: {e}", dir.display()))?;
    println!("fuse: mounted on {}", dir.display());
    let server = dev
        .try_clone()
        .map_err(|e| format!("duplicating the /dev/fuse fd: {e}"))?;
    let serving = std::thread::spawn(move || serve(server));
    let stat = std::fs::metadata(dir);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let listed = mountinfo.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|fs| fs.starts_with("fuse "))
            && l.split(' ').nth(4) == dir.to_str()
    });
    let unmounted = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    drop(dev);
    let _ = serving.join();
    let stat = stat.map_err(|e| format!("stat through the fuse mount: {e}"))?;
    if stat.ino() != ROOT_INO || !stat.is_dir() {
        return Err(format!(
            "stat through the fuse mount: inode {} folder {} (want inode {ROOT_INO}, a folder)",
            stat.ino(),
            stat.is_dir()
        ));
    }
    println!("fuse: root inode {} mode {:o}", stat.ino(), stat.mode());
    if !listed {
        return Err("the fuse mount is not in /proc/self/mountinfo".into());
    }
    unmounted.map_err(|e| format!("unmounting {}: {e}", dir.display()))?;
    println!("fuse: unmounted");
    Ok(())
}

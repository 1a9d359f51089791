//! kata-spec-checker: a static binary placed in a bundle's rootfs and run as the container's
//! process (`kata-spec-checker /spec.json`, the bundle's config.json copied into the rootfs).
//! It reads the spec and checks, from inside, that the runtime applied it, in the spirit of
//! youki's runtimetest and the OCI runtime-tools validation.
//!
//! Output: one line per check on stdout, `PASS <check>`, `FAIL <check>: <expected vs actual>`
//! or `SKIP <check>: <why>`. A field the spec does not set is not checked. `--fs DIR` and
//! `--fs-ro DIR` check file semantics in a (shared) folder instead; `--hold-mem MIB` holds that
//! much resident memory until killed (`--hold-mem-locked MIB`: mlocked, own text included); `--fuse-mount DIR` mounts and
//! serves a FUSE filesystem there through /dev/fuse; `--tcp-send HOST:PORT MIB` sends zeros in
//! 256 KiB writes (the network benchmark's sender). Exit status 0 when
//! nothing failed, 1 otherwise, 2 on bad usage.

mod caps;
mod cgroups;
mod fs;
mod fuse;
mod linux;
mod mounts;
mod process;
mod procfs;
mod report;
mod seccomp;

use oci_spec::runtime::Spec;
use report::{Outcome, Report};

/// Allocates `mib` MiB, writes every page (so it is resident, not just reserved), says so on
/// stdout and sleeps until killed: a known amount of container memory for the stats tests.
fn hold_memory(mib: usize) -> ! {
    let mut block = vec![0u8; mib << 20];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    println!("holding {mib} MiB");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        // Keeps the block alive (and its pages touched) for the optimizer's sake.
        std::hint::black_box(&block);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut report = Report::default();
    match args.as_slice() {
        [_, flag, dir] if flag == "--fs" => fs::check_rw(std::path::Path::new(dir), &mut report),
        [_, flag, dir] if flag == "--fs-ro" => fs::check_ro(std::path::Path::new(dir), &mut report),
        [_, flag, dir, mib, files] if flag == "--fs-bench" => {
            let (Ok(mib), Ok(files)) = (mib.parse(), files.parse()) else {
                eprintln!("usage: kata-spec-checker --fs-bench DIR MIB FILES");
                std::process::exit(2);
            };
            match fs::bench(std::path::Path::new(dir), mib, files) {
                Ok(json) => {
                    println!("{json}");
                    std::process::exit(0);
                }
                Err(e) => {
                    eprintln!("kata-spec-checker: {e}");
                    std::process::exit(1);
                }
            }
        }
        [_, flag, addr, mib] if flag == "--tcp-send" => {
            // MIB MiB of zeros to ADDR (host:port) in 256 KiB writes: a sender whose cost per
            // byte is the network path's, not that of many small syscalls.
            let Ok(mib) = mib.parse::<usize>() else {
                eprintln!("usage: kata-spec-checker --tcp-send HOST:PORT MIB");
                std::process::exit(2);
            };
            let sent = std::net::TcpStream::connect(addr.as_str()).and_then(|mut s| {
                let block = vec![0u8; 256 << 10];
                for _ in 0..mib * 4 {
                    std::io::Write::write_all(&mut s, &block)?;
                }
                s.shutdown(std::net::Shutdown::Write)
            });
            match sent {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("kata-spec-checker: sending to {addr}: {e}");
                    std::process::exit(1);
                }
            }
        }
        [_, flag, dir] if flag == "--fuse-mount" => {
            match fuse::mount_and_check(std::path::Path::new(dir)) {
                Ok(()) => std::process::exit(0),
                Err(e) => {
                    eprintln!("kata-spec-checker: {e}");
                    std::process::exit(1);
                }
            }
        }
        [_, flag, mib] if flag == "--hold-mem" || flag == "--hold-mem-locked" => {
            let Ok(mib) = mib.parse::<usize>() else {
                eprintln!("usage: kata-spec-checker --hold-mem[-locked] MIB");
                std::process::exit(2);
            };
            if flag == "--hold-mem-locked" {
                // Every page, this program's own text included, stays resident: past a memory
                // limit the kernel can only OOM-kill, never thrash on reclaimable pages.
                // SAFETY: mlockall has no memory-safety preconditions.
                if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
                    eprintln!("mlockall: {}", std::io::Error::last_os_error());
                    std::process::exit(1);
                }
            }
            hold_memory(mib)
        }
        [_, path] => match Spec::load(path) {
            Ok(spec) => run_all(&spec, &mut report),
            Err(e) => report.record("spec", Outcome::Fail(format!("reading {path}: {e}"))),
        },
        _ => {
            eprintln!(
                "usage: kata-spec-checker SPEC.json | --fs DIR | --fs-ro DIR | --fs-bench DIR MIB FILES | --hold-mem[-locked] MIB | --fuse-mount DIR | --tcp-send HOST:PORT MIB"
            );
            std::process::exit(2);
        }
    }
    eprintln!(
        "kata-spec-checker: {} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    std::process::exit(if report.failed == 0 { 0 } else { 1 });
}

/// Every group, in the order of the spec's fields. Checks that only read come first; the
/// probes that try to write (read-only root and paths) and the seccomp probes come last.
fn run_all(spec: &Spec, r: &mut Report) {
    if let Some(p) = spec.process() {
        process::check(p, r);
    }
    linux::check_uts(spec, r);
    mounts::check_mounts(spec, r);
    if let Some(l) = spec.linux() {
        linux::check_namespaces(l, r);
        linux::check_sysctl(l, r);
        linux::check_devices(l, r);
        mounts::check_masked_paths(l, r);
        cgroups::check(l, r);
    }
    mounts::check_root(spec, r);
    if let Some(l) = spec.linux() {
        mounts::check_readonly_paths(l, r);
        seccomp::check(l, r);
    }
}

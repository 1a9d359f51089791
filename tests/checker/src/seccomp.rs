//! `linux.seccomp`: a filter is installed (Seccomp: 2), and each SCMP_ACT_ERRNO rule without
//! argument conditions that names a syscall we can call harmlessly returns its errno.
//!
//! Every probe is chosen so that, unfiltered, it succeeds or fails with a known errno and has no
//! lasting effect: the path calls aim below a folder that does not exist (ENOENT), sethostname
//! sets the current name again.

use crate::caps;
use crate::procfs;
use crate::report::{Outcome, Report};
use oci_spec::runtime::{Linux, LinuxSeccompAction};
use std::ffi::CString;

const MISSING: &str = "/.kata-spec-checker-nonexistent/probe";

pub fn check(l: &Linux, r: &mut Report) {
    let Some(sc) = l.seccomp() else { return };
    r.record(
        "linux.seccomp",
        procfs::status_field("Seccomp").map(|v| Outcome::expect_eq("2", v.as_str())),
    );
    for rule in sc.syscalls().iter().flatten() {
        if rule.action() != LinuxSeccompAction::ScmpActErrno {
            continue;
        }
        let conditional = rule.args().as_ref().is_some_and(|a| !a.is_empty());
        // The OCI default for errnoRet is EPERM.
        let want = rule.errno_ret().map_or(libc::EPERM, |e| e as i32);
        for name in rule.names() {
            let Some(natural) = natural_result(name) else {
                continue;
            };
            let check = format!("linux.seccomp {name}");
            if conditional {
                r.record(
                    &check,
                    Outcome::Skip("the rule has argument conditions".into()),
                );
                continue;
            }
            if natural == Err(want) {
                r.record(
                    &check,
                    Outcome::Skip(format!(
                        "errno {want} is what {name} returns here unfiltered too"
                    )),
                );
                continue;
            }
            let got = probe(name);
            let outcome = match got {
                Err(e) if e == want => Outcome::Pass,
                Ok(()) => Outcome::Fail(format!("{name} succeeded, expected errno {want}")),
                Err(e) => Outcome::Fail(format!(
                    "{name} failed with errno {e} ({}), expected errno {want}",
                    std::io::Error::from_raw_os_error(e)
                )),
            };
            r.record(&check, outcome);
        }
    }
}

/// What the probe of `name` gives without a filter; None for syscalls we do not probe.
fn natural_result(name: &str) -> Option<Result<(), i32>> {
    match name {
        "getcwd" | "uname" => Some(Ok(())),
        "mkdirat" | "fchmodat" => Some(Err(libc::ENOENT)),
        #[cfg(target_arch = "x86_64")]
        "mkdir" | "chmod" => Some(Err(libc::ENOENT)),
        "sethostname" => {
            let admin =
                procfs::status_mask("CapEff").is_ok_and(|m| m & (1u64 << caps::CAP_SYS_ADMIN) != 0);
            Some(if admin { Ok(()) } else { Err(libc::EPERM) })
        }
        _ => None,
    }
}

/// Calls the syscall itself (no libc wrapper that might pick another one).
fn probe(name: &str) -> Result<(), i32> {
    let missing = CString::new(MISSING).map_err(|_| libc::EINVAL)?;
    let mut buf = [0u8; 4096];
    // SAFETY: raw syscalls with valid pointers to buffers and strings that outlive the calls.
    let rc = unsafe {
        match name {
            "getcwd" => libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()),
            "uname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                libc::syscall(libc::SYS_uname, &mut u as *mut libc::utsname)
            }
            "mkdirat" => libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, missing.as_ptr(), 0o700),
            "fchmodat" => {
                libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, missing.as_ptr(), 0o700)
            }
            #[cfg(target_arch = "x86_64")]
            "mkdir" => libc::syscall(libc::SYS_mkdir, missing.as_ptr(), 0o700),
            #[cfg(target_arch = "x86_64")]
            "chmod" => libc::syscall(libc::SYS_chmod, missing.as_ptr(), 0o700),
            "sethostname" => {
                let (node, _) = crate::linux::uname().map_err(|_| libc::EINVAL)?;
                libc::syscall(libc::SYS_sethostname, node.as_ptr(), node.len())
            }
            _ => return Err(libc::ENOSYS),
        }
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(())
    }
}

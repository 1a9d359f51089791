//! Decides between KVM and TCG, because "/dev/kvm exists" is not proof that KVM works.
//!
//! On nested or paravirtualised hosts (e.g. PVM, `kvm_pvm`), a toy KVM guest runs
//! fine while a real kernel's privileged instructions are emulated ~1000x slower and
//! the guest effectively hangs. So: cheap checks first (no /dev/kvm, PVM module, no
//! vmx/svm CPU flag → TCG), then a timed probe: a minimal KVM guest runs a
//! 10-million-iteration `dec ecx; jnz` loop and halts. Real hardware KVM finishes
//! in milliseconds; we allow [`PROBE_BUDGET`]. The verdict is cached per boot.
//!
//! Design choice — the probe runs in a **forked child**, not a thread: a vCPU stuck
//! in `KVM_RUN` can only be interrupted by a signal, and a thread cannot be killed
//! without installing a process-wide signal handler behind the caller's back. A
//! child can simply be SIGKILLed when the budget runs out. The child is forked
//! (not exec'd) so the runtime binary needs no hidden subcommand; because the
//! parent may be multi-threaded, the child only makes raw syscalls (open, ioctl,
//! mmap, _exit): no allocation, no locks, no Rust runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Accel;
pub use crate::kvm_guest::guest_code;
use crate::kvm_guest::{describe_child_code, probe_child, CODE_ADDR, GUEST_MEM};

/// Loop iterations of the probe guest.
pub const PROBE_ITERATIONS: u32 = 10_000_000;
/// Time the probe guest gets (set-up included) before KVM is declared too slow.
pub const PROBE_BUDGET: Duration = Duration::from_secs(2);
/// Cache file name inside the cache folder.
pub const CACHE_FILE: &str = "kvm-probe";

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Picks the accelerator and says why (the reason is meant for logs and `kata-check`-like output).
pub fn choose_accel(cache_dir: &Path) -> (Accel, String) {
    let (accel, reason) = decide(cache_dir);
    log::info!("accelerator {accel}: {reason}");
    (accel, reason)
}

fn decide(cache_dir: &Path) -> (Accel, String) {
    if !Path::new("/dev/kvm").exists() {
        return (Accel::Tcg, "/dev/kvm does not exist".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return (
            Accel::Tcg,
            "/dev/kvm is provided by kvm_pvm (paravirtualised KVM): real guest kernels run ~1000x slower there".into(),
        );
    }
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(info) if !cpu_has_virt_flag(&info) => return (
            Accel::Tcg,
            "no vmx/svm flag in /proc/cpuinfo: /dev/kvm is not backed by hardware virtualisation"
                .into(),
        ),
        Ok(_) => {}
        // Not fatal: the timed probe below decides on its own.
        Err(e) => log::warn!("cannot read /proc/cpuinfo ({e}); relying on the timed KVM probe"),
    }

    let boot_id = std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_string());
    if let Some(boot_id) = &boot_id {
        if let Some(cached) = read_cache(cache_dir, boot_id) {
            return (
                cached.accel,
                format!("{} (cached for this boot)", cached.reason),
            );
        }
    }

    let code = guest_code(PROBE_ITERATIONS);
    let (accel, reason, cacheable) = match run_probe(&code, PROBE_BUDGET) {
        ProbeOutcome::Completed(t) => (
            Accel::Kvm,
            format!("KVM probe guest ran {PROBE_ITERATIONS} loop iterations in {t:.2?} (budget {PROBE_BUDGET:?})"),
            true,
        ),
        ProbeOutcome::TimedOut(t) => (
            Accel::Tcg,
            format!("KVM probe guest did not finish {PROBE_ITERATIONS} loop iterations within {t:.2?}: KVM is too slow here (nested or paravirtualised?)"),
            true,
        ),
        // Not cached: a failure may be transient (permissions, memory) and is cheap to redo.
        ProbeOutcome::Failed(why) => (Accel::Tcg, format!("KVM probe failed: {why}"), false),
    };
    if let (true, Some(boot_id)) = (cacheable, &boot_id) {
        write_cache(cache_dir, boot_id, accel, &reason);
    }
    (accel, reason)
}

fn cpu_has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    boot_id: String,
    accel: Accel,
    reason: String,
}

fn read_cache(cache_dir: &Path, boot_id: &str) -> Option<CacheEntry> {
    let content = std::fs::read_to_string(cache_dir.join(CACHE_FILE)).ok()?;
    let entry: CacheEntry = serde_json::from_str(&content).ok()?;
    // A verdict from an earlier boot may be stale (module options, nested setting).
    (entry.boot_id == boot_id && entry.accel != Accel::Auto).then_some(entry)
}

fn write_cache(cache_dir: &Path, boot_id: &str, accel: Accel, reason: &str) {
    let entry = CacheEntry {
        boot_id: boot_id.to_string(),
        accel,
        reason: reason.to_string(),
    };
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(cache_dir)?;
        let json = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = cache_dir.join(format!("{CACHE_FILE}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, cache_dir.join(CACHE_FILE))
    })();
    if let Err(e) = result {
        // The cache only saves time; failing to write it is not an error.
        log::warn!(
            "cannot write KVM probe cache in {}: {e}",
            cache_dir.display()
        );
    }
}

/// What one probe run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The guest reached `hlt` with ecx == 0 within the budget.
    Completed(Duration),
    /// The budget ran out; the child was killed.
    TimedOut(Duration),
    /// KVM could not run the guest at all.
    Failed(String),
}

/// Largest guest code `run_probe` accepts (it is copied onto the stack before fork).
const MAX_CODE: usize = 256;
// probe_child copies the code to CODE_ADDR inside GUEST_MEM bytes of guest RAM.
const _: () = assert!(MAX_CODE <= GUEST_MEM - CODE_ADDR as usize);

/// Runs `code` in a fresh KVM guest (real mode, at 0x1000) in a forked child and
/// waits at most `budget`.
pub fn run_probe(code: &[u8], budget: Duration) -> ProbeOutcome {
    if code.is_empty() || code.len() > MAX_CODE {
        return ProbeOutcome::Failed(format!("guest code must be 1..={MAX_CODE} bytes"));
    }
    // Everything the child needs is prepared before fork: it must not allocate.
    let mut buf = [0u8; MAX_CODE];
    buf[..code.len()].copy_from_slice(code);
    let len = code.len();

    let start = Instant::now();
    // SAFETY: after fork the child runs only `probe_child`, which makes raw syscalls
    // on stack data and ends in `_exit`, so it never touches locks that another
    // parent thread might have held at fork time.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return ProbeOutcome::Failed(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; `buf` is valid for `len` bytes.
        unsafe {
            let rc = probe_child(buf.as_ptr(), len);
            libc::_exit(rc)
        }
    }
    match wait_child(pid, budget, start) {
        ChildEnd::Exited(0, t) => ProbeOutcome::Completed(t),
        ChildEnd::Exited(code, _) => ProbeOutcome::Failed(describe_child_code(code)),
        ChildEnd::Signaled(sig) => {
            ProbeOutcome::Failed(format!("probe child killed by signal {sig}"))
        }
        ChildEnd::TimedOut(t) => ProbeOutcome::TimedOut(t),
        ChildEnd::WaitFailed(e) => ProbeOutcome::Failed(format!("waitpid: {e}")),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ChildEnd {
    Exited(i32, Duration),
    Signaled(i32),
    TimedOut(Duration),
    WaitFailed(String),
}

/// Waits for our child `pid` until `start + budget`; on timeout SIGKILLs and reaps it.
fn wait_child(pid: i32, budget: Duration, start: Instant) -> ChildEnd {
    let deadline = start + budget;
    loop {
        let mut status = 0;
        // SAFETY: WNOHANG wait on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            if libc::WIFEXITED(status) {
                return ChildEnd::Exited(libc::WEXITSTATUS(status), start.elapsed());
            }
            if libc::WIFSIGNALED(status) {
                return ChildEnd::Signaled(libc::WTERMSIG(status));
            }
            continue; // stopped/continued: keep waiting
        }
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return ChildEnd::WaitFailed(e.to_string());
        }
        let now = Instant::now();
        if now >= deadline {
            // SAFETY: pid is our unreaped child, so it cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                // Blocking reap: SIGKILL ends even a vCPU inside KVM_RUN promptly.
                libc::waitpid(pid, &mut status, 0);
            }
            return ChildEnd::TimedOut(start.elapsed());
        }
        // Real KVM finishes in a few ms, so poll finely at first.
        std::thread::sleep(Duration::from_millis(2).min(deadline - now));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kvm_guest::{EXIT_REASON_BASE, STEP_CREATE_VM};

    fn fork_child(body: fn() -> !) -> i32 {
        // SAFETY: the child only calls async-signal-safe functions and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            body();
        }
        pid
    }

    #[test]
    fn wait_child_kills_a_child_that_overruns_the_budget() {
        // SAFETY: pause and _exit are async-signal-safe.
        let pid = fork_child(|| unsafe {
            libc::pause();
            libc::_exit(0)
        });
        let start = Instant::now();
        let end = wait_child(pid, Duration::from_millis(100), start);
        let elapsed = start.elapsed();
        assert!(matches!(end, ChildEnd::TimedOut(_)), "{end:?}");
        assert!(
            elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        // Reaped: waiting again finds no such child.
        let mut status = 0;
        // SAFETY: plain syscall.
        assert_eq!(
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) },
            -1
        );
    }

    #[test]
    fn wait_child_reports_exit_codes() {
        // SAFETY: _exit is async-signal-safe.
        let pid = fork_child(|| unsafe { libc::_exit(STEP_CREATE_VM) });
        let end = wait_child(pid, Duration::from_secs(5), Instant::now());
        assert!(
            matches!(end, ChildEnd::Exited(STEP_CREATE_VM, _)),
            "{end:?}"
        );
        assert!(describe_child_code(STEP_CREATE_VM).contains("KVM_CREATE_VM"));
        assert!(describe_child_code(EXIT_REASON_BASE + 9).contains("exit reason 9"));
    }

    #[test]
    fn probe_never_completes_a_guest_that_never_halts() {
        // `jmp $`: whatever KVM is (absent, PVM, hardware), this must not count as fast.
        let outcome = run_probe(&[0xeb, 0xfe], Duration::from_millis(300));
        eprintln!("jmp $ probe: {outcome:?}");
        assert!(
            !matches!(outcome, ProbeOutcome::Completed(_)),
            "{outcome:?}"
        );
        if Path::new("/dev/kvm").exists() {
            // Informational: how this host runs a short loop.
            eprintln!(
                "1000-iteration probe: {:?}",
                run_probe(&guest_code(1000), Duration::from_secs(1))
            );
        }
    }

    #[test]
    fn full_probe_agrees_with_the_cheap_pvm_check() {
        // The cheap check short-circuits choose_accel on PVM hosts; this runs the real
        // probe anyway to show the two verdicts agree (costs up to PROBE_BUDGET).
        if !Path::new("/dev/kvm").exists() {
            eprintln!("no /dev/kvm: nothing to probe");
            return;
        }
        let outcome = run_probe(&guest_code(PROBE_ITERATIONS), PROBE_BUDGET);
        eprintln!("full probe: {outcome:?}");
        if Path::new("/sys/module/kvm_pvm").exists() {
            assert!(
                !matches!(outcome, ProbeOutcome::Completed(_)),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn cache_is_keyed_by_boot_id() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), "boot-a", Accel::Kvm, "fast");
        let hit = read_cache(dir.path(), "boot-a").unwrap();
        assert_eq!((hit.accel, hit.reason.as_str()), (Accel::Kvm, "fast"));
        assert!(read_cache(dir.path(), "boot-b").is_none());
    }

    #[test]
    fn cpuinfo_flag_detection() {
        assert!(cpu_has_virt_flag(
            "processor: 0\nflags\t\t: fpu vme vmx sse\n"
        ));
        assert!(!cpu_has_virt_flag("flags\t\t: fpu vme sse vmxx\n"));
    }

    #[test]
    fn choose_accel_on_this_host_answers_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let (accel, reason) = choose_accel(dir.path());
        eprintln!("choose_accel: {accel} ({reason}) in {:?}", start.elapsed());
        assert_ne!(accel, Accel::Auto);
        assert!(!reason.is_empty());
        assert!(start.elapsed() < PROBE_BUDGET + Duration::from_secs(1));
    }
}

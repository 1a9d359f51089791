//! Memory the guest frees goes back to the host (`reclaim_guest_freed_memory`, on by default:
//! a virtio-balloon with free page reporting). A process in the container touches 96 MiB and
//! exits; QEMU's resident memory rises by about that much and, within seconds, falls back.
//! With reclaiming off, the same run leaves QEMU holding the memory: the test checks both, so
//! it fails if reporting stops working.

use e2e_tests::Env;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
const TOUCH_MIB: u64 = 96;

fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn qemu_pid(env: &Env, id: &str) -> i32 {
    let pid_file = Path::new(env.path()).join("vm").join(id).join("qemu.pid");
    std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap()
}

/// (RSS before, peak seen right after the toucher exits, lowest within 20 s after), MiB.
fn touch_and_watch(reclaim: bool) -> (u64, u64, u64) {
    let env = Env::new();
    let config = std::fs::read_to_string(env.path().join("configuration.toml")).unwrap();
    std::fs::write(
        env.path().join("configuration.toml"),
        format!("{config}[hypervisor.qemu]\nreclaim_guest_freed_memory = {reclaim}\ndefault_memory = 384\n"),
    )
    .unwrap();
    let b = env.bundle("rec", &["sleep", "1000"]);
    let out = env.run(
        &["run", "-d", "--bundle", b.to_str().unwrap(), "rec"],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let pid = qemu_pid(&env, "rec");
    std::thread::sleep(Duration::from_secs(4));
    let before = rss_mib(pid);
    // busybox dd allocates its block and fills it from /dev/zero: every page touched.
    let out = env.run(
        &[
            "exec",
            "rec",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            &format!("bs={TOUCH_MIB}M"),
            "count=1",
        ],
        b"",
        T,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let peak = rss_mib(pid);
    let start = Instant::now();
    let mut lowest = peak;
    while start.elapsed() < Duration::from_secs(20) {
        lowest = lowest.min(rss_mib(pid));
        if reclaim && lowest + TOUCH_MIB / 2 < peak {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = env.run(&["delete", "--force", "rec"], b"", T);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    env.assert_clean();
    (before, peak, lowest)
}

#[test]
fn vm_freed_guest_memory_goes_back_to_the_host() {
    let (before, peak, lowest) = touch_and_watch(true);
    println!("reclaim on: QEMU RSS {before} MiB, after the toucher {peak}, then {lowest}");
    assert!(
        peak >= before + TOUCH_MIB / 2,
        "the toucher did not show in QEMU's RSS: {before} -> {peak}"
    );
    assert!(
        lowest + TOUCH_MIB / 2 < peak,
        "freed guest memory stayed with QEMU: {before} -> {peak} -> {lowest} MiB"
    );

    let (before, peak, lowest) = touch_and_watch(false);
    println!("reclaim off: QEMU RSS {before} MiB, after the toucher {peak}, then {lowest}");
    assert!(
        lowest >= before + TOUCH_MIB / 2,
        "without reclaiming, QEMU still gave memory back ({before} -> {peak} -> {lowest}): \
         the test above would not show reporting works"
    );
}

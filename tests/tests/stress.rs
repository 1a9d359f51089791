//! Stress: many create/start/delete cycles in a row, each followed by the leak check. Run by
//! `make test-stress` (these are `#[ignore]`d in `make test`: 100 VM boots take minutes);
//! `STRESS_CYCLES` changes the count.

use e2e_tests::Env;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

#[test]
#[ignore = "minutes long: make test-stress"]
fn sequential_create_start_delete_cycles() {
    let cycles: usize = std::env::var("STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let env = Env::new();
    let b = env.bundle("cycle", &["true"]);
    let mut times = Vec::with_capacity(cycles);
    for i in 0..cycles {
        let id = format!("cycle-{i}");
        let start = Instant::now();
        let out = env.run(&["create", "--bundle", b.to_str().unwrap(), &id], b"", T);
        assert_eq!(out.code(), 0, "cycle {i}: create: {}", out.stderr);
        let out = env.run(&["start", &id], b"", T);
        assert_eq!(out.code(), 0, "cycle {i}: start: {}", out.stderr);
        // `true` exits at once; a plain delete (no --force) must then succeed.
        let deadline = Instant::now() + Duration::from_secs(30);
        while env.status(&id) != "stopped" {
            assert!(Instant::now() < deadline, "cycle {i}: never stopped");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = env.run(&["delete", &id], b"", T);
        assert_eq!(out.code(), 0, "cycle {i}: delete: {}", out.stderr);
        times.push(start.elapsed());
        env.assert_clean();
    }
    times.sort();
    println!(
        "{cycles} create/start/delete cycles: min {:.2?}, median {:.2?}, max {:.2?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

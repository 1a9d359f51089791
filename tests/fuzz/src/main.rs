//! kata-fuzz: feeds mutated inputs to the parsers that take input from outside the runtime —
//! what a caller writes (config.json, process.json, annotations), what an administrator writes
//! (the configuration file), what sits on disk between calls (state records) and what the
//! untrusted guest sends back (console lines, network answers). A panic, or an input that
//! takes longer than [`SLOW`], is a failure: the input is saved next to the corpus and the
//! run exits 1.
//!
//! Not coverage-guided (that needs nightly's sanitizers): each round takes a corpus input,
//! applies a few random mutations (bit flips, byte edits, interesting tokens, splices with
//! another input) and runs the target. Inputs a target accepts join the in-memory corpus, so
//! mutations go on from valid documents.
//!
//! usage: kata-fuzz [--seconds N] [--seed S] CORPUS_DIR [TARGET...]

mod mutate;
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One input taking this long is a hang.
const SLOW: Duration = Duration::from_secs(5);
/// Inputs kept in memory per target (seeds plus accepted mutants).
const MAX_CORPUS: usize = 2000;
/// Largest input tried: bounds memory, and the runtime's own reads are bounded lower.
const MAX_INPUT: usize = 64 * 1024;

struct Args {
    seconds: u64,
    seed: u64,
    corpus: PathBuf,
    targets: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut seconds = 10;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut corpus = None;
    let mut targets = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seed needs a number")?
            }
            _ if corpus.is_none() => corpus = Some(PathBuf::from(a)),
            _ => targets.push(a),
        }
    }
    let corpus = corpus.ok_or("missing CORPUS_DIR")?;
    if targets.is_empty() || targets.iter().any(|t| t == "all") {
        targets = targets::NAMES.iter().map(|s| s.to_string()).collect();
    }
    for t in &targets {
        if !targets::NAMES.contains(&t.as_str()) {
            return Err(format!(
                "unknown target {t:?} (known: {})",
                targets::NAMES.join(", ")
            ));
        }
    }
    Ok(Args {
        seconds,
        seed,
        corpus,
        targets,
    })
}

fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kata-fuzz: {e}\nusage: kata-fuzz [--seconds N] [--seed S] CORPUS_DIR [TARGET...|all]");
            std::process::exit(2);
        }
    };
    // Panics are caught and reported with their input; the default hook's message is noise.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = false;
    for name in &args.targets {
        let dir = args.corpus.join(name);
        let mut corpus = seeds(&dir);
        if corpus.is_empty() {
            eprintln!("kata-fuzz: {name}: no seed inputs in {}", dir.display());
            std::process::exit(2);
        }
        let seed_count = corpus.len();
        let mut rng = mutate::Rng::new(args.seed ^ mutate::hash(name.as_bytes()));
        let mut target = targets::Target::new(name);
        let budget = Duration::from_secs(args.seconds);
        let start = Instant::now();
        let (mut runs, mut accepted) = (0u64, 0u64);
        while start.elapsed() < budget {
            let base = &corpus[rng.below(corpus.len())];
            let other = &corpus[rng.below(corpus.len())];
            let input = mutate::mutate(&mut rng, base, other, MAX_INPUT);
            let t0 = Instant::now();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(&input)));
            let took = t0.elapsed();
            runs += 1;
            let problem = match outcome {
                Err(panic) => Some(format!("panicked: {}", panic_text(&panic))),
                Ok(_) if took > SLOW => Some(format!("took {took:?}")),
                Ok(true) => {
                    accepted += 1;
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input.clone());
                    }
                    None
                }
                Ok(false) => None,
            };
            if let Some(problem) = problem {
                let out = args
                    .corpus
                    .join("crashes")
                    .join(format!("{name}-{:016x}", mutate::hash(&input)));
                let _ = std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")));
                let _ = std::fs::write(&out, &input);
                eprintln!(
                    "kata-fuzz: {name}: FAIL: {problem}; input saved to {} (seed {})",
                    out.display(),
                    args.seed
                );
                failed = true;
                break;
            }
        }
        println!(
            "kata-fuzz: {name}: {runs} inputs in {:.0?} ({} seeds, {accepted} accepted, --seed {}){}",
            start.elapsed(),
            seed_count,
            args.seed,
            if failed { "" } else { ", no crash" }
        );
    }
    std::process::exit(i32::from(failed));
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

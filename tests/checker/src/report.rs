//! The result lines and the tally.

pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    /// Pass when `actual == expected`, else a failure showing both.
    pub fn expect_eq<T: PartialEq + std::fmt::Debug>(expected: T, actual: T) -> Outcome {
        if expected == actual {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("expected {expected:?}, got {actual:?}"))
        }
    }

    /// This outcome, unless it passed and `ok` is false: then a failure saying `problem`.
    pub fn and(self, ok: bool, problem: &str) -> Outcome {
        match self {
            Outcome::Pass if !ok => Outcome::Fail(problem.to_string()),
            other => other,
        }
    }

    /// Pass when there is no problem, else a failure listing them.
    pub fn from_problems(problems: Vec<String>) -> Outcome {
        if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(problems.join("; "))
        }
    }
}

impl From<Result<Outcome, String>> for Outcome {
    /// An error while looking is a failure: the environment is not what the spec asks.
    fn from(r: Result<Outcome, String>) -> Outcome {
        r.unwrap_or_else(Outcome::Fail)
    }
}

#[derive(Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Report {
    /// Prints one line for `check` (kept to one line, whatever the texts hold).
    pub fn record(&mut self, check: &str, outcome: impl Into<Outcome>) {
        let check = one_line(check).replace(": ", " ");
        match outcome.into() {
            Outcome::Pass => {
                self.passed += 1;
                println!("PASS {check}");
            }
            Outcome::Fail(why) => {
                self.failed += 1;
                println!("FAIL {check}: {}", one_line(&why));
            }
            Outcome::Skip(why) => {
                self.skipped += 1;
                println!("SKIP {check}: {}", one_line(&why));
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

//! The agent's log: one line per record on its stderr, which is the guest console that the
//! host-side proxy records with the sandbox id.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            let line = format!("kata-agent {}: {}\n", level_name(r.level()), r.args());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// `agent.log=<level>` on the kernel command line; info by default.
pub fn level_from_cmdline() -> LevelFilter {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("agent.log="))
        .and_then(|l| l.parse().ok())
        .unwrap_or(LevelFilter::Info)
}

pub fn init(level: LevelFilter) {
    if log::set_logger(&ConsoleLogger).is_ok() {
        log::set_max_level(level);
    }
}

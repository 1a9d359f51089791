//! A tiny `log::Log`: one logfmt line per record, to a file (append) or stderr.
//!
//! `time=2024-02-29T12:00:00.123456789Z level=info source=proxy sandbox=ID msg="..."`
//! (the sandbox log's format, see the sandbox-log crate).
//!
//! Records logged with target `agent` (the agent's console lines) get `source=agent`, other
//! console lines (`guest`: the kernel's) `source=agent stream=console`. Each line goes out in
//! a single write on an O_APPEND file, so lines from several processes sharing a log file do
//! not interleave mid-line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use log::{LevelFilter, Log, Metadata, Record};

/// Target for guest console lines that are not the agent's (the kernel's).
pub const GUEST: &str = "guest";
/// Target for the agent's own records, read off the guest console.
pub const AGENT: &str = "agent";

enum Sink {
    File(File),
    Stderr,
}

struct Logger {
    sink: Sink,
    sandbox: String,
    level: LevelFilter,
}

/// Installs the logger for the whole process.
pub fn init(log_file: Option<&Path>, sandbox: &str, level: LevelFilter) -> io::Result<()> {
    let sink = match log_file {
        Some(path) => Sink::File(OpenOptions::new().create(true).append(true).open(path)?),
        None => Sink::Stderr,
    };
    let logger = Logger {
        sink,
        sandbox: sandbox.to_owned(),
        level,
    };
    // Leaked on purpose: the logger lives as long as the process (and `set_boxed_logger`
    // would need log's `std` feature).
    log::set_logger(Box::leak(Box::new(logger)))
        .map_err(|_| io::Error::other("a logger is already installed"))?;
    log::set_max_level(level);
    Ok(())
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Everything the guest prints on its console is the agent's side of the sandbox; the
        // kernel's lines are told apart from the agent's own records by `stream`.
        let (source, extra): (&str, &[(&str, &str)]) = match record.target() {
            AGENT => ("agent", &[]),
            GUEST => ("agent", &[("stream", "console")]),
            _ => ("proxy", &[]),
        };
        let line = sandbox_log::Line {
            level: record.level(),
            source,
            sandbox: &self.sandbox,
            container: "",
            extra,
            msg: &record.args().to_string(),
        }
        .render();
        // Nowhere to report a failing log write; dropping the record is all we can do.
        let _ = match &self.sink {
            Sink::File(file) => (&*file).write_all(line.as_bytes()),
            Sink::Stderr => io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

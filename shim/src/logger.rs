//! A tiny `log::Log` for the shim.
//!
//! Our stderr is the container's stderr, so by default only warnings and errors go there; with
//! `--log FILE` every line goes to the file instead. Lines are in the sandbox log's format
//! (sandbox-log crate) and name the sandbox, container and exec, so that `kata-runtime logs`
//! can merge them with the other components' lines.

use log::{LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

enum Sink {
    Stderr,
    File(File),
}

struct ShimLogger {
    sink: Sink,
    level: LevelFilter,
    debug: bool,
    sandbox: String,
    container: String,
    exec_id: String,
}

/// Who the log lines are about.
pub struct Ids<'a> {
    pub sandbox: &'a str,
    pub container: &'a str,
    pub exec_id: &'a str,
}

/// Installs the logger. `file`: where to append; `None` means stderr, warnings and up.
pub fn init(file: Option<&Path>, debug: bool, ids: &Ids) -> std::io::Result<()> {
    let (sink, level) = match file {
        Some(path) => {
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            (
                Sink::File(f),
                if debug {
                    LevelFilter::Debug
                } else {
                    LevelFilter::Info
                },
            )
        }
        None => (
            Sink::Stderr,
            if debug {
                LevelFilter::Debug
            } else {
                LevelFilter::Warn
            },
        ),
    };
    let logger = ShimLogger {
        sink,
        level,
        debug,
        sandbox: ids.sandbox.to_string(),
        container: ids.container.to_string(),
        exec_id: ids.exec_id.to_string(),
    };
    // Leaked on purpose: the logger lives as long as the process (set_boxed_logger needs log's
    // "std" feature, which the workspace does not enable).
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

impl Log for ShimLogger {
    fn enabled(&self, meta: &Metadata) -> bool {
        if meta.level() > self.level {
            return false;
        }
        // ttrpc logs at error level about things that are normal for us (a connection closing
        // under a pending call at exit), which would land on the container's stderr. Other
        // crates' records are only wanted when debugging.
        let ours =
            meta.target().starts_with("kata_shim") || meta.target().starts_with("agent_client");
        ours || self.debug
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // The init process's exec id is the container id: not worth repeating.
        let exec = if self.exec_id == self.container {
            ""
        } else {
            self.exec_id.as_str()
        };
        // One write per line: with O_APPEND, lines of concurrent shims do not interleave.
        let line = sandbox_log::Line {
            level: record.level(),
            source: "shim",
            sandbox: &self.sandbox,
            container: &self.container,
            extra: &[("exec", exec)],
            msg: &record.args().to_string(),
        }
        .render();
        // A failing log write has nowhere better to be reported; dropping it is all we can do.
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => (&*f).write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

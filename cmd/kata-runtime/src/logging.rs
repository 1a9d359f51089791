//! The runtime's log, in runc's formats: `--log FILE` gets every record at info (debug with
//! `--debug`); `--log-format json` writes one {"level","msg","time"} object per line, which is
//! what containerd reads from log.json to explain a failure.

use crate::cli::Global;
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

struct FileLogger {
    file: Mutex<std::fs::File>,
    json: bool,
}

impl Log for FileLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = r.level().as_str().to_ascii_lowercase();
        let time = timestamp();
        let msg = r.args().to_string();
        let line = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!(
                "time=\"{time}\" level={level} msg=\"{}\" source=runtime",
                msg.replace('"', "\\\"")
            )
        };
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
        }
    }

    fn flush(&self) {}
}

fn timestamp() -> String {
    sandbox::now_rfc3339()
}

pub fn init(g: &Global) {
    let Some(path) = g.log.as_ref() else {
        return;
    };
    let file = match open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kata-runtime: cannot open log file {}: {e}", path.display());
            return;
        }
    };
    let logger = Box::new(FileLogger {
        file: Mutex::new(file),
        json: g.log_format == "json",
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(if g.debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

fn open(path: &PathBuf) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

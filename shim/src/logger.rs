//! A tiny `log::Log` for the shim.
//!
//! Our stderr is the container's stderr, so by default only warnings and errors go there; with
//! `--log FILE` every line goes to the file instead. Each line names the container and exec so
//! that lines of many shims appended to one file can be told apart.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

enum Sink {
    Stderr,
    File(File),
}

struct ShimLogger {
    sink: Sink,
    level: LevelFilter,
    debug: bool,
    tag: String,
}

/// Installs the logger. `file`: where to append; `None` means stderr, warnings and up.
pub fn init(
    file: Option<&Path>,
    debug: bool,
    container: &str,
    exec_id: &str,
) -> std::io::Result<()> {
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
        tag: format!("container={container} exec={exec_id}"),
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
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // One write per line: with O_APPEND, lines of concurrent shims do not interleave.
        let line = format!(
            "{} {level} kata-shim {}: {}\n",
            timestamp(SystemTime::now()),
            self.tag,
            record.args()
        );
        // A failing log write has nowhere better to be reported; dropping it is all we can do.
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => (&*f).write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// RFC 3339 UTC with milliseconds, computed by hand to avoid a date crate for one format.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn timestamps() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 999), "2023-11-14T22:13:20.999Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000Z");
    }
}

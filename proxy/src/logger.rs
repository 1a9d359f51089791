//! A tiny `log::Log`: one logfmt line per record, to a file (append) or stderr.
//!
//! `time=2024-02-29T12:00:00.123Z level=info sandbox=ID source=proxy msg="..."`
//!
//! Records logged with target `guest` (console lines) get `source=guest`. Each line goes out
//! in a single write on an O_APPEND file, so lines from several processes sharing a log file
//! do not interleave mid-line.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Target for records that carry guest output.
pub const GUEST: &str = "guest";

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
        let source = if record.target() == GUEST {
            "guest"
        } else {
            "proxy"
        };
        let mut line = String::with_capacity(128);
        let _ = write!(
            line,
            "time={} level={} sandbox={} source={source} msg=",
            timestamp(SystemTime::now()),
            record.level().as_str().to_ascii_lowercase(),
            self.sandbox,
        );
        quote_into(&mut line, &record.args().to_string());
        line.push('\n');
        // Nowhere to report a failing log write; dropping the record is all we can do.
        let _ = match &self.sink {
            Sink::File(file) => (&*file).write_all(line.as_bytes()),
            Sink::Stderr => io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// Appends `msg` as a double-quoted string with quotes, backslashes and control characters
/// escaped, so that any message (guest console output included) stays on one line.
fn quote_into(out: &mut String, msg: &str) {
    out.push('"');
    for c in msg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// RFC 3339 UTC timestamp with milliseconds.
fn timestamp(now: SystemTime) -> String {
    // A clock before 1970 is not worth an error path; print the epoch.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (days-from-civil inverted, using
/// 400-year eras that start on March 1st so the leap day falls at the end of a year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn timestamps_match_date_utility() {
        // Reference values from `date -u -d @N`.
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_868_800, 5), "2000-03-01T00:00:00.005Z");
        assert_eq!(at(1_709_164_800, 999), "2024-02-29T00:00:00.999Z");
        assert_eq!(at(4_102_444_799, 0), "2099-12-31T23:59:59.000Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn messages_stay_on_one_line() {
        let mut s = String::new();
        quote_into(&mut s, "a \"b\"\\\r\n\x1b[0m");
        assert_eq!(s, r#""a \"b\"\\\r\n\u{1b}[0m""#);
    }
}

//! One time-ordered view of a sandbox's log files (`kata-runtime logs`).

use crate::files;
use std::path::Path;
use std::time::Duration;

/// One line of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: Duration,
    /// `time` first, then `level`, `source`, ... and `msg` last.
    pub fields: Vec<(String, String)>,
}

impl Entry {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The entry as one logfmt line (no newline).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            if k == "msg" || v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"') {
                crate::quote_into(&mut out, v);
            } else {
                out.push_str(v);
            }
        }
        out
    }
}

/// Every line of every log file in `vm_dir`, ordered by time (lines with the same time keep
/// their file order). Lines without a time of their own (a QEMU message printed without one)
/// take the time of the line before them in the same file.
pub fn collect(vm_dir: &Path, sandbox: &str) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(vm_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    for name in names {
        let source = match name.as_str() {
            files::RUNTIME => "runtime",
            files::PROXY => "proxy",
            files::QEMU | files::QEMU_STDERR => "qemu",
            n if n.starts_with(files::SHIM_PREFIX) => "shim",
            _ => continue,
        };
        // A file being appended to may end mid-line; read what is there.
        let text = match std::fs::read(vm_dir.join(&name)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => continue,
        };
        let mut last = Duration::ZERO;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry = if source == "qemu" {
                qemu_entry(line, sandbox, last)
            } else {
                logfmt_entry(line, source, sandbox, last)
            };
            last = entry.time;
            entries.push(entry);
        }
    }
    entries.sort_by_key(|e| e.time);
    Ok(entries)
}

/// A line of ours; a stray non-logfmt line (e.g. a panic message) is kept as the message.
fn logfmt_entry(line: &str, source: &str, sandbox: &str, last: Duration) -> Entry {
    let Some(mut fields) = crate::parse(line) else {
        return plain(last, "info", source, sandbox, line);
    };
    let time = fields
        .iter()
        .find(|(k, _)| k == "time")
        .and_then(|(_, v)| crate::parse_rfc3339(v))
        .unwrap_or(last);
    if !fields.iter().any(|(k, _)| k == "source") {
        fields.insert(1.min(fields.len()), ("source".into(), source.into()));
    }
    Entry { time, fields }
}

/// QEMU's -D log: trace lines `PID@SECS.USEC:event args`, messages
/// `2026-11-26T21:20:12.123456Z qemu-system-x86_64: text` (with `-msg timestamp=on`).
fn qemu_entry(line: &str, sandbox: &str, last: Duration) -> Entry {
    if let Some((time, msg)) = trace_line(line) {
        return plain(time, "debug", "qemu", sandbox, msg);
    }
    if let Some((stamp, msg)) = line.split_once(' ') {
        if let Some(time) = crate::parse_rfc3339(stamp) {
            return plain(time, "warning", "qemu", sandbox, msg);
        }
    }
    plain(last, "warning", "qemu", sandbox, line)
}

fn trace_line(line: &str) -> Option<(Duration, &str)> {
    let (pid, rest) = line.split_once('@')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (stamp, msg) = rest.split_once(':')?;
    let (secs, micros) = stamp.split_once('.')?;
    let time = Duration::new(
        secs.parse().ok()?,
        micros.parse::<u32>().ok()?.checked_mul(1000)?,
    );
    Some((time, msg))
}

fn plain(time: Duration, level: &str, source: &str, sandbox: &str, msg: &str) -> Entry {
    let secs = time.as_secs();
    Entry {
        time,
        fields: vec![
            ("time".into(), crate::rfc3339(secs, time.subsec_nanos())),
            ("level".into(), level.into()),
            ("source".into(), source.into()),
            ("sandbox".into(), sandbox.into()),
            ("msg".into(), msg.into()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_merged_by_time_with_their_sources() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        w(
            "runtime.log",
            "time=2026-11-26T10:00:00.000000001Z level=info source=runtime sandbox=sb container=c msg=\"creating\"\n\
             time=2026-11-26T10:00:05Z level=info source=runtime sandbox=sb container=c msg=\"started\"\n",
        );
        w(
            "proxy.log",
            "time=2026-11-26T10:00:02Z level=info source=proxy sandbox=sb msg=\"listening\"\n\
             time=2026-11-26T10:00:03Z level=info source=agent sandbox=sb msg=\"ready\"\n",
        );
        w(
            "qemu.log",
            "123@1795687201.000000:handle_qmp_command mon 0x1 req: {\"execute\": \"qmp_capabilities\"}\n\
             no time here\n",
        );
        w("shim-c.log", "time=2026-11-26T10:00:04Z level=info source=shim sandbox=sb container=c msg=\"relaying\"\n");
        w("virtiofsd.log", "ignored\n");
        w("notes.txt", "ignored\n");
        let got = collect(dir.path(), "sb").unwrap();
        let order: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.get("source").unwrap(), e.get("msg").unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                ("runtime", "creating"),
                (
                    "qemu",
                    "handle_qmp_command mon 0x1 req: {\"execute\": \"qmp_capabilities\"}"
                ),
                ("qemu", "no time here"),
                ("proxy", "listening"),
                ("agent", "ready"),
                ("shim", "relaying"),
                ("runtime", "started"),
            ]
        );
        assert_eq!(got[1].get("sandbox"), Some("sb"));
        assert!(got[1].render().starts_with("time=2026-11-26T10:00:01.000000000Z level=debug source=qemu sandbox=sb msg=\"handle_qmp_command"));
    }

    #[test]
    fn qemu_message_lines_carry_their_time() {
        let e = qemu_entry(
            "2026-11-26T10:00:00.250000Z qemu-system-x86_64: terminating on signal 15",
            "sb",
            Duration::ZERO,
        );
        assert_eq!(e.time, Duration::new(1_795_687_200, 250_000_000));
        assert_eq!(
            e.get("msg"),
            Some("qemu-system-x86_64: terminating on signal 15")
        );
    }
}

//! One logfmt line: `key=value` pairs, values quoted when they need it, `msg` last.

use std::fmt::Write as _;

/// A record of the sandbox log, ready to be written as one line.
pub struct Line<'a> {
    pub level: log::Level,
    /// Which component wrote it: runtime, proxy, shim, agent, qemu.
    pub source: &'a str,
    pub sandbox: &'a str,
    /// Empty for lines about the whole sandbox.
    pub container: &'a str,
    /// More `key=value` pairs (e.g. `exec=`), after the fixed ones.
    pub extra: &'a [(&'a str, &'a str)],
    pub msg: &'a str,
}

impl Line<'_> {
    /// The line with its trailing newline, timestamped now: write it with one `write_all` on
    /// an O_APPEND file so that lines of processes sharing the file never interleave.
    pub fn render(&self) -> String {
        self.render_at(&crate::now())
    }

    pub fn render_at(&self, time: &str) -> String {
        let mut out = String::with_capacity(160 + self.msg.len());
        let _ = write!(
            out,
            "time={time} level={} source={}",
            self.level.as_str().to_ascii_lowercase(),
            self.source
        );
        let fixed = [("sandbox", self.sandbox), ("container", self.container)];
        for (k, v) in fixed.iter().chain(self.extra.iter()) {
            if !v.is_empty() {
                let _ = write!(out, " {k}=");
                value_into(&mut out, v);
            }
        }
        out.push_str(" msg=");
        quote_into(&mut out, self.msg);
        out.push('\n');
        out
    }
}

/// A bare value when it is one plain word, quoted otherwise.
fn value_into(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c));
    if plain {
        out.push_str(v);
    } else {
        quote_into(out, v);
    }
}

/// Appends `s` double-quoted with quotes, backslashes and control characters escaped, so any
/// message (guest console output included) stays on one line.
pub fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
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

/// The `key=value` pairs of a logfmt line, in order; `None` when the line is not logfmt
/// (no `key=` at its start).
pub fn parse(line: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = line.trim_end_matches(['\n', '\r']).trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '"') {
            return None;
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let (v, used) = unquote(quoted)?;
            value = v;
            rest = &quoted[used..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        pairs.push((key.to_string(), value));
        rest = rest.trim_start();
    }
    (!pairs.is_empty()).then_some(pairs)
}

/// The text of a quoted value up to its closing quote, and how many bytes that took
/// (closing quote included).
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    // \u{hex}
                    let mut hex = String::new();
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    for (_, h) in chars.by_ref() {
                        if h == '}' {
                            break;
                        }
                        hex.push(h);
                    }
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fixed_fields_then_msg() {
        let l = Line {
            level: log::Level::Warn,
            source: "shim",
            sandbox: "sb",
            container: "c 1",
            extra: &[("exec", "e1"), ("empty", "")],
            msg: "a \"b\"\n",
        };
        assert_eq!(
            l.render_at("T"),
            "time=T level=warn source=shim sandbox=sb container=\"c 1\" exec=e1 msg=\"a \\\"b\\\"\\n\"\n"
        );
    }

    #[test]
    fn control_characters_stay_on_one_line() {
        let mut s = String::new();
        quote_into(&mut s, "a \"b\"\\\r\n\x1b[0m");
        assert_eq!(s, r#""a \"b\"\\\r\n\u{1b}[0m""#);
    }

    #[test]
    fn parse_reads_back_what_render_wrote() {
        let l = Line {
            level: log::Level::Info,
            source: "proxy",
            sandbox: "sb",
            container: "",
            extra: &[],
            msg: "x=1 \"q\" \x1b\\",
        };
        let pairs = parse(&l.render_at("2026-01-01T00:00:00Z")).unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["time", "level", "source", "sandbox", "msg"]);
        assert_eq!(pairs[4].1, "x=1 \"q\" \x1b\\");
        assert_eq!(parse("[    0.000] Linux version 6.1"), None);
        assert_eq!(parse("time=\"unterminated"), None);
    }
}

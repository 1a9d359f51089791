//! The crate's error type and the mapping of toml's errors (byte spans) to file lines and
//! `[section] key` names.

use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{ImDocument, TableLike};

use crate::schema;

/// Every variant displays as a single line: the runtime prints these as is (command output, the
/// shim's and runtime's logs), where a multi-line message would be cut or interleaved with
/// other lines.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not TOML.
    #[error("configuration file {} line {line} column {col}: {msg}", .path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    /// A key the structs refuse (unknown, wrong type) or a value outside what the runtime
    /// supports. `line` is `None` when the key is not in the file (its default is the bad value).
    /// `section` is dotted (`hypervisor.qemu`), empty for the top level.
    #[error("configuration file {}{}: {}{key}: {reason}", .path.display(), line_part(.line), section_part(.section))]
    Key {
        path: PathBuf,
        line: Option<usize>,
        section: String,
        key: String,
        reason: String,
    },
    /// A deserialization error toml could not tie to a key (should not happen with these
    /// structs; kept so nothing is lost if it does).
    #[error("configuration file {}{}: {msg}", .path.display(), line_part(.line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        msg: String,
    },
    /// A per-pod override under `io.katacontainers.config.` outside the safe list.
    #[error("annotation {name} is not allowed (allowed: {allowed})")]
    AnnotationNotAllowed { name: String, allowed: String },
    /// A safe per-pod override whose value does not parse or is out of range.
    #[error("annotation {name}: {reason}")]
    Annotation { name: String, reason: String },
    #[error("{what} not found (looked in: {looked}); set it in the configuration file")]
    NotFound { what: &'static str, looked: String },
}

fn line_part(line: &Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

fn section_part(section: &str) -> String {
    if section.is_empty() {
        String::new()
    } else {
        format!("[{section}] ")
    }
}

/// A key as TOML would write it: bare when it can be, else quoted and escaped (a quoted key may
/// hold a line break, which must not split the error line).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// toml's message made one line: its lines joined with "; ", other control characters escaped.
pub(crate) fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut out = String::with_capacity(joined.len());
    for c in joined.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Lossy: an offset inside a multi-byte character still gives a sensible column.
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// Turns toml's error for `text` into a typed error: a syntax error when the text is not TOML,
/// else the `[section] key` the error's span falls on.
pub(crate) fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    // toml's own error carries a span but not the key path, so the text is parsed again (only
    // on this error path) into a document that keeps every key's span.
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(syntax) => {
            let (line, col) = line_col(text, syntax.span().map_or(0, |s| s.start));
            return Error::Syntax {
                path: path.to_path_buf(),
                line,
                col,
                msg: one_line(syntax.message()),
            };
        }
    };
    let Some(span) = err.span() else {
        return Error::Invalid {
            path: path.to_path_buf(),
            line: None,
            msg: one_line(err.message()),
        };
    };
    let line = line_col(text, span.start).0;
    let mut keys = Vec::new();
    if !locate(doc.as_table(), span.start, &mut keys) {
        return Error::Invalid {
            path: path.to_path_buf(),
            line: Some(line),
            msg: one_line(err.message()),
        };
    }
    let key = keys.pop().unwrap_or_default();
    let section = keys.join(".");
    let reason = if err.message().starts_with("unknown field") {
        match schema::section_keys(&section) {
            Some(known) => format!("unknown key (expected one of: {})", known.join(", ")),
            None => "unknown key".to_owned(),
        }
    } else {
        friendlier(&one_line(err.message()))
    };
    Error::Key {
        path: path.to_path_buf(),
        line: Some(line),
        section,
        key: toml_key(&key),
        reason,
    }
}

/// serde names Rust types ("expected u32", "expected struct Qemu"); a configuration file's
/// reader thinks in TOML terms.
fn friendlier(msg: &str) -> String {
    const RUST_TO_TOML: &[(&str, &str)] = &[
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected path string", "expected a string (a path)"),
    ];
    for (rust, toml) in RUST_TO_TOML {
        if let Some(head) = msg.strip_suffix(rust) {
            return format!("{head}{toml}");
        }
    }
    match msg.rfind("expected struct ") {
        Some(at) => format!("{}expected a table", &msg[..at]),
        None => msg.to_owned(),
    }
}

fn span_has(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || s.start == offset)
}

/// Pushes onto `keys` the path of the key whose name or value covers `offset`, the deepest one
/// (a header table's span covers its whole body, so its children are tried first).
fn locate(table: &dyn TableLike, offset: usize, keys: &mut Vec<String>) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        keys.push(name.to_owned());
        if span_has(key.span(), offset) {
            return true;
        }
        if let Some(child) = item.as_table_like() {
            if locate(child, offset, keys) {
                return true;
            }
        }
        if span_has(item.span(), offset) {
            return true;
        }
        keys.pop();
    }
    false
}

/// Line of `key` in dotted `section` of `text`, or `None` when it is not written there (the
/// value is a default) or the text does not parse.
pub(crate) fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    for part in section.split('.').filter(|p| !p.is_empty()) {
        table = table.get(part)?.as_table_like()?;
    }
    let (key, _) = table.get_key_value(key)?;
    Some(line_col(text, key.span()?.start).0)
}

use crate::Error;

/// Longest id accepted (runc has no limit, but an id becomes a path component and a socket
/// path prefix: keep it bounded).
pub const MAX_ID_LEN: usize = 1024;

/// Ids become folder names: allow what runc allows (`[A-Za-z0-9_+.-]`), never `.`/`..`.
pub fn validate_id(id: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: if id.len() > 64 {
                format!(
                    "{}...",
                    &id[..id.char_indices().nth(60).map_or(id.len(), |(i, _)| i)]
                )
            } else {
                id.to_string()
            },
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("not a valid name");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in [
            "a",
            "abc-123",
            "x_y.z",
            "A+B",
            &"f".repeat(64),
            &"a".repeat(1024),
        ] {
            validate_id(id).unwrap();
        }
    }

    #[test]
    fn refuses_unsafe_ids() {
        for id in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            "ä",
            "x\0",
            &"a".repeat(1025),
        ] {
            assert!(validate_id(id).is_err(), "{id:?} accepted");
        }
    }
}

//! Capability names and numbers (linux/capability.h).

pub const CAP_SYS_ADMIN: u32 = 21;

pub fn number(name: &str) -> Option<u32> {
    oci::CAPABILITY_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

/// `CAP_X, CAP_Y` for the bits of `mask` (`cap_N` for a number without a name here).
pub fn names(mask: u64) -> String {
    let v: Vec<String> = (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            oci::CAPABILITY_NAMES
                .get(b as usize)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("cap_{b}"))
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// The bits of the capabilities the running kernel knows (0..=cap_last_cap).
pub fn known_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("CAP_KILL"), Some(5));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(names(0x21), "CAP_CHOWN,CAP_KILL");
        assert_eq!(known_mask(40), (1 << 41) - 1);
    }
}

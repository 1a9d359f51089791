use crate::{Error, Result};

const NAMES: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
];

/// runc's forms: a number, a name, or a name with the SIG prefix (any case); also SIGRTMIN+n.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || Error::BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if name == "SYS" {
        return Ok(31);
    }
    if let Some(&(_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    let rtmin = libc::SIGRTMIN();
    let rtmax = libc::SIGRTMAX();
    if name == "RTMIN" {
        return Ok(rtmin);
    }
    if name == "RTMAX" {
        return Ok(rtmax);
    }
    if let Some(off) = name
        .strip_prefix("RTMIN+")
        .and_then(|o| o.parse::<i32>().ok())
    {
        if rtmin + off <= rtmax {
            return Ok(rtmin + off);
        }
    }
    if let Some(off) = name
        .strip_prefix("RTMAX-")
        .and_then(|o| o.parse::<i32>().ok())
    {
        if rtmax - off >= rtmin {
            return Ok(rtmax - off);
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_signal_forms() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("sigusr1").unwrap(), 10);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("RTMIN+1").unwrap() > 32);
        for bad in ["", "0", "65", "FOO", "SIG", "-1"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}

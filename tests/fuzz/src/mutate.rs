//! Byte-level mutations with a small deterministic generator (a seed reproduces a run).

/// xorshift64*: plenty for choosing mutations, and reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// FNV-1a, to name saved inputs and derive per-target seeds.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Tokens that tend to reach unusual paths of JSON/TOML/logfmt parsers and of what follows
/// them (ids, paths, numbers at type limits).
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"=",
    b"\n",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"4294967296",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1e309",
    b"\\u0000",
    b"\\ud800",
    b"../",
    b"/..",
    b"\x00",
    b"\xff\xfe",
    b"\"\":\"\"",
    b"[[",
    b"]]",
    b"'''",
    b"time=",
    b"level=",
    b"msg=\"",
    b"@",
    b"io.katacontainers.config.hypervisor.",
    b"io.kubernetes.cri.container-type",
    b"SCMP_ACT_ALLOW",
    b"CAP_SYS_ADMIN",
];

/// 1..=8 mutations of `base`, sometimes spliced with `other`; at most `max` bytes.
pub fn mutate(rng: &mut Rng, base: &[u8], other: &[u8], max: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(8) {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                // Repeat a slice: deep nesting, long strings.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let piece = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                for _ in 0..=rng.below(16) {
                    v.splice(at..at, piece.iter().copied());
                }
            }
            5 | 6 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                v.splice(i..i, token.iter().copied());
            }
            7 if !other.is_empty() => {
                // Splice: our head, the other input's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                // Replace a digit run with a big or negative number.
                let i = rng.below(len);
                if v[i].is_ascii_digit() {
                    let n: &[u8] =
                        [b"0".as_slice(), b"-1", b"65536", b"99999999999999999999"][rng.below(4)];
                    v.splice(i..i + 1, n.iter().copied());
                }
            }
            _ => {}
        }
    }
    v.truncate(max);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutants() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(
                mutate(&mut a, b"{\"a\": 1}", b"[2]", 1024),
                mutate(&mut b, b"{\"a\": 1}", b"[2]", 1024)
            );
        }
    }

    #[test]
    fn size_is_bounded() {
        let mut r = Rng::new(1);
        let big = vec![b'x'; 4096];
        for _ in 0..200 {
            assert!(mutate(&mut r, &big, &big, 5000).len() <= 5000);
        }
    }
}

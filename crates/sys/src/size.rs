//! Sizes written like `512m` (as runc's `RAMInBytes`).

/// Parses a size: bytes, or a number (fractions allowed) with a `k`, `m`,
/// `g` or `t` suffix in binary units, optionally followed by `b`, any case
/// (`100`, `64k`, `1.5G`, `2mb`). `None` when it is not a number; the sign
/// is the caller's business (`-1` parses as -1).
pub fn parse_size(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    Some((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("1t"), Some(1 << 40));
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }
}

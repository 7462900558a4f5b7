//! Fields of `/proc/<pid>/mountinfo`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

/// Undoes the octal escapes (`\040` for a space, `\011` for a tab, ...) of
/// a mountinfo field, byte for byte (paths need not be UTF-8). A backslash
/// not followed by three octal digits is kept.
pub fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

/// [`unescape`] as a `String` (lossy), without copying twice when the
/// field has no escape.
pub fn unescape_lossy(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    unescape(s).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape("/plain\\"), "/plain\\");
        assert_eq!(unescape_lossy("/a\\040b"), "/a b");
        assert_eq!(unescape_lossy("/a"), "/a");
    }
}

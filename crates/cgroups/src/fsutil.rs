//! Small helpers to read and write cgroup files with errors that name the
//! field and file, and to format numbers without allocating.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// A number formatted on the stack.
pub(crate) struct Num {
    buf: [u8; 24],
    start: usize,
}

impl Num {
    pub(crate) fn u(mut v: u64) -> Num {
        let mut buf = [0u8; 24];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Num { buf, start: i }
    }
    pub(crate) fn i(v: i64) -> Num {
        if v >= 0 {
            return Num::u(v as u64);
        }
        let mut n = Num::u(v.unsigned_abs());
        n.start -= 1;
        n.buf[n.start] = b'-';
        n
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// The full spec name of a `linux.resources` field.
pub(crate) fn field(name: &str) -> String {
    format!("linux.resources.{name}")
}

/// Formats `major:minor value` into `line` (reused across a loop).
pub(crate) fn dev_line(line: &mut String, major: i64, minor: i64, v: u64) {
    use std::fmt::Write;
    line.clear();
    let _ = write!(line, "{major}:{minor} {v}");
}

/// Writes `value` to `dir/name` in one write(2).
pub(crate) fn write(dir: &Path, name: &str, value: &[u8], field: &str) -> Result<(), Error> {
    let path = dir.join(name);
    write_path(&path, value).map_err(|source| Error::Write {
        field: field.to_owned(),
        value: String::from_utf8_lossy(value).into_owned(),
        path,
        source,
    })
}

fn write_path(path: &Path, value: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value)
}

/// Writes a signed number (`-1` stays `-1`).
pub(crate) fn write_i64(dir: &Path, name: &str, v: i64, field: &str) -> Result<(), Error> {
    write(dir, name, Num::i(v).as_bytes(), field)
}

/// Writes an unsigned number.
pub(crate) fn write_u64(dir: &Path, name: &str, v: u64, field: &str) -> Result<(), Error> {
    write(dir, name, Num::u(v).as_bytes(), field)
}

/// Writes a cgroup2 limit: `max` for -1, the number otherwise.
pub(crate) fn write_max(dir: &Path, name: &str, v: i64, field: &str) -> Result<(), Error> {
    if v < 0 {
        write(dir, name, b"max", field)
    } else {
        write(dir, name, Num::i(v).as_bytes(), field)
    }
}

/// Reads `dir/name` as text.
pub(crate) fn read(dir: &Path, name: &str) -> Result<String, Error> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| Error::io("read", path, e))
}

/// Reads `dir/name` if it exists.
pub(crate) fn read_opt(dir: &Path, name: &str) -> Result<Option<String>, Error> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Parses a single number; `max` reads as `u64::MAX`.
pub(crate) fn parse_u64(s: &str, path: impl FnOnce() -> PathBuf) -> Result<u64, Error> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| Error::Parse {
        path: path(),
        msg: format!("{s:?} is not a number"),
    })
}

/// Reads a single-number file; missing files read as 0.
pub(crate) fn read_u64(dir: &Path, name: &str) -> Result<u64, Error> {
    match read_opt(dir, name)? {
        Some(s) => parse_u64(&s, || dir.join(name)),
        None => Ok(0),
    }
}

/// Value of `key` in a flat-keyed file (`key value` lines).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// True if `dir/name` exists.
pub(crate) fn exists(dir: &Path, name: &str) -> bool {
    dir.join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn formats() {
        assert_eq!(Num::i(-1).as_bytes(), b"-1");
        assert_eq!(Num::u(0).as_bytes(), b"0");
        assert_eq!(Num::i(i64::MIN).as_bytes(), i64::MIN.to_string().as_bytes());
        assert_eq!(Num::u(u64::MAX).as_bytes(), u64::MAX.to_string().as_bytes());
        assert_eq!(keyed("a 1\noom_kill 7\n", "oom_kill"), Some(7));
    }
}

//! Content digests (`sha256:<hex>`) and verification of content against a
//! descriptor's digest and size.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Errors about digests.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?} (only sha256:<64 hex> is supported)")]
    Invalid(String),
    /// Content does not match what its descriptor promised.
    #[error(
        "{what}: expected {expected} ({expected_size} bytes), got {actual} ({actual_size} bytes)"
    )]
    Mismatch {
        /// What was checked (blob, manifest...).
        what: String,
        /// Expected digest.
        expected: Digest,
        /// Expected size.
        expected_size: u64,
        /// Computed digest.
        actual: Digest,
        /// Actual size.
        actual_size: u64,
    },
}

/// A `sha256:<hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestError::Invalid(s.to_string()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Invalid(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The hex part (the file name under `blobs/sha256/`).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm (`sha256`).
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// Checks `data` against this digest and `size`.
    pub fn verify(&self, what: &str, data: &[u8], size: Option<u64>) -> Result<(), DigestError> {
        let actual = Digest::of(data);
        let n = data.len() as u64;
        if actual != *self || size.is_some_and(|s| s != n) {
            return Err(DigestError::Mismatch {
                what: what.to_string(),
                expected: self.clone(),
                expected_size: size.unwrap_or(n),
                actual,
                actual_size: n,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// Incremental sha256 + byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher::default()
    }
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether no bytes were seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The final digest.
    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.inner.finalize()),
        }
    }
    /// Finishes and checks against `expected` / `size`.
    pub fn verify(
        self,
        what: &str,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<(), DigestError> {
        let n = self.len;
        let actual = self.finish();
        if actual != *expected || size.is_some_and(|s| s != n) {
            return Err(DigestError::Mismatch {
                what: what.to_string(),
                expected: expected.clone(),
                expected_size: size.unwrap_or(n),
                actual,
                actual_size: n,
            });
        }
        Ok(())
    }
}

/// A reader adapter that hashes what passes through it.
pub struct HashReader<R> {
    /// The wrapped reader.
    pub inner: R,
    /// The running hash.
    pub hasher: Hasher,
}

impl<R: std::io::Read> std::io::Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_verify() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(d.verify("x", b"hello", Some(5)).is_ok());
        assert!(d.verify("x", b"hello", Some(6)).is_err());
        assert!(d.verify("x", b"hellO", None).is_err());
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse("md5:00").is_err());
    }
}

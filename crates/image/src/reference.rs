//! Image references, normalized the way docker and containerd do:
//! `alpine` is `docker.io/library/alpine:latest`, `host:port/repo:tag@sha256:...`
//! keeps its registry, tag and digest.

use std::fmt;

use crate::digest::Digest;

/// The default registry for names without a domain.
pub const DOCKER_HUB: &str = "docker.io";

/// Errors parsing a reference.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// The reference string is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    Invalid {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry domain (with port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Digest pinned with `@sha256:...`.
    pub digest: Option<Digest>,
}

fn invalid(reference: &str, reason: &'static str) -> RefError {
    RefError::Invalid {
        reference: reference.to_string(),
        reason,
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

impl Reference {
    /// Parses and normalizes `s` (docker's rules).
    pub fn parse(s: &str) -> Result<Reference, RefError> {
        if s.is_empty() || s.len() > 4096 {
            return Err(invalid(s, "empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let d = Digest::parse(d).map_err(|_| invalid(s, "bad digest after '@'"))?;
                (r, Some(d))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that is not followed by a '/'.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(invalid(s, "bad tag"));
            }
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        if registry.is_empty() || registry.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(invalid(s, "bad registry"));
        }
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(invalid(
                s,
                "repository must be lowercase [a-z0-9._-] components",
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to for this registry (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag or digest to ask the registry for (digest wins).
    pub fn api_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// Whether plain HTTP is allowed without `--insecure` (loopback registries).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalization() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("user/app:1.2").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1.2");
        let r = Reference::parse("index.docker.io/library/busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn registry_port_tag_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/ns/repo:v1@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "ns/repo");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert_eq!(r.api_reference(), d);
        assert!(r.is_loopback());
        let r = Reference::parse(&format!("localhost:5000/repo@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert!(r.is_loopback());
        let r = Reference::parse("quay.io/a/b").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(!r.is_loopback());
    }

    #[test]
    fn rejects_bad() {
        for bad in [
            "",
            "UPPER",
            "a/../b",
            "a:b:c",
            "repo@sha256:xyz",
            "a//b",
            "x:-bad",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should fail");
        }
    }
}

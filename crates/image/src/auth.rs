//! Registry credentials and `WWW-Authenticate` challenges.
//!
//! Credentials are read, in order, from `$REGISTRY_AUTH_FILE`,
//! `${XDG_RUNTIME_DIR}/containers/auth.json` (podman/skopeo) and
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (docker); all use
//! the `{"auths": {"host": {"auth": base64("user:pass")}}}` format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` header value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Errors reading or writing auth files.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// I/O on an auth file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Malformed auth file.
    #[error("{path}: invalid auth file: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The auth files consulted, most specific first.
pub fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(Path::new(&p).join("containers/auth.json"));
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG") {
        v.push(Path::new(&p).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        v.push(Path::new(&h).join(".docker/config.json"));
    }
    v
}

/// The file `skiff image login` writes to (podman's choice when
/// `XDG_RUNTIME_DIR` is set, else docker's).
pub fn login_file() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        return Path::new(&p).join("containers/auth.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".docker/config.json")
}

fn keys_for(registry: &str) -> Vec<String> {
    let mut k = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == crate::reference::DOCKER_HUB {
        k.push("https://index.docker.io/v1/".into());
        k.push("index.docker.io".into());
        k.push("registry-1.docker.io".into());
    }
    k
}

fn decode(entry: &AuthEntry) -> Option<Credentials> {
    if let Some(a) = &entry.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some(Credentials {
            username: u.into(),
            password: p.into(),
        });
    }
    Some(Credentials {
        username: entry.username.clone()?,
        password: entry.password.clone()?,
    })
}

/// Looks up credentials for `registry` in `files` (first match wins).
pub fn lookup_in(files: &[PathBuf], registry: &str) -> Option<Credentials> {
    for f in files {
        let Ok(data) = std::fs::read(f) else { continue };
        let Ok(af) = serde_json::from_slice::<AuthFile>(&data) else {
            continue;
        };
        for k in keys_for(registry) {
            if let Some(c) = af.auths.get(&k).and_then(decode) {
                return Some(c);
            }
        }
    }
    None
}

/// Looks up credentials for `registry` in the standard files.
pub fn lookup(registry: &str) -> Option<Credentials> {
    lookup_in(&auth_files(), registry)
}

/// Stores credentials for `registry` in `file` (mode 0600), keeping other entries.
pub fn store(file: &Path, registry: &str, creds: &Credentials) -> Result<(), AuthError> {
    let mut af: AuthFile = match std::fs::read(file) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| AuthError::Invalid {
            path: file.into(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthFile::default(),
        Err(source) => {
            return Err(AuthError::Io {
                path: file.into(),
                source,
            })
        }
    };
    let raw = format!("{}:{}", creds.username, creds.password);
    af.auths.insert(
        registry.to_string(),
        AuthEntry {
            auth: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ..Default::default()
        },
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            path: dir.into(),
            source,
        })?;
    }
    let data = serde_json::to_vec_pretty(&af).expect("auth json");
    skiff_sys::fs::write_private(file, &data).map_err(|source| AuthError::Io {
        path: file.into(),
        source,
    })
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercase).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`...).
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="...",service="...",scope="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (h, ""),
    };
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n)
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            }
        };
        params.insert(key, val);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
    }

    #[test]
    fn auth_file_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store(&f, "127.0.0.1:5000", &c).unwrap();
        assert_eq!(
            lookup_in(std::slice::from_ref(&f), "127.0.0.1:5000"),
            Some(c)
        );
        assert_eq!(lookup_in(&[f], "other"), None);
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        let c = lookup_in(&[docker], "docker.io").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b"));
    }
}

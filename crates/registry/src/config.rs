//! Server configuration, read from a TOML file and overridden by flags.
//!
//! ```toml
//! listen = "127.0.0.1:5000"
//! storage = "/var/lib/skiff/registry"
//! delete_enabled = true
//! access_log = true
//! [limits]
//! max_manifest_size = 4194304
//! max_blob_size = 17179869184
//! [timeouts]
//! header_secs = 30               # whole request head (line + headers)
//! idle_secs = 120                # keep-alive connection with no request
//! body_secs = 60                 # request body: the window of the rate check
//! body_min_rate = 1024           # bytes/s the body must average per window
//! [tls]
//! cert = "cert.pem"
//! key = "key.pem"
//! [auth]
//! htpasswd = "htpasswd"          # bcrypt entries (htpasswd -B)
//! [auth.token]                   # bearer tokens instead of basic auth
//! secret = "change me"           # HMAC-SHA256 key (or secret_file)
//! service = "skiff-registry"
//! [s3]                           # optional: object storage instead of `storage`
//! bucket = "registry"
//! endpoint = "http://127.0.0.1:9000"
//! access_key_id = "..."
//! secret_access_key = "..."
//! [[auth.acl]]
//! account = "alice"              # user, "*" = any authenticated, "anonymous"
//! repository = "team/*"          # exact name, prefix/* or *
//! actions = ["pull", "push", "delete"]
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration problem, naming the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: toml::de::Error,
    },
    /// A field has a bad value.
    #[error("config field {field}: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Complete registry configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Storage directory (filesystem driver).
    #[serde(default)]
    pub storage: Option<PathBuf>,
    /// Whether DELETE of manifests/tags/blobs is allowed.
    #[serde(default = "yes")]
    pub delete_enabled: bool,
    /// Whether to write one JSON access-log line per request to stderr.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// Size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// TLS cert/key (PEM); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Authentication; open registry when absent.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Minimum chunk size advertised in `OCI-Chunk-Min-Length` (0: none).
    #[serde(default)]
    pub chunk_min_length: u64,
    /// S3-compatible storage instead of the `storage` directory.
    #[serde(default)]
    pub s3: Option<crate::storage::s3::S3Config>,
    /// Deadlines that keep slow or idle clients from holding connections.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
}

/// Connection deadlines (seconds, bytes per second).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Time allowed for a request's line and headers, from its first byte.
    #[serde(default = "default_header_secs")]
    pub header_secs: u64,
    /// Time a connection may stay open with no request in progress (and a
    /// response may wait on a client that does not read).
    #[serde(default = "default_idle_secs")]
    pub idle_secs: u64,
    /// Window of the body check: in every such window a request body must
    /// bring at least one byte and `body_min_rate` bytes per second on average.
    #[serde(default = "default_body_secs")]
    pub body_secs: u64,
    /// Minimum average body rate over each window (0: any progress suffices).
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            header_secs: default_header_secs(),
            idle_secs: default_idle_secs(),
            body_secs: default_body_secs(),
            body_min_rate: default_body_min_rate(),
        }
    }
}

/// Size limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted (bytes).
    #[serde(default = "default_manifest_limit")]
    pub max_manifest_size: u64,
    /// Largest blob accepted (bytes).
    #[serde(default = "default_blob_limit")]
    pub max_blob_size: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_size: default_manifest_limit(),
            max_blob_size: default_blob_limit(),
        }
    }
}

/// TLS files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Authentication settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// htpasswd file with bcrypt hashes.
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// Realm for `WWW-Authenticate: Basic`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Bearer-token mode.
    #[serde(default)]
    pub token: Option<TokenConfig>,
    /// Access rules; with none, every authenticated user may do everything.
    #[serde(default)]
    pub acl: Vec<AclEntry>,
}

/// Bearer-token settings (HS256 JWTs issued by the built-in `/token` endpoint).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// HMAC key.
    #[serde(default)]
    pub secret: Option<String>,
    /// File holding the HMAC key.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Token realm URL; default `<scheme>://<host>/token`.
    #[serde(default)]
    pub realm: Option<String>,
    /// Service name (JWT audience).
    #[serde(default = "default_service")]
    pub service: String,
    /// Token issuer.
    #[serde(default = "default_service")]
    pub issuer: String,
    /// Token lifetime in seconds.
    #[serde(default = "default_expiry")]
    pub expiry_secs: u64,
}

/// One access rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclEntry {
    /// User name, `*` (any authenticated user) or `anonymous`.
    pub account: String,
    /// Repository name, `prefix/*`, or `*`.
    pub repository: String,
    /// Granted actions: `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:5000".parse().expect("default listen address")
}
fn yes() -> bool {
    true
}
fn default_manifest_limit() -> u64 {
    4 << 20
}
fn default_blob_limit() -> u64 {
    64 << 30
}
fn default_realm() -> String {
    "skiff-registry".into()
}
fn default_service() -> String {
    "skiff-registry".into()
}
fn default_expiry() -> u64 {
    300
}
fn default_header_secs() -> u64 {
    30
}
fn default_idle_secs() -> u64 {
    120
}
fn default_body_secs() -> u64 {
    60
}
fn default_body_min_rate() -> u64 {
    1024
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("empty config is valid")
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.auth {
            if a.htpasswd.is_none() && a.token.is_none() {
                return Err(ConfigError::Field {
                    field: "auth",
                    reason: "needs htpasswd and/or token".into(),
                });
            }
            if let Some(t) = &a.token {
                if t.secret.is_none() && t.secret_file.is_none() {
                    return Err(ConfigError::Field {
                        field: "auth.token.secret",
                        reason: "secret or secret_file is required".into(),
                    });
                }
            }
            for e in &a.acl {
                for act in &e.actions {
                    if !matches!(act.as_str(), "pull" | "push" | "delete" | "*") {
                        return Err(ConfigError::Field {
                            field: "auth.acl.actions",
                            reason: format!("unknown action {act:?}"),
                        });
                    }
                }
            }
        }
        let t = &self.timeouts;
        for (field, v) in [
            ("timeouts.header_secs", t.header_secs),
            ("timeouts.idle_secs", t.idle_secs),
            ("timeouts.body_secs", t.body_secs),
        ] {
            if v == 0 {
                return Err(ConfigError::Field {
                    field,
                    reason: "must be at least 1 second".into(),
                });
            }
        }
        if self.limits.max_manifest_size == 0 {
            return Err(ConfigError::Field {
                field: "limits.max_manifest_size",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

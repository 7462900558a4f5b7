//! Authentication and authorization: htpasswd basic auth (bcrypt) and
//! HS256 bearer tokens with per-repository `pull`/`push`/`delete` scopes,
//! issued by the registry's own `/token` endpoint (the Docker token flow).

use crate::config::{AclEntry, AuthConfig, ConfigError};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any valid credential (`/v2/`).
    Login,
    /// The catalog (`registry:catalog:*`).
    Catalog,
    /// An action on a repository.
    Repo {
        /// Repository name.
        name: String,
        /// `pull`, `push` or `delete`.
        action: &'static str,
    },
}

/// Outcome of an access check.
#[derive(Debug)]
pub enum Decision {
    /// Allowed; the account name (empty if anonymous).
    Allow(String),
    /// No or bad credentials: 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Authenticated but not allowed.
    Deny(String),
}

/// Configured authenticator.
pub struct Auth {
    users: HashMap<String, String>,
    realm: String,
    token: Option<TokenKeys>,
    acl: Vec<AclEntry>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

struct TokenKeys {
    secret: Vec<u8>,
    realm: Option<String>,
    service: String,
    issuer: String,
    expiry: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn repo_matches(pattern: &str, name: &str) -> bool {
    pattern == "*"
        || pattern == name
        || pattern
            .strip_suffix("/*")
            .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('/'))
}

impl Auth {
    /// Builds the authenticator, reading the htpasswd and secret files.
    pub fn new(cfg: &AuthConfig) -> Result<Auth, ConfigError> {
        let mut users = HashMap::new();
        if let Some(path) = &cfg.htpasswd {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (u, h) = line.split_once(':').ok_or_else(|| ConfigError::Field {
                    field: "auth.htpasswd",
                    reason: format!("{}:{}: expected user:hash", path.display(), i + 1),
                })?;
                if !h.starts_with("$2") {
                    return Err(ConfigError::Field {
                        field: "auth.htpasswd",
                        reason: format!(
                            "{}:{}: only bcrypt hashes are supported (htpasswd -B)",
                            path.display(),
                            i + 1
                        ),
                    });
                }
                users.insert(u.to_string(), h.to_string());
            }
        }
        let token = match &cfg.token {
            None => None,
            Some(t) => {
                let secret = match (&t.secret, &t.secret_file) {
                    (Some(s), _) => s.as_bytes().to_vec(),
                    (None, Some(f)) => std::fs::read(f).map_err(|source| ConfigError::Read {
                        path: f.clone(),
                        source,
                    })?,
                    (None, None) => {
                        return Err(ConfigError::Field {
                            field: "auth.token.secret",
                            reason: "missing".into(),
                        })
                    }
                };
                Some(TokenKeys {
                    secret,
                    realm: t.realm.clone(),
                    service: t.service.clone(),
                    issuer: t.issuer.clone(),
                    expiry: t.expiry_secs,
                })
            }
        };
        Ok(Auth {
            users,
            realm: cfg.realm.clone(),
            token,
            acl: cfg.acl.clone(),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether bearer-token mode is on.
    pub fn token_mode(&self) -> bool {
        self.token.is_some()
    }

    /// Checks `user:password` against htpasswd (bcrypt, cached on success).
    pub fn check_password(&self, user: &str, pass: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(format!("{user}\0{pass}\0{hash}")).into();
        if self.verified.lock().expect("auth cache").contains(&key) {
            return true;
        }
        let ok = bcrypt::verify(pass, hash).unwrap_or(false);
        if ok {
            self.verified.lock().expect("auth cache").insert(key);
        }
        ok
    }

    /// Actions the ACL grants `account` (empty = anonymous) on `repo`.
    pub fn granted(&self, account: &str, repo: &str) -> HashSet<&'static str> {
        let mut out = HashSet::new();
        if self.acl.is_empty() {
            if !account.is_empty() {
                out.extend(["pull", "push", "delete"]);
            }
            return out;
        }
        for e in &self.acl {
            let who = e.account == account
                || (e.account == "*" && !account.is_empty())
                || (e.account == "anonymous" && account.is_empty());
            if who && repo_matches(&e.repository, repo) {
                for a in &e.actions {
                    match a.as_str() {
                        "pull" => {
                            out.insert("pull");
                        }
                        "push" => {
                            out.insert("push");
                        }
                        "delete" => {
                            out.insert("delete");
                        }
                        "*" => out.extend(["pull", "push", "delete"]),
                        _ => {}
                    }
                }
            }
        }
        out
    }

    fn basic_user(&self, authorization: Option<&str>) -> Option<Result<String, ()>> {
        let v = authorization?.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok();
        let text = raw.and_then(|r| String::from_utf8(r).ok());
        Some(match text.as_deref().and_then(|t| t.split_once(':')) {
            Some((u, p)) if self.check_password(u, p) => Ok(u.to_string()),
            _ => Err(()),
        })
    }

    fn challenge(&self, need: &Need, host_url: &str) -> String {
        match &self.token {
            None => format!("Basic realm=\"{}\"", self.realm),
            Some(t) => {
                let realm = t
                    .realm
                    .clone()
                    .unwrap_or_else(|| format!("{host_url}/token"));
                let scope = match need {
                    Need::Login => String::new(),
                    Need::Catalog => ",scope=\"registry:catalog:*\"".into(),
                    Need::Repo { name, action } => {
                        let acts = if *action == "push" {
                            "pull,push"
                        } else {
                            action
                        };
                        format!(",scope=\"repository:{name}:{acts}\"")
                    }
                };
                format!("Bearer realm=\"{realm}\",service=\"{}\"{scope}", t.service)
            }
        }
    }

    /// Decides a request. `host_url` is `scheme://host` for the token realm.
    pub fn check(&self, authorization: Option<&str>, need: &Need, host_url: &str) -> Decision {
        if let Some(t) = &self.token {
            let Some(tok) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
                return Decision::Challenge(self.challenge(need, host_url));
            };
            let Some(claims) = verify_jwt(&t.secret, tok.trim(), &t.service) else {
                return Decision::Challenge(self.challenge(need, host_url));
            };
            let sub = claims["sub"].as_str().unwrap_or_default().to_string();
            let allowed = match need {
                Need::Login => true,
                Need::Catalog => access_has(&claims, "registry", "catalog", "*"),
                Need::Repo { name, action } => access_has(&claims, "repository", name, action),
            };
            return if allowed {
                Decision::Allow(sub)
            } else {
                // A valid token without the action: challenge the client to
                // fetch a token with the wider scope (RFC 6750 section 3.1).
                let c = self.challenge(need, host_url);
                Decision::Challenge(format!("{c},error=\"insufficient_scope\""))
            };
        }
        let user = match self.basic_user(authorization) {
            Some(Ok(u)) => u,
            _ => {
                // Anonymous access may still be granted by an ACL entry.
                if let Need::Repo { name, action } = need {
                    if self.granted("", name).contains(action) {
                        return Decision::Allow(String::new());
                    }
                }
                return Decision::Challenge(self.challenge(need, host_url));
            }
        };
        match need {
            Need::Login | Need::Catalog => Decision::Allow(user),
            Need::Repo { name, action } => {
                if self.granted(&user, name).contains(action) {
                    Decision::Allow(user)
                } else {
                    Decision::Deny(format!("{user:?} may not {action} {name}"))
                }
            }
        }
    }

    /// Serves the token endpoint: authenticates with basic auth (or
    /// anonymously) and signs a token for the granted part of `scopes`.
    /// Returns `None` when the credentials are wrong.
    pub fn issue_token(
        &self,
        authorization: Option<&str>,
        scopes: &[String],
    ) -> Option<serde_json::Value> {
        let t = self.token.as_ref()?;
        let account = match self.basic_user(authorization) {
            None => String::new(),
            Some(Ok(u)) => u,
            Some(Err(())) => return None,
        };
        let mut access = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            // Names may not contain ':', so the last field holds the actions.
            let (name, actions) = match parts.next() {
                Some(a) => (rest, a),
                None => continue,
            };
            match kind {
                "repository" => {
                    let granted = self.granted(&account, name);
                    let acts: Vec<&str> = actions
                        .split(',')
                        .filter(|a| granted.contains(a) || (*a == "*" && granted.len() == 3))
                        .collect();
                    access
                        .push(serde_json::json!({"type":"repository","name":name,"actions":acts}));
                }
                "registry" if name == "catalog" && !account.is_empty() => {
                    access.push(
                        serde_json::json!({"type":"registry","name":"catalog","actions":["*"]}),
                    );
                }
                _ => {}
            }
        }
        let iat = now();
        let claims = serde_json::json!({
            "iss": t.issuer, "sub": account, "aud": t.service,
            "iat": iat, "nbf": iat.saturating_sub(5), "exp": iat + t.expiry,
            "jti": uuid::Uuid::new_v4().to_string(), "access": access,
        });
        let token = sign_jwt(&t.secret, &claims);
        Some(serde_json::json!({
            "token": token, "access_token": token,
            "expires_in": t.expiry, "issued_at": iso8601(iat),
        }))
    }
}

fn access_has(claims: &serde_json::Value, kind: &str, name: &str, action: &str) -> bool {
    claims["access"].as_array().is_some_and(|list| {
        list.iter().any(|a| {
            a["type"] == kind
                && a["name"] == name
                && a["actions"]
                    .as_array()
                    .is_some_and(|acts| acts.iter().any(|x| x == action || x == "*"))
        })
    })
}

/// Hashes a password for an htpasswd line (bcrypt, cost 10).
pub fn hash_password(pass: &str) -> String {
    bcrypt::hash(pass, 10).expect("bcrypt hash of a short password")
}

/// Signs claims as an HS256 JWT.
pub fn sign_jwt(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// Verifies an HS256 JWT's signature, audience and time window.
pub fn verify_jwt(secret: &[u8], token: &str, audience: &str) -> Option<serde_json::Value> {
    let (input, sig) = token.rsplit_once('.')?;
    let (header, payload) = input.split_once('.')?;
    let header: serde_json::Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(input.as_bytes());
    mac.verify_slice(&B64.decode(sig).ok()?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    let t = now();
    if claims["exp"].as_u64()? < t || claims["nbf"].as_u64().unwrap_or(0) > t + 5 {
        return None;
    }
    if claims["aud"] != audience {
        return None;
    }
    Some(claims)
}

fn iso8601(secs: u64) -> String {
    skiff_sys::time::rfc3339_secs(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_roundtrip_and_tamper() {
        let c = serde_json::json!({"aud":"s","exp":now()+60,"sub":"a"});
        let t = sign_jwt(b"k", &c);
        assert!(verify_jwt(b"k", &t, "s").is_some());
        assert!(verify_jwt(b"x", &t, "s").is_none());
        assert!(verify_jwt(b"k", &t, "other").is_none());
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert!(repo_matches("team/*", "team/app"));
        assert!(!repo_matches("team/*", "teamx/app"));
    }
}

//! The registry client (distribution-spec): manifests and blobs over HTTPS
//! (plain HTTP only for loopback registries or with `insecure`), anonymous,
//! basic and bearer-token auth via the `WWW-Authenticate` challenge flow,
//! retries with exponential backoff, resumable blob downloads (`Range` on
//! `ingest/<hex>.partial`), and pulls that unpack layers in parallel while
//! they download. Every manifest and blob is verified against its digest and
//! size before it is committed to the store; a layer's snapshot is committed
//! only after both its blob digest and its diff id have been verified.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::auth::{self, Credentials};
use crate::digest::{Digest, DigestError};
use crate::manifest::{self, Descriptor, Index, Manifest, Platform};
use crate::reference::Reference;
pub use crate::snapshot::{commit_snapshot, ensure_snapshots};
use crate::store::{ImageEntry, Store, StoreError};
use crate::unpack::UnpackError;

mod blob;
mod pull;

/// Largest manifest accepted (bytes).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Errors of registry operations.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transport error.
    #[error("{method} {url}: {source}")]
    Http {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// Unexpected HTTP status.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// Method.
        method: Method,
        /// URL.
        url: String,
        /// Status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// Authentication failed.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// Registry.
        registry: String,
        /// Why.
        reason: String,
    },
    /// Plain HTTP refused.
    #[error("registry {0} is not on loopback: plain HTTP needs --insecure")]
    Insecure(String),
    /// Verification failed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Store error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpack error.
    #[error("layer {digest}: {source}")]
    Unpack {
        /// The layer.
        digest: Digest,
        /// Cause.
        source: UnpackError,
    },
    /// Local I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Malformed or unsupported content.
    #[error("{0}")]
    Invalid(String),
}

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP (and fall back to it) for any registry.
    pub insecure: bool,
    /// Platform to select from indexes.
    pub platform: Platform,
    /// Show progress bars (only when stderr is a terminal).
    pub progress: bool,
    /// Layers transferred at once.
    pub parallel: usize,
    /// Attempts per request (transport errors, 429 and 5xx).
    pub retries: u32,
    /// Credentials to use instead of the auth files.
    pub credentials: Option<Credentials>,
    /// Upper bound on a layer's uncompressed size.
    pub max_layer_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            platform: Platform::host(),
            progress: true,
            parallel: 4,
            retries: 5,
            credentials: None,
            max_layer_bytes: 64 << 30,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// Name recorded in the store.
    pub name: String,
    /// Manifest descriptor.
    pub manifest: Option<Descriptor>,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes reused from partial downloads (resumed).
    pub resumed: u64,
    /// Layers unpacked into snapshots.
    pub unpacked: usize,
    /// Layers already present.
    pub cached: usize,
}

/// A registry client.
pub struct Client {
    http: reqwest::Client,
    opts: ClientOptions,
    tokens: tokio::sync::Mutex<HashMap<String, String>>,
    schemes: tokio::sync::Mutex<HashMap<String, &'static str>>,
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(5))
}

impl Client {
    /// A client with `opts`.
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            opts,
            tokens: Default::default(),
            schemes: Default::default(),
        })
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    async fn base(&self, registry: &str, host: &str) -> Result<String, ClientError> {
        let plain_ok = self.opts.insecure
            || Reference::parse(&format!("{registry}/x")).is_ok_and(|r| r.is_loopback());
        if !plain_ok {
            return Ok(format!("https://{host}"));
        }
        let mut s = self.schemes.lock().await;
        if let Some(sch) = s.get(registry) {
            return Ok(format!("{sch}://{host}"));
        }
        // Probe HTTPS first; fall back to HTTP when TLS does not answer.
        let probe = self
            .http
            .get(format!("https://{host}/v2/"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let sch = if probe.is_ok() { "https" } else { "http" };
        s.insert(registry.to_string(), sch);
        Ok(format!("{sch}://{host}"))
    }

    async fn url(&self, r: &Reference, path: &str) -> Result<String, ClientError> {
        Ok(format!(
            "{}/v2/{}/{}",
            self.base(&r.registry, r.api_host()).await?,
            r.repository,
            path
        ))
    }

    fn creds(&self, registry: &str) -> Option<Credentials> {
        self.opts
            .credentials
            .clone()
            .or_else(|| auth::lookup(registry))
    }

    fn token_key(r: &Reference, actions: &str) -> String {
        format!("{}|{}|{}", r.registry, r.repository, actions)
    }

    /// Answers a challenge; returns the Authorization header value.
    async fn authenticate(
        &self,
        registry: &str,
        scope: Option<&str>,
        challenge: &str,
    ) -> Result<String, ClientError> {
        let fail = |reason: String| ClientError::Auth {
            registry: registry.to_string(),
            reason,
        };
        let ch = auth::parse_challenge(challenge)
            .ok_or_else(|| fail(format!("bad WWW-Authenticate {challenge:?}")))?;
        let creds = self.creds(registry);
        match ch.scheme.as_str() {
            "basic" => creds.map(|c| c.basic_header()).ok_or_else(|| {
                fail(
                    "registry wants basic auth and no credentials are known (skiff image login)"
                        .into(),
                )
            }),
            "bearer" => {
                let realm = ch
                    .params
                    .get("realm")
                    .ok_or_else(|| fail("bearer challenge without realm".into()))?;
                let mut url = reqwest::Url::parse(realm)
                    .map_err(|e| fail(format!("bad realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = ch.params.get("service") {
                        q.append_pair("service", s);
                    }
                    match (scope, ch.params.get("scope")) {
                        (Some(s), _) => {
                            q.append_pair("scope", s);
                        }
                        (None, Some(s)) => {
                            q.append_pair("scope", s);
                        }
                        _ => {}
                    }
                }
                let mut req = self.http.get(url.clone());
                if let Some(c) = &creds {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| fail(format!("token request {url}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(fail(format!("token server {url}: HTTP {}", resp.status())));
                }
                #[derive(serde::Deserialize)]
                struct Tok {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| fail(format!("token response: {e}")))?;
                let t: Tok = serde_json::from_slice(&body)
                    .map_err(|e| fail(format!("token response: {e}")))?;
                let tok = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| fail("token response without token".into()))?;
                Ok(format!("Bearer {tok}"))
            }
            other => Err(fail(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Sends a request with auth and retries; returns the response whatever its status.
    async fn send(
        &self,
        r: &Reference,
        actions: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<reqwest::Response, ClientError> {
        let key = Self::token_key(r, actions);
        let mut authed = false;
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(h) = self.tokens.lock().await.get(&key) {
                req = req.header(AUTHORIZATION, h);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            match req.send().await {
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.opts.retries {
                        return Err(ClientError::Http {
                            method,
                            url: url.into(),
                            source: e,
                        });
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authed => {
                    let ch = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| ClientError::Auth {
                            registry: r.registry.clone(),
                            reason: format!("{url}: 401 without WWW-Authenticate"),
                        })?;
                    let scope = format!("repository:{}:{}", r.repository, actions);
                    let h = self.authenticate(&r.registry, Some(&scope), &ch).await?;
                    self.tokens.lock().await.insert(key.clone(), h);
                    authed = true;
                }
                Ok(resp)
                    if (resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error())
                        && attempt + 1 < self.opts.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    async fn status_error(method: Method, url: &str, resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        ClientError::Status {
            method,
            url: url.into(),
            status,
            body: body.chars().take(300).collect(),
        }
    }

    /// Fetches a manifest or index by tag or digest; verifies it; returns
    /// `(bytes, media type, digest)`.
    pub async fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest), ClientError> {
        let url = self.url(r, &format!("manifests/{reference}")).await?;
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let resp = self.send(r, "pull", Method::GET, &url, h, None).await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(Method::GET, &url, resp).await);
        }
        if resp.content_length().is_some_and(|n| n > MAX_MANIFEST) {
            return Err(ClientError::Invalid(format!(
                "{url}: manifest larger than {MAX_MANIFEST} bytes"
            )));
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s).ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Http {
                method: Method::GET,
                url: url.clone(),
                source: e,
            })?
            .to_vec();
        let digest = Digest::of(&body);
        if let Ok(want) = Digest::parse(reference) {
            want.verify(&format!("manifest {url}"), &body, None)?;
        } else if let Some(hd) = header_digest {
            hd.verify(
                &format!("manifest {url} (Docker-Content-Digest)"),
                &body,
                None,
            )?;
        }
        let mt = match ct {
            Some(ct) if ct.contains("json") && ct != "application/json" => ct,
            _ => manifest::sniff_media_type(&body).ok_or_else(|| {
                ClientError::Invalid(format!("{url}: cannot tell the manifest type"))
            })?,
        };
        Ok((body, mt, digest))
    }

    /// Resolves `r` to a platform manifest: returns its descriptor, parsed
    /// form and bytes (indexes are walked with the configured platform).
    pub async fn resolve(
        &self,
        r: &Reference,
    ) -> Result<(Descriptor, Manifest, Vec<u8>), ClientError> {
        let (body, mt, digest) = self.get_manifest(r, &r.api_reference()).await?;
        let (body, mt, digest) = if manifest::is_index(&mt) {
            let idx: Index = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Invalid(format!("{r}: invalid index: {e}")))?;
            let want = &self.opts.platform;
            let child = idx
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
                .ok_or_else(|| {
                    let have: Vec<String> = idx
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                        .collect();
                    ClientError::Invalid(format!(
                        "{r}: no manifest for platform {}/{} (has: {})",
                        want.os,
                        want.architecture,
                        have.join(", ")
                    ))
                })?
                .clone();
            let (b, mt, d) = self.get_manifest(r, &child.digest.to_string()).await?;
            child
                .digest
                .verify(&format!("manifest {}", child.digest), &b, Some(child.size))?;
            (
                b,
                if manifest::is_index(&mt) {
                    return Err(ClientError::Invalid(format!("{r}: nested index")));
                } else {
                    mt
                },
                d,
            )
        } else {
            (body, mt, digest)
        };
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| ClientError::Invalid(format!("{r}: invalid manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(ClientError::Invalid(format!(
                "{r}: unsupported manifest schemaVersion {}",
                m.schema_version
            )));
        }
        let desc = Descriptor::new(&mt, digest, body.len() as u64);
        Ok((desc, m, body))
    }

    /// Fetches a small blob into memory, verified.
    pub async fn get_blob(&self, r: &Reference, d: &Descriptor) -> Result<Vec<u8>, ClientError> {
        let url = self.url(r, &format!("blobs/{}", d.digest)).await?;
        let resp = self
            .send(r, "pull", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::status_error(Method::GET, &url, resp).await);
        }
        let body = resp.bytes().await.map_err(|e| ClientError::Http {
            method: Method::GET,
            url: url.clone(),
            source: e,
        })?;
        d.digest
            .verify(&format!("blob {url}"), &body, Some(d.size))?;
        Ok(body.to_vec())
    }

    /// Uploads one blob from the store unless the registry has it.
    async fn push_blob(
        &self,
        store: &Store,
        r: &Reference,
        d: &Descriptor,
    ) -> Result<bool, ClientError> {
        let url = self.url(r, &format!("blobs/{}", d.digest)).await?;
        let resp = self
            .send(r, "pull,push", Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        if resp.status().is_success() {
            return Ok(false);
        }
        let data = store.read_blob(&d.digest, Some(d.size))?;
        let up = self.url(r, "blobs/uploads/").await?;
        let resp = self
            .send(r, "pull,push", Method::POST, &up, HeaderMap::new(), None)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::status_error(Method::POST, &up, resp).await);
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Invalid(format!("POST {up}: no Location")))?;
        let base = reqwest::Url::parse(&up).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let mut put = base
            .join(loc)
            .map_err(|e| ClientError::Invalid(format!("bad Location {loc:?}: {e}")))?;
        put.query_pairs_mut()
            .append_pair("digest", &d.digest.to_string());
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .send(
                r,
                "pull,push",
                Method::PUT,
                put.as_str(),
                h,
                Some(data.into()),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::status_error(Method::PUT, put.as_str(), resp).await);
        }
        Ok(true)
    }

    /// Pushes a stored image to `dest` (blobs first, then the manifest).
    pub async fn push(
        &self,
        store: &Store,
        entry: &ImageEntry,
        dest: &Reference,
    ) -> Result<Digest, ClientError> {
        let m = store.manifest(&entry.manifest)?;
        for d in m.layers.iter().chain(std::iter::once(&m.config)) {
            self.push_blob(store, dest, d).await?;
        }
        let body = store.read_blob(&entry.manifest.digest, Some(entry.manifest.size))?;
        let tag = dest.api_reference();
        let url = self.url(dest, &format!("manifests/{tag}")).await?;
        let mut h = HeaderMap::new();
        let mt = m
            .media_type
            .clone()
            .unwrap_or_else(|| entry.manifest.media_type.clone());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&mt).map_err(|e| ClientError::Invalid(e.to_string()))?,
        );
        let resp = self
            .send(dest, "pull,push", Method::PUT, &url, h, Some(body.into()))
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::status_error(Method::PUT, &url, resp).await);
        }
        Ok(entry.manifest.digest.clone())
    }

    /// Checks `creds` against `registry` (`GET /v2/` and the challenge flow).
    pub async fn login(&self, registry: &str, creds: &Credentials) -> Result<(), ClientError> {
        let r = Reference::parse(&format!("{registry}/x"))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let url = format!("{}/v2/", self.base(&r.registry, r.api_host()).await?);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                method: Method::GET,
                url: url.clone(),
                source: e,
            })?;
        if resp.status().is_success() {
            return Ok(());
        }
        let ch = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(ch) = ch else {
            return Err(Self::status_error(Method::GET, &url, resp).await);
        };
        let c = Client {
            http: self.http.clone(),
            opts: ClientOptions {
                credentials: Some(creds.clone()),
                ..self.opts.clone()
            },
            tokens: Default::default(),
            schemes: Default::default(),
        };
        let h = c.authenticate(&r.registry, None, &ch).await?;
        let resp = self
            .http
            .get(&url)
            .header(AUTHORIZATION, h)
            .send()
            .await
            .map_err(|e| ClientError::Http {
                method: Method::GET,
                url: url.clone(),
                source: e,
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ClientError::Auth {
                registry: registry.into(),
                reason: format!("GET {url} with credentials: HTTP {}", resp.status()),
            })
        }
    }
}

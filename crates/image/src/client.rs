//! The registry client (distribution-spec): manifests and blobs over HTTPS
//! (plain HTTP only for loopback registries or with `insecure`), anonymous,
//! basic and bearer-token auth via the `WWW-Authenticate` challenge flow,
//! retries with exponential backoff, resumable blob downloads (`Range` on
//! `ingest/<hex>.partial`), and pulls that unpack layers in parallel while
//! they download. Every manifest and blob is verified against its digest and
//! size before it is committed to the store; a layer's snapshot is committed
//! only after both its blob digest and its diff id have been verified.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use crate::auth::{self, Credentials};
use crate::digest::{Digest, DigestError, Hasher};
use crate::manifest::{self, Compression, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::reference::Reference;
use crate::store::{ImageEntry, Store, StoreError};
use crate::unpack::{self, UnpackError, UnpackOptions, UnpackStats, WhiteoutMode};

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

struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
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

    /// Downloads a blob into the store, resuming a partial download and
    /// feeding every byte (in order) to `tx` when given. Returns
    /// `(downloaded, resumed)` byte counts.
    async fn fetch_blob(
        &self,
        store: &Store,
        r: &Reference,
        d: &Descriptor,
        tx: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        pb: &indicatif::ProgressBar,
    ) -> Result<(u64, u64), ClientError> {
        let part = store.ingest_path(&d.digest);
        let io = |e: std::io::Error| ClientError::Io {
            path: part.clone(),
            source: e,
        };
        // One writer per partial file: concurrent pulls of the same blob wait
        // for each other through an flock on it, then reuse the result.
        let mut tx = tx;
        let mut f = loop {
            if store.has_blob(&d.digest, Some(d.size)) {
                if let Some(t) = tx.take() {
                    let mut blob = store.open_blob(&d.digest)?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = blob.read(&mut buf).map_err(io)?;
                        if n == 0
                            || t.send(bytes::Bytes::copy_from_slice(&buf[..n]))
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                }
                pb.set_position(d.size);
                return Ok((0, 0));
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&part)
                .map_err(io)?;
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(io(e.into())),
            }
            // The file may have been committed (renamed) before we locked it.
            let same = match (f.metadata(), std::fs::metadata(&part)) {
                (Ok(a), Ok(b)) => {
                    std::os::unix::fs::MetadataExt::ino(&a)
                        == std::os::unix::fs::MetadataExt::ino(&b)
                }
                _ => false,
            };
            if same && !store.has_blob(&d.digest, Some(d.size)) {
                break f;
            }
        };
        let mut offset = f.metadata().map_err(io)?.len();
        if offset > d.size {
            f.set_len(0).map_err(io)?;
            offset = 0;
        }
        let mut hasher = Hasher::new();

        // Replay what an interrupted download already fetched.
        let resumed = offset;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
            let mut left = offset;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = f.read(&mut buf[..left.min(1 << 20) as usize]).map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if let Some(t) = &tx {
                    if t.send(bytes::Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        tx = None;
                    }
                }
                left -= n as u64;
            }
        }
        f.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
        pb.set_position(offset);
        let url = self.url(r, &format!("blobs/{}", d.digest)).await?;
        let mut downloaded = 0u64;
        let mut attempt = 0u32;
        while offset < d.size {
            let mut h = HeaderMap::new();
            if offset > 0 {
                h.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("range header"),
                );
            }
            let resp = self.send(r, "pull", Method::GET, &url, h, None).await?;
            let mut skip = match resp.status() {
                StatusCode::PARTIAL_CONTENT => 0,
                StatusCode::OK => offset,
                _ => return Err(Self::status_error(Method::GET, &url, resp).await),
            };
            let mut resp = resp;
            let mut failed = None;
            loop {
                match resp.chunk().await {
                    Ok(Some(mut c)) => {
                        if skip > 0 {
                            let s = skip.min(c.len() as u64) as usize;
                            let _ = c.split_to(s);
                            skip -= s as u64;
                        }
                        if c.is_empty() {
                            continue;
                        }
                        if offset + c.len() as u64 > d.size {
                            return Err(ClientError::Invalid(format!(
                                "blob {}: server sent more than the descriptor's {} bytes",
                                d.digest, d.size
                            )));
                        }
                        f.write_all(&c).map_err(io)?;
                        hasher.update(&c);
                        offset += c.len() as u64;
                        downloaded += c.len() as u64;
                        pb.set_position(offset);
                        if let Some(t) = &tx {
                            if t.send(c).await.is_err() {
                                tx = None;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if offset < d.size {
                attempt += 1;
                if attempt >= self.opts.retries {
                    let reason = failed
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "connection closed early".into());
                    return Err(ClientError::Invalid(format!(
                        "blob {}: download interrupted at {offset}/{} bytes: {reason}",
                        d.digest, d.size
                    )));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        let verified = hasher.verify(&format!("blob {}", d.digest), &d.digest, Some(d.size));
        if let Err(e) = verified {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
        f.sync_all().map_err(io)?;
        drop(f);
        store.commit_file(&part, &d.digest)?;
        Ok((downloaded, resumed))
    }

    /// Pulls `r` into `store`: manifest, config, layers (downloaded in
    /// parallel and unpacked into snapshots while downloading); names it.
    pub async fn pull(
        self: &Arc<Self>,
        store: &Store,
        r: &Reference,
    ) -> Result<PullReport, ClientError> {
        let (desc, m, body) = self.resolve(r).await?;
        store.write_blob(&body)?;
        if !store.has_blob(&m.config.digest, Some(m.config.size)) {
            let cfg = self.get_blob(r, &m.config).await?;
            store.write_blob(&cfg)?;
        }
        let cfg = store.config(&m)?;
        let diff_ids = cfg.diff_ids()?;
        if diff_ids.len() != m.layers.len() {
            return Err(ClientError::Invalid(format!(
                "{r}: config has {} diff_ids for {} layers",
                diff_ids.len(),
                m.layers.len()
            )));
        }
        let chains = manifest::chain_ids(&diff_ids);
        let progress = self.opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mp = indicatif::MultiProgress::new();
        if !progress {
            mp.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("progress template")
        .progress_chars("=> ");
        let sem = Arc::new(tokio::sync::Semaphore::new(self.opts.parallel.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut report = PullReport {
            name: r.to_string(),
            ..Default::default()
        };
        for (i, layer) in m.layers.iter().enumerate() {
            let need_blob = !store.has_blob(&layer.digest, Some(layer.size));
            let snap = store.snapshot_path(&chains[i]);
            let need_snap = !snap.exists();
            if !need_blob && !need_snap {
                report.cached += 1;
                continue;
            }
            let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                ClientError::Invalid(format!(
                    "layer {}: unsupported media type {}",
                    layer.digest, layer.media_type
                ))
            })?;
            let pb = mp.add(indicatif::ProgressBar::new(layer.size));
            pb.set_style(style.clone());
            pb.set_prefix(layer.digest.hex()[..12].to_string());
            let (this, store, r, layer, sem) = (
                Arc::clone(self),
                store.clone(),
                r.clone(),
                layer.clone(),
                Arc::clone(&sem),
            );
            let diff_id = diff_ids[i].clone();
            let opts = UnpackOptions {
                whiteouts: WhiteoutMode::Overlay,
                max_bytes: unpack::size_limit(layer.size, self.opts.max_layer_bytes),
                diff_id: Some(diff_id),
                ..Default::default()
            };
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore");
                let staging = if need_snap {
                    Some(new_staging(&store)?)
                } else {
                    None
                };
                let result = async {
                    let mut unpacker = None;
                    let mut tx = None;
                    if let Some(stage) = &staging {
                        let (t, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
                        let stage = stage.clone();
                        let opts = opts.clone();
                        if need_blob {
                            tx = Some(t);
                            unpacker = Some(tokio::task::spawn_blocking(move || {
                                unpack::unpack(
                                    ChanReader {
                                        rx,
                                        cur: bytes::Bytes::new(),
                                    },
                                    compression,
                                    &stage,
                                    &opts,
                                )
                            }));
                        } else {
                            let f = store.open_blob(&layer.digest)?;
                            unpacker = Some(tokio::task::spawn_blocking(move || {
                                unpack::unpack(f, compression, &stage, &opts)
                            }));
                        }
                    }
                    let mut counts = (0, 0);
                    if need_blob {
                        counts = this.fetch_blob(&store, &r, &layer, tx, &pb).await?;
                    }
                    if let Some(u) = unpacker {
                        let stats: UnpackStats = u
                            .await
                            .map_err(|e| ClientError::Invalid(format!("unpack task: {e}")))?
                            .map_err(|source| ClientError::Unpack {
                                digest: layer.digest.clone(),
                                source,
                            })?;
                        let _ = stats;
                    }
                    Ok::<_, ClientError>(counts)
                }
                .await;
                pb.finish_and_clear();
                match (result, staging) {
                    (Ok(c), Some(stage)) => {
                        commit_snapshot(&stage, &snap)?;
                        Ok((c, true))
                    }
                    (Ok(c), None) => Ok((c, false)),
                    (Err(e), stage) => {
                        if let Some(s) = stage {
                            let _ = crate::store::remove_tree(&s);
                        }
                        Err(e)
                    }
                }
            });
        }
        let mut first_err = None;
        while let Some(res) = tasks.join_next().await {
            match res
                .map_err(|e| ClientError::Invalid(format!("layer task: {e}")))
                .and_then(|r| r)
            {
                Ok(((dl, resumed), unpacked)) => {
                    report.downloaded += dl;
                    report.resumed += resumed;
                    report.unpacked += unpacked as usize;
                }
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                        tasks.abort_all();
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        store.tag(&report.name, &desc)?;
        report.manifest = Some(desc);
        Ok(report)
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

fn new_staging(store: &Store) -> Result<PathBuf, ClientError> {
    let p = store
        .root()
        .join("snapshots")
        .join(format!(".tmp-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&p).map_err(|e| ClientError::Io {
        path: p.clone(),
        source: e,
    })?;
    Ok(p)
}

/// Renames a finished staging dir to its snapshot name (or drops it when a
/// concurrent pull got there first).
pub fn commit_snapshot(stage: &std::path::Path, snap: &std::path::Path) -> Result<(), ClientError> {
    match std::fs::rename(stage, snap) {
        Ok(()) => Ok(()),
        Err(e) if snap.exists() => {
            let _ = e;
            let _ = crate::store::remove_tree(stage);
            Ok(())
        }
        Err(e) => Err(ClientError::Io {
            path: snap.to_path_buf(),
            source: e,
        }),
    }
}

/// Unpacks the snapshots of a stored image that are missing (e.g. after
/// import); returns the chain ids, base first.
pub fn ensure_snapshots(
    store: &Store,
    m: &Manifest,
    cfg: &ImageConfig,
    max_layer_bytes: u64,
) -> Result<Vec<Digest>, ClientError> {
    let diff_ids = cfg.diff_ids()?;
    if diff_ids.len() != m.layers.len() {
        return Err(ClientError::Invalid(format!(
            "config has {} diff_ids for {} layers",
            diff_ids.len(),
            m.layers.len()
        )));
    }
    let chains = manifest::chain_ids(&diff_ids);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, layer) in m.layers.iter().enumerate() {
            let snap = store.snapshot_path(&chains[i]);
            if snap.exists() {
                continue;
            }
            let diff_id = diff_ids[i].clone();
            handles.push(s.spawn(move || -> Result<(), ClientError> {
                let compression =
                    Compression::from_media_type(&layer.media_type).ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "layer {}: unsupported media type {}",
                            layer.digest, layer.media_type
                        ))
                    })?;
                let stage = new_staging(store)?;
                let f = store.open_blob(&layer.digest)?;
                let opts = UnpackOptions {
                    max_bytes: unpack::size_limit(layer.size, max_layer_bytes),
                    diff_id: Some(diff_id),
                    ..Default::default()
                };
                let mut hr = crate::digest::HashReader {
                    inner: f,
                    hasher: Hasher::new(),
                };
                let res = unpack::unpack(&mut hr, compression, &stage, &opts)
                    .map_err(|source| ClientError::Unpack {
                        digest: layer.digest.clone(),
                        source,
                    })
                    .and_then(|_| {
                        std::io::copy(&mut hr, &mut std::io::sink()).map_err(|e| {
                            ClientError::Io {
                                path: store.blob_path(&layer.digest),
                                source: e,
                            }
                        })?;
                        let h = std::mem::take(&mut hr.hasher);
                        h.verify(
                            &format!("blob {}", layer.digest),
                            &layer.digest,
                            Some(layer.size),
                        )
                        .map_err(ClientError::from)
                    });
                match res {
                    Ok(()) => commit_snapshot(&stage, &snap),
                    Err(e) => {
                        let _ = crate::store::remove_tree(&stage);
                        Err(e)
                    }
                }
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| ClientError::Invalid("unpack thread panicked".into()))??;
        }
        Ok(chains)
    })
}

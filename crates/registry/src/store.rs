//! Registry logic over a storage [`Driver`]: repositories, blobs, uploads,
//! manifests, tags and referrers, with the spec's error codes.
//!
//! Layout (relative to the driver root):
//! ```text
//! blobs/<algo>/<hex[..2]>/<hex>/data                     content (blobs and manifests)
//! repositories/<name>/_layers/<algo>/<hex>               blob is part of <name>
//! repositories/<name>/_manifests/revisions/<algo>/<hex>  manifest meta (JSON)
//! repositories/<name>/_manifests/tags/<tag>              digest the tag points to
//! repositories/<name>/_referrers/<algo>/<hex>/<algo>-<hex>  descriptor of a referrer
//! uploads/<uuid>/{info,data}                             upload in progress
//! ```
//! Uploads are appended to `uploads/<uuid>/data`, hashed as they stream in,
//! verified against the client's digest, fsynced and only then renamed into
//! `blobs/` (PATCHes are not fsynced: after a crash the upload's length is
//! what survived and the client resumes from the reported offset), so a
//! crash never leaves a wrong blob under a digest. The upload's
//! state lives on disk (its data length is its offset), so uploads survive a
//! restart; the hash state is rebuilt from the data when it is missing.

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{ApiError, Code};
use crate::manifest;
use crate::storage::{BoxRead, Driver, Meta, StorageError};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::internal(e)
    }
}

/// Limits applied to pushes.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: u64,
    /// Largest blob accepted, in bytes.
    pub max_blob_size: u64,
}

/// Metadata stored with each manifest revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionMeta {
    /// Media type the manifest was pushed with.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Digest of the subject, if the manifest has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Upload sessions kept in memory before idle ones are dropped.
const MAX_CACHED_UPLOADS: usize = 4096;

/// An upload session. The repository never changes and the stored size is
/// published outside the lock, so a status request never waits for a
/// running PATCH (which holds `upload` while the client sends).
struct Session {
    repo: String,
    stored: AtomicU64,
    upload: tokio::sync::Mutex<Upload>,
}

impl Session {
    fn new(repo: &str, offset: u64, hasher: Option<Hasher>) -> Arc<Session> {
        Arc::new(Session {
            repo: repo.to_string(),
            stored: AtomicU64::new(offset),
            upload: tokio::sync::Mutex::new(Upload { offset, hasher }),
        })
    }
}

struct Upload {
    offset: u64,
    hasher: Option<Hasher>,
}

/// The registry's view of its storage.
pub struct Store {
    driver: Arc<dyn Driver>,
    limits: Limits,
    uploads: Mutex<HashMap<String, Arc<Session>>>,
}

/// Result of a manifest push.
#[derive(Debug)]
pub struct Pushed {
    /// Digest of the stored manifest.
    pub digest: Digest,
    /// Subject digest, echoed in `OCI-Subject`.
    pub subject: Option<Digest>,
    /// The `?tag=` tags set, echoed in `OCI-Tag`.
    pub tags: Vec<String>,
}

/// A fetched manifest.
pub struct Fetched {
    /// Raw bytes.
    pub body: Vec<u8>,
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
}

/// Checks a repository name against the spec's grammar.
pub fn valid_name(name: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$",
        )
        .expect("name regex")
    });
    name.len() <= 255 && re.is_match(name)
}

/// Checks a tag against the spec's grammar.
pub fn valid_tag(tag: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("tag regex"))
        .is_match(tag)
}

/// Path of a blob's content.
pub fn blob_path(d: &Digest) -> String {
    format!(
        "blobs/{}/{}/{}/data",
        d.algorithm().name(),
        &d.hex()[..2],
        d.hex()
    )
}
pub(crate) fn repo_dir(repo: &str) -> String {
    format!("repositories/{repo}")
}
pub(crate) fn layer_link(repo: &str, d: &Digest) -> String {
    format!(
        "repositories/{repo}/_layers/{}/{}",
        d.algorithm().name(),
        d.hex()
    )
}
pub(crate) fn revision(repo: &str, d: &Digest) -> String {
    format!(
        "repositories/{repo}/_manifests/revisions/{}/{}",
        d.algorithm().name(),
        d.hex()
    )
}
pub(crate) fn tags_dir(repo: &str) -> String {
    format!("repositories/{repo}/_manifests/tags")
}
fn referrers_dir(repo: &str, subject: &Digest) -> String {
    format!(
        "repositories/{repo}/_referrers/{}/{}",
        subject.algorithm().name(),
        subject.hex()
    )
}
fn upload_dir(uuid: &str) -> String {
    format!("uploads/{uuid}")
}

/// What a manifest PUT names besides its body.
pub struct ManifestPut<'a> {
    /// The reference of the URL.
    pub reference: &'a Reference,
    /// More tags for the manifest (`?tag=` of a push by digest).
    pub tags: &'a [String],
    /// Algorithm of the digest computed for a push by tag
    /// (`?digest-algorithm=`; sha256 by default).
    pub algorithm: Algorithm,
}

/// A reference in `/manifests/<reference>`.
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a tag or digest; `None` if it is neither.
    pub fn parse(s: &str) -> Option<Reference> {
        if s.contains(':') {
            s.parse().ok().map(Reference::Digest)
        } else if valid_tag(s) {
            Some(Reference::Tag(s.to_string()))
        } else {
            None
        }
    }
}

fn upload_unknown(uuid: &str) -> ApiError {
    ApiError::new(Code::BlobUploadUnknown, format!("upload {uuid} not found"))
}

impl Store {
    /// A store over `driver` with `limits`.
    pub fn new(driver: Arc<dyn Driver>, limits: Limits) -> Self {
        Store {
            driver,
            limits,
            uploads: Mutex::new(HashMap::new()),
        }
    }

    /// The underlying driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// The push limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a repository exists.
    pub async fn repo_exists(&self, repo: &str) -> Result<bool, ApiError> {
        Ok(self.driver.stat(&repo_dir(repo)).await?.is_some())
    }

    /// Size/mtime of a blob if it is part of `repo`.
    pub async fn blob_stat(&self, repo: &str, d: &Digest) -> Result<Option<Meta>, ApiError> {
        if self.driver.stat(&layer_link(repo, d)).await?.is_none() {
            return Ok(None);
        }
        Ok(self.driver.stat(&blob_path(d)).await?)
    }

    /// Opens a blob of `repo` at `offset`.
    pub async fn blob_open(
        &self,
        repo: &str,
        d: &Digest,
        offset: u64,
    ) -> Result<Option<(BoxRead, Meta)>, ApiError> {
        if self.driver.stat(&layer_link(repo, d)).await?.is_none() {
            return Ok(None);
        }
        Ok(self.driver.reader(&blob_path(d), offset).await?)
    }

    /// Unlinks a blob from a repository.
    pub async fn blob_delete(&self, repo: &str, d: &Digest) -> Result<(), ApiError> {
        if !self.driver.delete(&layer_link(repo, d)).await? {
            return Err(ApiError::new(
                Code::BlobUnknown,
                format!("blob {d} not in {repo}"),
            ));
        }
        Ok(())
    }

    /// Links an existing blob of `from` into `repo`; false if `from` lacks it.
    pub async fn mount(&self, repo: &str, from: &str, d: &Digest) -> Result<bool, ApiError> {
        if self.blob_stat(from, d).await?.is_none() {
            return Ok(false);
        }
        self.driver.touch(&blob_path(d)).await?;
        self.driver.put(&layer_link(repo, d), b"").await?;
        Ok(true)
    }

    /// Links a blob stored under any repository into `repo` (mount without
    /// `from`); false if the registry does not hold it.
    pub async fn mount_any(&self, repo: &str, d: &Digest) -> Result<bool, ApiError> {
        if !self.driver.touch(&blob_path(d)).await? {
            return Ok(false);
        }
        self.driver.put(&layer_link(repo, d), b"").await?;
        Ok(true)
    }

    /// Starts an upload session; returns its id.
    pub async fn upload_start(&self, repo: &str) -> Result<String, ApiError> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let info = serde_json::json!({ "repo": repo }).to_string();
        self.driver
            .put(&format!("{}/info", upload_dir(&uuid)), info.as_bytes())
            .await?;
        let app = self
            .driver
            .appender(&format!("{}/data", upload_dir(&uuid)))
            .await?;
        app.finish().await?;
        let mut map = self.uploads.lock().expect("uploads lock");
        if map.len() >= MAX_CACHED_UPLOADS {
            // Forget idle sessions (abandoned uploads); they reload from
            // storage if the client comes back, re-hashing the data.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        map.insert(
            uuid.clone(),
            Session::new(repo, 0, Some(Hasher::new(Algorithm::Sha256))),
        );
        Ok(uuid)
    }

    async fn session(&self, repo: &str, uuid: &str) -> Result<Arc<Session>, ApiError> {
        if uuid::Uuid::parse_str(uuid).is_err() {
            return Err(upload_unknown(uuid));
        }
        let existing = self
            .uploads
            .lock()
            .expect("uploads lock")
            .get(uuid)
            .cloned();
        let s = match existing {
            Some(s) => s,
            None => {
                // Not in memory: a restart happened; reload from disk.
                let info = self
                    .driver
                    .get(&format!("{}/info", upload_dir(uuid)))
                    .await?
                    .ok_or_else(|| upload_unknown(uuid))?;
                let info: serde_json::Value =
                    serde_json::from_slice(&info).map_err(ApiError::internal)?;
                let orepo = info["repo"].as_str().unwrap_or_default().to_string();
                let offset = self
                    .driver
                    .stat(&format!("{}/data", upload_dir(uuid)))
                    .await?
                    .map_or(0, |m| m.size);
                let s = Session::new(&orepo, offset, None);
                self.uploads
                    .lock()
                    .expect("uploads lock")
                    .entry(uuid.to_string())
                    .or_insert(s)
                    .clone()
            }
        };
        if s.repo != repo {
            return Err(upload_unknown(uuid));
        }
        Ok(s)
    }

    /// Current offset (bytes received) of an upload.
    pub async fn upload_status(&self, repo: &str, uuid: &str) -> Result<u64, ApiError> {
        let s = self.session(repo, uuid).await?;
        let off = s.stored.load(Ordering::Acquire);
        Ok(off)
    }

    /// Appends a chunk. `start` is the first byte of `Content-Range`, which
    /// must equal the current offset (else 416). Returns the new offset.
    pub async fn upload_append<S, E>(
        &self,
        repo: &str,
        uuid: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<u64, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let s = self.session(repo, uuid).await?;
        let mut up = s.upload.lock().await;
        if let Some(start) = start {
            if start != up.offset {
                return Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!(
                        "chunk starts at {start} but the upload has {} bytes",
                        up.offset
                    ),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header("Range", range_header(up.offset))
                .with_header("Location", format!("/v2/{repo}/blobs/uploads/{uuid}")));
            }
        }
        self.append_locked(&s.stored, &mut up, uuid, body).await?;
        Ok(up.offset)
    }

    async fn append_locked<S, E>(
        &self,
        stored: &AtomicU64,
        up: &mut Upload,
        uuid: &str,
        mut body: S,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let path = format!("{}/data", upload_dir(uuid));
        let mut app = self.driver.appender(&path).await?;
        let mut failure: Option<ApiError> = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(ApiError::new(
                        Code::BlobUploadInvalid,
                        format!("reading request body: {e}"),
                    ));
                    break;
                }
            };
            if up.offset + chunk.len() as u64 > self.limits.max_blob_size {
                failure = Some(
                    ApiError::new(
                        Code::SizeInvalid,
                        format!(
                            "blob exceeds the limit of {} bytes",
                            self.limits.max_blob_size
                        ),
                    )
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE),
                );
                break;
            }
            if let Err(e) = app.write(&chunk).await {
                failure = Some(e.into());
                up.hasher = None;
                break;
            }
            if let Some(h) = up.hasher.as_mut() {
                h.update(&chunk);
            }
            up.offset += chunk.len() as u64;
            stored.store(up.offset, Ordering::Release);
        }
        match app.finish().await {
            Ok(size) if size == up.offset => {}
            Ok(size) => {
                up.offset = size;
                up.hasher = None;
            }
            Err(e) => {
                up.hasher = None;
                up.offset = self.driver.stat(&path).await?.map_or(0, |m| m.size);
                stored.store(up.offset, Ordering::Release);
                return Err(e.into());
            }
        }
        stored.store(up.offset, Ordering::Release);
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Completes an upload: appends the final chunk, verifies `digest` and
    /// moves the data into content-addressed storage.
    pub async fn upload_finish<S, E>(
        &self,
        repo: &str,
        uuid: &str,
        digest: &Digest,
        start: Option<u64>,
        body: S,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let s = self.session(repo, uuid).await?;
        let mut up = s.upload.lock().await;
        if let Some(start) = start {
            if start != up.offset {
                return Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!(
                        "chunk starts at {start} but the upload has {} bytes",
                        up.offset
                    ),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header("Range", range_header(up.offset)));
            }
        }
        self.append_locked(&s.stored, &mut up, uuid, body).await?;
        let path = format!("{}/data", upload_dir(uuid));
        let actual = match &up.hasher {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => {
                let mut h = Hasher::new(digest.algorithm());
                self.driver
                    .for_each_chunk(&path, &mut |c| h.update(c))
                    .await?;
                h.finish()
            }
        };
        if &actual != digest {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("digest parameter is {digest} but the uploaded content is {actual}"),
            ));
        }
        let target = blob_path(digest);
        // Durable before it becomes visible under its digest.
        self.driver.sync(&path).await?;
        if self.driver.touch(&target).await? {
            self.driver.delete(&path).await?;
        } else {
            self.driver.rename(&path, &target).await?;
        }
        self.driver.put(&layer_link(repo, digest), b"").await?;
        self.driver.delete(&upload_dir(uuid)).await?;
        self.uploads.lock().expect("uploads lock").remove(uuid);
        Ok(())
    }

    /// Cancels an upload.
    pub async fn upload_cancel(&self, repo: &str, uuid: &str) -> Result<(), ApiError> {
        let s = self.session(repo, uuid).await?;
        let _up = s.upload.lock().await;
        self.driver.delete(&upload_dir(uuid)).await?;
        self.uploads.lock().expect("uploads lock").remove(uuid);
        Ok(())
    }

    async fn resolve(&self, repo: &str, reference: &Reference) -> Result<Option<Digest>, ApiError> {
        match reference {
            Reference::Digest(d) => Ok(Some(d.clone())),
            Reference::Tag(t) => {
                let Some(raw) = self.driver.get(&format!("{}/{t}", tags_dir(repo))).await? else {
                    return Ok(None);
                };
                let s = String::from_utf8_lossy(&raw);
                Ok(s.trim().parse().ok())
            }
        }
    }

    /// Reads the revision meta of a manifest in `repo`.
    pub async fn revision_meta(
        &self,
        repo: &str,
        d: &Digest,
    ) -> Result<Option<RevisionMeta>, ApiError> {
        let Some(raw) = self.driver.get(&revision(repo, d)).await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(&raw).map_err(|e| {
            ApiError::internal(format!("revision {} of {repo}: {e}", d))
        })?))
    }

    /// Media type, size and digest of a manifest (HEAD).
    pub async fn manifest_meta(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<(Digest, RevisionMeta), ApiError> {
        let unknown = || ApiError::new(Code::ManifestUnknown, "manifest unknown");
        let d = self.resolve(repo, reference).await?.ok_or_else(unknown)?;
        let meta = self.revision_meta(repo, &d).await?.ok_or_else(unknown)?;
        Ok((d, meta))
    }

    /// Fetches a manifest by tag or digest.
    pub async fn manifest_get(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Fetched, ApiError> {
        let (d, meta) = self.manifest_meta(repo, reference).await?;
        let body = self.driver.get(&blob_path(&d)).await?.ok_or_else(|| {
            ApiError::new(Code::ManifestUnknown, format!("content of {d} missing"))
        })?;
        Ok(Fetched {
            body,
            media_type: meta.media_type,
            digest: d,
        })
    }

    /// Validates and stores a manifest.
    pub async fn manifest_put(
        &self,
        repo: &str,
        put: &ManifestPut<'_>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Pushed, ApiError> {
        let reference = put.reference;
        if let Some(t) = put.tags.iter().find(|t| !valid_tag(t)) {
            return Err(ApiError::new(
                Code::ManifestInvalid,
                format!("invalid tag {t:?}"),
            ));
        }
        let parsed = manifest::parse(body, content_type)
            .map_err(|e| ApiError::new(Code::ManifestInvalid, e.0))?;
        let digest = match reference {
            Reference::Digest(want) => {
                let got = Digest::compute(want.algorithm(), body);
                if &got != want {
                    return Err(ApiError::new(
                        Code::DigestInvalid,
                        format!("reference is {want} but the manifest hashes to {got}"),
                    ));
                }
                got
            }
            Reference::Tag(_) => Digest::compute(put.algorithm, body),
        };
        for b in parsed.blobs.iter().filter(|b| !b.foreign) {
            // Touch first so a concurrent GC sees the blob as young.
            self.driver.touch(&blob_path(&b.digest)).await?;
            if self.blob_stat(repo, &b.digest).await?.is_none() {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    format!(
                        "blob {} ({}) is not in repository {repo}",
                        b.digest, b.media_type
                    ),
                ));
            }
        }
        for m in &parsed.manifests {
            self.driver.touch(&blob_path(&m.digest)).await?;
            if self
                .driver
                .stat(&revision(repo, &m.digest))
                .await?
                .is_none()
            {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    format!("manifest {} is not in repository {repo}", m.digest),
                ));
            }
        }
        let bp = blob_path(&digest);
        if !self.driver.touch(&bp).await? {
            self.driver.put(&bp, body).await?;
        }
        let meta = RevisionMeta {
            media_type: parsed.media_type.clone(),
            size: body.len() as u64,
            subject: parsed.subject.as_ref().map(|s| s.digest.to_string()),
        };
        self.driver
            .put(
                &revision(repo, &digest),
                serde_json::to_string(&meta).expect("meta json").as_bytes(),
            )
            .await?;
        if let Some(subject) = &parsed.subject {
            let mut desc = serde_json::json!({
                "mediaType": parsed.media_type,
                "digest": digest.to_string(),
                "size": body.len(),
            });
            if let Some(at) = &parsed.artifact_type {
                desc["artifactType"] = at.clone().into();
            }
            if let Some(a) = &parsed.annotations {
                desc["annotations"] = a.clone();
            }
            self.driver
                .put(
                    &format!(
                        "{}/{}-{}",
                        referrers_dir(repo, &subject.digest),
                        digest.algorithm().name(),
                        digest.hex()
                    ),
                    desc.to_string().as_bytes(),
                )
                .await?;
        }
        let named = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        for t in named.into_iter().chain(put.tags) {
            self.driver
                .put(
                    &format!("{}/{t}", tags_dir(repo)),
                    digest.to_string().as_bytes(),
                )
                .await?;
        }
        Ok(Pushed {
            digest,
            subject: parsed.subject.map(|s| s.digest),
            tags: put.tags.to_vec(),
        })
    }

    /// Deletes a tag, or a manifest (and the tags pointing to it) by digest.
    pub async fn manifest_delete(&self, repo: &str, reference: &Reference) -> Result<(), ApiError> {
        match reference {
            Reference::Tag(t) => {
                if !self
                    .driver
                    .delete(&format!("{}/{t}", tags_dir(repo)))
                    .await?
                {
                    return Err(ApiError::new(
                        Code::ManifestUnknown,
                        format!("tag {t} unknown"),
                    ));
                }
            }
            Reference::Digest(d) => {
                let Some(meta) = self.revision_meta(repo, d).await? else {
                    return Err(ApiError::new(
                        Code::ManifestUnknown,
                        format!("manifest {d} unknown"),
                    ));
                };
                self.unlink_manifest(repo, d, &meta).await?;
            }
        }
        Ok(())
    }

    /// Removes a manifest revision, its tags and its referrer entry.
    pub async fn unlink_manifest(
        &self,
        repo: &str,
        d: &Digest,
        meta: &RevisionMeta,
    ) -> Result<(), ApiError> {
        let ds = d.to_string();
        for t in self.driver.list(&tags_dir(repo)).await? {
            let p = format!("{}/{t}", tags_dir(repo));
            if let Some(raw) = self.driver.get(&p).await? {
                if String::from_utf8_lossy(&raw).trim() == ds {
                    self.driver.delete(&p).await?;
                }
            }
        }
        if let Some(subject) = meta
            .subject
            .as_deref()
            .and_then(|s| s.parse::<Digest>().ok())
        {
            self.driver
                .delete(&format!(
                    "{}/{}-{}",
                    referrers_dir(repo, &subject),
                    d.algorithm().name(),
                    d.hex()
                ))
                .await?;
        }
        self.driver.delete(&revision(repo, d)).await?;
        Ok(())
    }

    /// All tags of a repository, sorted; `None` if the repository is unknown.
    pub async fn tags(&self, repo: &str) -> Result<Option<Vec<String>>, ApiError> {
        if !self.repo_exists(repo).await? {
            return Ok(None);
        }
        let mut t = self.driver.list(&tags_dir(repo)).await?;
        t.sort();
        Ok(Some(t))
    }

    /// Referrer descriptors of `subject` in `repo`, filtered by artifact type.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let dir = referrers_dir(repo, subject);
        let mut out = Vec::new();
        for name in self.driver.list(&dir).await? {
            let Some(raw) = self.driver.get(&format!("{dir}/{name}")).await? else {
                continue;
            };
            let Ok(desc) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            if let Some(at) = artifact_type {
                if desc["artifactType"].as_str() != Some(at) {
                    continue;
                }
            }
            out.push(desc);
        }
        Ok(out)
    }

    /// Names of all repositories, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>, ApiError> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let dir = if prefix.is_empty() {
                "repositories".to_string()
            } else {
                format!("repositories/{prefix}")
            };
            let children = self.driver.list(&dir).await?;
            if children.iter().any(|c| c == "_manifests" || c == "_layers") && !prefix.is_empty() {
                out.push(prefix.clone());
            }
            for c in children.into_iter().filter(|c| !c.starts_with('_')) {
                stack.push(if prefix.is_empty() {
                    c
                } else {
                    format!("{prefix}/{c}")
                });
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The `Range` header value for an upload holding `offset` bytes.
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

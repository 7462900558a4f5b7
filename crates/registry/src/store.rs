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
use crate::storage::{BoxRead, Driver, Meta, StorageError};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

mod manifests;
mod uploads;

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

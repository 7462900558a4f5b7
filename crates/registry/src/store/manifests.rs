//! Manifests: resolving references, reading, writing (with tags and
//! referrers), deleting and unlinking revisions.

use super::{
    blob_path, referrers_dir, revision, tags_dir, valid_tag, Fetched, ManifestPut, Pushed,
    Reference, RevisionMeta, Store,
};
use crate::digest::Digest;
use crate::error::{ApiError, Code};
use crate::manifest;

impl Store {
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
}

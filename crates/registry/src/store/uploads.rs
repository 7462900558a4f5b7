//! Upload sessions: start, resume after a restart, append (hashing as the
//! data streams in), finish (verify, fsync, rename into `blobs/`) and cancel.

use super::{
    blob_path, layer_link, range_header, upload_dir, upload_unknown, Session, Store, Upload,
    MAX_CACHED_UPLOADS,
};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{ApiError, Code};
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

impl Store {
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
                return Err(wrong_offset(start, up.offset)
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
                return Err(wrong_offset(start, up.offset));
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
}

/// A chunk that does not start where the upload ends: 416 with the
/// upload's current `Range`.
fn wrong_offset(start: u64, offset: u64) -> ApiError {
    ApiError::new(
        Code::BlobUploadInvalid,
        format!("chunk starts at {start} but the upload has {offset} bytes"),
    )
    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    .with_header("Range", range_header(offset))
}

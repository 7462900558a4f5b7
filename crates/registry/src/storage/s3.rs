//! S3-compatible object-storage driver (via the `object_store` crate), so
//! several `skiff registry serve` replicas can share one bucket.
//!
//! S3 has no append and no mtime update, so two conventions map the
//! [`Driver`] contract onto it:
//! - appended objects (upload data) are stored as ordered part objects
//!   `<path>.parts/<offset>`; `stat`/`reader` see their concatenation and
//!   `rename` assembles them into the target (server-side copy for a single
//!   part, a streamed multipart upload otherwise);
//! - `touch` writes a marker `<path>.touch`; `stat` of content objects
//!   (`.../data`) reports the newer of object and marker, which is what GC's
//!   grace window reads.

use super::{Appender, BoxRead, Driver, Meta, StorageError};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Connection settings of the S3 driver.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (e.g. `http://127.0.0.1:9000`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key id.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

const SMALL: usize = 8 << 20;

/// S3 storage.
#[derive(Clone, Debug)]
pub struct S3Driver {
    store: Arc<AmazonS3>,
    prefix: String,
}

fn err(op: &'static str, path: &str, e: object_store::Error) -> StorageError {
    StorageError::io(op, path, std::io::Error::other(e.to_string()))
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn to_meta(m: &object_store::ObjectMeta) -> Meta {
    Meta {
        size: m.size,
        modified: SystemTime::from(m.last_modified),
    }
}

impl S3Driver {
    /// Connects (lazily) to the bucket.
    pub fn new(cfg: &S3Config) -> Result<Self, StorageError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region);
        if let Some(e) = &cfg.endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &cfg.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &cfg.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store = b.build().map_err(|e| err("configure", &cfg.bucket, e))?;
        Ok(S3Driver {
            store: Arc::new(store),
            prefix: cfg.prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, path: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(path)
        } else {
            Path::from(format!("{}/{path}", self.prefix))
        }
    }

    async fn head(&self, path: &str) -> Result<Option<Meta>, StorageError> {
        match self.store.head(&self.key(path)).await {
            Ok(m) => Ok(Some(to_meta(&m))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(err("head", path, e)),
        }
    }

    /// Part objects of an appended object, in order: (key, offset, meta).
    async fn parts(&self, path: &str) -> Result<Vec<(Path, Meta)>, StorageError> {
        let prefix = self.key(&format!("{path}.parts"));
        let mut v: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| err("list", path, e))?;
        v.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        Ok(v.iter().map(|m| (m.location.clone(), to_meta(m))).collect())
    }

    async fn delete_prefix(&self, prefix: &Path, path: &str) -> Result<bool, StorageError> {
        let list: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| err("list", path, e))?;
        for m in &list {
            match self.store.delete(&m.location).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(err("delete", path, e)),
            }
        }
        Ok(!list.is_empty())
    }
}

struct S3Appender {
    driver: S3Driver,
    path: String,
    base: u64,
    buf: Vec<u8>,
    multi: Option<WriteMultipart>,
    written: u64,
}

#[async_trait]
impl Appender for S3Appender {
    async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.written += data.len() as u64;
        if let Some(m) = self.multi.as_mut() {
            m.wait_for_capacity(4)
                .await
                .map_err(|e| err("upload part", &self.path, e))?;
            m.write(data);
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > SMALL {
            let key = self.part_key();
            let up = self
                .driver
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| err("start multipart", &self.path, e))?;
            let mut m = WriteMultipart::new(up);
            m.put(Bytes::from(std::mem::take(&mut self.buf)));
            self.multi = Some(m);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<u64, StorageError> {
        let key = self.part_key();
        let S3Appender {
            driver,
            path,
            base,
            buf,
            multi,
            written,
        } = *self;
        if let Some(m) = multi {
            m.finish()
                .await
                .map_err(|e| err("complete multipart", &path, e))?;
        } else if written > 0 || base == 0 {
            driver
                .store
                .put(&key, PutPayload::from(buf))
                .await
                .map_err(|e| err("put part", &path, e))?;
        }
        Ok(base + written)
    }
}

impl S3Appender {
    fn part_key(&self) -> Path {
        self.driver
            .key(&format!("{}.parts/{:020}", self.path, self.base))
    }
}

#[async_trait]
impl Driver for S3Driver {
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self.store.get(&self.key(path)).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(|e| err("get", path, e))?.to_vec(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(err("get", path, e)),
        }
    }

    async fn put(&self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        self.store
            .put(&self.key(path), PutPayload::from(data.to_vec()))
            .await
            .map(|_| ())
            .map_err(|e| err("put", path, e))
    }

    async fn stat(&self, path: &str) -> Result<Option<Meta>, StorageError> {
        if let Some(mut m) = self.head(path).await? {
            if path.ends_with("/data") {
                if let Some(t) = self.head(&format!("{path}.touch")).await? {
                    m.modified = m.modified.max(t.modified);
                }
            }
            return Ok(Some(m));
        }
        let parts = self.parts(path).await?;
        if !parts.is_empty() {
            return Ok(Some(Meta {
                size: parts.iter().map(|(_, m)| m.size).sum(),
                modified: parts
                    .iter()
                    .map(|(_, m)| m.modified)
                    .max()
                    .unwrap_or(UNIX_EPOCH),
            }));
        }
        // A "directory": anything below the prefix.
        let below = self
            .store
            .list_with_delimiter(Some(&self.key(path)))
            .await
            .map_err(|e| err("list", path, e))?;
        if below.objects.is_empty() && below.common_prefixes.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Meta {
                size: 0,
                modified: UNIX_EPOCH,
            }))
        }
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
    ) -> Result<Option<(BoxRead, Meta)>, StorageError> {
        let key = self.key(path);
        let meta = self.head(path).await?;
        let (segments, meta): (Vec<(Path, u64)>, Meta) = match meta {
            Some(m) => (vec![(key, offset)], m),
            None => {
                let parts = self.parts(path).await?;
                if parts.is_empty() {
                    return Ok(None);
                }
                let total = parts.iter().map(|(_, m)| m.size).sum();
                let modified = parts
                    .iter()
                    .map(|(_, m)| m.modified)
                    .max()
                    .unwrap_or(UNIX_EPOCH);
                let mut segs = Vec::new();
                let mut pos = 0u64;
                for (k, m) in parts {
                    let end = pos + m.size;
                    if end > offset && m.size > 0 {
                        segs.push((k, offset.saturating_sub(pos)));
                    }
                    pos = end;
                }
                (
                    segs,
                    Meta {
                        size: total,
                        modified,
                    },
                )
            }
        };
        if offset >= meta.size {
            let empty: BoxRead = Box::pin(tokio::io::empty());
            return Ok(Some((empty, meta)));
        }
        let store = self.store.clone();
        let p = path.to_string();
        let stream = futures_util::stream::iter(segments)
            .then(move |(k, off)| {
                let store = store.clone();
                let p = p.clone();
                async move {
                    let opts = GetOptions {
                        range: (off > 0).then_some(GetRange::Offset(off)),
                        ..Default::default()
                    };
                    let r = store
                        .get_opts(&k, opts)
                        .await
                        .map_err(|e| std::io::Error::other(format!("{p}: {e}")))?;
                    Ok::<_, std::io::Error>(
                        r.into_stream()
                            .map_err(|e| std::io::Error::other(e.to_string())),
                    )
                }
            })
            .try_flatten();
        let reader: BoxRead = Box::pin(tokio_util::io::StreamReader::new(Box::pin(stream)));
        Ok(Some((reader, meta)))
    }

    async fn appender(&self, path: &str) -> Result<Box<dyn Appender>, StorageError> {
        let base = match self.head(path).await? {
            Some(_) => {
                return Err(StorageError::io(
                    "append",
                    path,
                    std::io::Error::other("object exists and is not appendable"),
                ))
            }
            None => self.parts(path).await?.iter().map(|(_, m)| m.size).sum(),
        };
        Ok(Box::new(S3Appender {
            driver: self.clone(),
            path: path.to_string(),
            base,
            buf: Vec::new(),
            multi: None,
            written: 0,
        }))
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let r = self
            .store
            .list_with_delimiter(Some(&self.key(dir)))
            .await
            .map_err(|e| err("list", dir, e))?;
        let mut out: Vec<String> = r
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .chain(
                r.objects
                    .iter()
                    .filter_map(|m| m.location.filename().map(str::to_string)),
            )
            .filter(|n| !n.ends_with(".touch") && !n.ends_with(".parts"))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let mut existed = self.head(path).await?.is_some();
        match self.store.delete(&self.key(path)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(err("delete", path, e)),
        }
        // S3 DELETE succeeds on absent keys; count what listing finds.
        existed |= self
            .delete_prefix(&self.key(&format!("{path}.parts")), path)
            .await?;
        existed |= self.delete_prefix(&self.key(path), path).await?;
        let _ = self.store.delete(&self.key(&format!("{path}.touch"))).await;
        Ok(existed)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (src, dst) = (self.key(from), self.key(to));
        if self.head(from).await?.is_some() {
            self.store
                .copy(&src, &dst)
                .await
                .map_err(|e| err("copy", to, e))?;
            self.store
                .delete(&src)
                .await
                .map_err(|e| err("delete", from, e))?;
            return Ok(());
        }
        let parts = self.parts(from).await?;
        match parts.len() {
            0 => {
                return Err(StorageError::io(
                    "rename",
                    from,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ))
            }
            1 => self
                .store
                .copy(&parts[0].0, &dst)
                .await
                .map_err(|e| err("copy", to, e))?,
            _ => {
                let up = self
                    .store
                    .put_multipart(&dst)
                    .await
                    .map_err(|e| err("start multipart", to, e))?;
                let mut w = WriteMultipart::new(up);
                for (k, _) in &parts {
                    let mut s = self
                        .store
                        .get(k)
                        .await
                        .map_err(|e| err("get", from, e))?
                        .into_stream();
                    while let Some(chunk) = s.next().await {
                        let chunk = chunk.map_err(|e| err("get", from, e))?;
                        w.wait_for_capacity(4)
                            .await
                            .map_err(|e| err("upload part", to, e))?;
                        w.put(chunk);
                    }
                }
                w.finish()
                    .await
                    .map_err(|e| err("complete multipart", to, e))?;
            }
        }
        self.delete_prefix(&self.key(&format!("{from}.parts")), from)
            .await?;
        Ok(())
    }

    async fn retire(
        &self,
        path: &str,
        _trash: &str,
        cutoff: SystemTime,
    ) -> Result<bool, StorageError> {
        // No atomic move on S3 (a copy resets the mtime): re-check object and
        // touch marker right before deleting.
        if self.stat(path).await?.is_some_and(|m| m.modified >= cutoff) {
            return Ok(false);
        }
        self.delete(path).await?;
        Ok(true)
    }

    async fn touch(&self, path: &str) -> Result<bool, StorageError> {
        if self.head(path).await?.is_none() {
            return Ok(false);
        }
        self.put(&format!("{path}.touch"), b"").await?;
        Ok(true)
    }
}

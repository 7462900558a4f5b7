//! Resumable blob downloads into the store: one writer per partial file
//! (`ingest/<hex>.partial`, flock'ed), replay of what an interrupted download
//! already fetched, `Range` requests with retries, and verification against
//! the descriptor before the blob is committed.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};

use super::{backoff, Client, ClientError};
use crate::digest::Hasher;
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::store::Store;

impl Client {
    /// Downloads a blob into the store, resuming a partial download and
    /// feeding every byte (in order) to `tx` when given. Returns
    /// `(downloaded, resumed)` byte counts.
    pub(super) async fn fetch_blob(
        &self,
        store: &Store,
        r: &Reference,
        d: &Descriptor,
        tx: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
        pb: &indicatif::ProgressBar,
    ) -> Result<(u64, u64), ClientError> {
        let part = store.ingest_path(&d.digest);
        let mut tx = tx;
        let Some(f) = lock_partial(store, d, &part, &mut tx, pb).await? else {
            return Ok((0, 0));
        };
        let mut ing = Ingest {
            f,
            part,
            hasher: Hasher::new(),
            tx,
            offset: 0,
        };
        ing.offset = ing.f.metadata().map_err(|e| ing.io(e))?.len();
        if ing.offset > d.size {
            ing.f.set_len(0).map_err(|e| ing.io(e))?;
            ing.offset = 0;
        }
        // Replay what an interrupted download already fetched.
        let resumed = ing.offset;
        ing.replay().await?;
        let offset = ing.offset;
        ing.f
            .seek(std::io::SeekFrom::Start(offset))
            .map_err(|e| ing.io(e))?;
        pb.set_position(offset);
        let downloaded = self.download_rest(r, d, &mut ing, pb).await?;
        let Ingest {
            f, part, hasher, ..
        } = ing;
        let verified = hasher.verify(&format!("blob {}", d.digest), &d.digest, Some(d.size));
        if let Err(e) = verified {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
        f.sync_all().map_err(|e| ClientError::Io {
            path: part.clone(),
            source: e,
        })?;
        drop(f);
        store.commit_file(&part, &d.digest)?;
        Ok((downloaded, resumed))
    }

    /// Fetches the rest of a blob (from `ing.offset`), retrying with
    /// `Range` requests; returns the bytes downloaded.
    async fn download_rest(
        &self,
        r: &Reference,
        d: &Descriptor,
        ing: &mut Ingest,
        pb: &indicatif::ProgressBar,
    ) -> Result<u64, ClientError> {
        let url = self.url(r, &format!("blobs/{}", d.digest)).await?;
        let mut downloaded = 0u64;
        let mut attempt = 0u32;
        while ing.offset < d.size {
            let offset = ing.offset;
            let mut h = HeaderMap::new();
            if offset > 0 {
                h.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("range header"),
                );
            }
            let resp = self.send(r, "pull", Method::GET, &url, h, None).await?;
            let skip = match resp.status() {
                StatusCode::PARTIAL_CONTENT => 0,
                StatusCode::OK => offset,
                _ => return Err(Self::status_error(Method::GET, &url, resp).await),
            };
            let failed = ing.receive(resp, skip, d, &mut downloaded, pb).await?;
            if ing.offset < d.size {
                attempt += 1;
                if attempt >= self.opts.retries {
                    let reason = failed
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "connection closed early".into());
                    return Err(ClientError::Invalid(format!(
                        "blob {}: download interrupted at {}/{} bytes: {reason}",
                        d.digest, ing.offset, d.size
                    )));
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(downloaded)
    }
}

/// Waits for the exclusive lock on a blob's partial file. Returns `None`
/// when the blob is (or became) stored, after streaming it to `tx`: one
/// writer per partial file, so concurrent pulls of the same blob wait for
/// each other through an flock on it, then reuse the result.
async fn lock_partial(
    store: &Store,
    d: &Descriptor,
    part: &Path,
    tx: &mut Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    pb: &indicatif::ProgressBar,
) -> Result<Option<std::fs::File>, ClientError> {
    let io = |e: std::io::Error| ClientError::Io {
        path: part.to_path_buf(),
        source: e,
    };
    loop {
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
            return Ok(None);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)
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
        let same = match (f.metadata(), std::fs::metadata(part)) {
            (Ok(a), Ok(b)) => {
                std::os::unix::fs::MetadataExt::ino(&a) == std::os::unix::fs::MetadataExt::ino(&b)
            }
            _ => false,
        };
        if same && !store.has_blob(&d.digest, Some(d.size)) {
            return Ok(Some(f));
        }
    }
}

/// A blob download in progress: the locked partial file, the running
/// digest and the optional consumer of the bytes (the unpacker).
struct Ingest {
    f: std::fs::File,
    part: PathBuf,
    hasher: Hasher,
    tx: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    offset: u64,
}

impl Ingest {
    fn io(&self, e: std::io::Error) -> ClientError {
        ClientError::Io {
            path: self.part.clone(),
            source: e,
        }
    }

    /// Sends `c` to the consumer; drops the consumer once it hung up.
    async fn forward(&mut self, c: bytes::Bytes) {
        if let Some(t) = &self.tx {
            if t.send(c).await.is_err() {
                self.tx = None;
            }
        }
    }

    /// Hashes and forwards the `offset` bytes already in the partial file.
    async fn replay(&mut self) -> Result<(), ClientError> {
        if self.offset == 0 {
            return Ok(());
        }
        self.f
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| self.io(e))?;
        let mut left = self.offset;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = self
                .f
                .read(&mut buf[..left.min(1 << 20) as usize])
                .map_err(|e| self.io(e))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            self.forward(bytes::Bytes::copy_from_slice(&buf[..n])).await;
            left -= n as u64;
        }
        Ok(())
    }

    /// Appends a response body (minus its first `skip` bytes) to the
    /// partial file; returns the transport error that cut it short, if any.
    async fn receive(
        &mut self,
        mut resp: reqwest::Response,
        mut skip: u64,
        d: &Descriptor,
        downloaded: &mut u64,
        pb: &indicatif::ProgressBar,
    ) -> Result<Option<reqwest::Error>, ClientError> {
        loop {
            let mut c = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(None),
                Err(e) => return Ok(Some(e)),
            };
            if skip > 0 {
                let s = skip.min(c.len() as u64) as usize;
                let _ = c.split_to(s);
                skip -= s as u64;
            }
            if c.is_empty() {
                continue;
            }
            if self.offset + c.len() as u64 > d.size {
                return Err(ClientError::Invalid(format!(
                    "blob {}: server sent more than the descriptor's {} bytes",
                    d.digest, d.size
                )));
            }
            self.f.write_all(&c).map_err(|e| self.io(e))?;
            self.hasher.update(&c);
            self.offset += c.len() as u64;
            *downloaded += c.len() as u64;
            pb.set_position(self.offset);
            self.forward(c).await;
        }
    }
}

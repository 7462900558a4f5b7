//! Storage drivers: a small path-oriented interface the registry logic is
//! written against, so the filesystem backend can be swapped for an object
//! store (S3) without touching the API layer.
//!
//! Paths are `/`-separated, relative, and never contain `..` (the API layer
//! validates repository names and digests before building them).

pub mod fs;
pub mod s3;

use async_trait::async_trait;
use std::pin::Pin;
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// A storage failure, naming the path at fault.
#[derive(Debug, thiserror::Error)]
#[error("storage: {op} {path}: {source}")]
pub struct StorageError {
    /// Operation that failed.
    pub op: &'static str,
    /// Path (relative to the storage root) at fault.
    pub path: String,
    /// Underlying I/O error.
    #[source]
    pub source: std::io::Error,
}

impl StorageError {
    /// Wraps an I/O error.
    pub fn io(op: &'static str, path: &str, source: std::io::Error) -> Self {
        StorageError {
            op,
            path: path.to_string(),
            source,
        }
    }
}

/// Metadata of a stored object.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// A boxed async reader.
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;

/// An append-only writer for upload data; `finish` makes the data durable.
#[async_trait]
pub trait Appender: Send {
    /// Appends bytes.
    async fn write(&mut self, data: &[u8]) -> Result<(), StorageError>;
    /// Flushes (not necessarily durably; see [`Driver::sync`]); returns the
    /// object's total size.
    async fn finish(self: Box<Self>) -> Result<u64, StorageError>;
}

/// The interface every storage backend implements.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Reads a small object whole; `None` if absent.
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes a small object atomically and durably (replacing it).
    async fn put(&self, path: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Size and mtime; `None` if absent.
    async fn stat(&self, path: &str) -> Result<Option<Meta>, StorageError>;
    /// Opens an object for streaming from `offset`; `None` if absent.
    async fn reader(
        &self,
        path: &str,
        offset: u64,
    ) -> Result<Option<(BoxRead, Meta)>, StorageError>;
    /// Opens (creating) an object for appending.
    async fn appender(&self, path: &str) -> Result<Box<dyn Appender>, StorageError>;
    /// Names of the direct children of a directory/prefix (empty if absent).
    async fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Deletes an object or a whole prefix; returns whether anything existed.
    async fn delete(&self, path: &str) -> Result<bool, StorageError>;
    /// Moves an object atomically and durably (replacing the target).
    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Makes an object's data durable (fsync); a no-op where writes are.
    async fn sync(&self, _path: &str) -> Result<(), StorageError> {
        Ok(())
    }
    /// Sets an object's modification time to now (GC grace marking).
    async fn touch(&self, path: &str) -> Result<bool, StorageError>;
    /// Deletes `path` unless it was modified at or after `cutoff`, closing
    /// the race with a concurrent `touch`: the object is first moved to
    /// `trash` (atomic), re-checked there and moved back if it turned young.
    /// Returns whether it was deleted.
    async fn retire(
        &self,
        path: &str,
        trash: &str,
        cutoff: SystemTime,
    ) -> Result<bool, StorageError> {
        self.rename(path, trash).await?;
        let young = self
            .stat(trash)
            .await?
            .is_some_and(|m| m.modified >= cutoff);
        if young {
            self.rename(trash, path).await?;
            return Ok(false);
        }
        self.delete(trash).await?;
        Ok(true)
    }
    /// Streams an object through `f` chunk by chunk (used to re-hash uploads).
    async fn for_each_chunk(
        &self,
        path: &str,
        f: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncReadExt;
        if let Some((mut r, _)) = self.reader(path, 0).await? {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = r
                    .read(&mut buf)
                    .await
                    .map_err(|e| StorageError::io("read", path, e))?;
                if n == 0 {
                    break;
                }
                f(&buf[..n]);
            }
        }
        Ok(())
    }
}

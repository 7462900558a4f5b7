//! Filesystem driver: objects are plain files under a root directory.
//!
//! Small objects are written to a temp file in the same directory, fsynced,
//! renamed over the target and the directory fsynced, so a crash leaves
//! either the old or the new content, never a torn file.

use super::{Appender, BoxRead, Driver, Meta, StorageError};
use async_trait::async_trait;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Filesystem storage rooted at a directory.
#[derive(Clone, Debug)]
pub struct FsDriver {
    root: PathBuf,
}

impl FsDriver {
    /// Creates the root directory if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StorageError::io("mkdir", &root.display().to_string(), e))?;
        Ok(FsDriver { root })
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    Meta {
        size: m.len(),
        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
    }
}

struct FsAppender {
    path: String,
    file: tokio::io::BufWriter<tokio::fs::File>,
}

#[async_trait]
impl Appender for FsAppender {
    async fn write(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| StorageError::io("write", &self.path, e))
    }
    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        let p = self.path.clone();
        self.file
            .flush()
            .await
            .map_err(|e| StorageError::io("flush", &p, e))?;
        let f = self.file.get_mut();
        let m = f
            .metadata()
            .await
            .map_err(|e| StorageError::io("stat", &p, e))?;
        Ok(m.len())
    }
}

#[async_trait]
impl Driver for FsDriver {
    async fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match tokio::fs::read(self.full(path)).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                Ok(None)
            }
            Err(e) => Err(StorageError::io("read", path, e)),
        }
    }

    async fn put(&self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        let full = self.full(path);
        let data = data.to_vec();
        let p = path.to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = full.parent().expect("object path has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            let res = (|| {
                let mut f = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut f, &data)?;
                f.sync_data()?;
                std::fs::rename(&tmp, &full)?;
                sync_dir(dir)
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        })
        .await
        .expect("put task panicked")
        .map_err(|e| StorageError::io("put", &p, e))
    }

    async fn stat(&self, path: &str) -> Result<Option<Meta>, StorageError> {
        match tokio::fs::metadata(self.full(path)).await {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                Ok(None)
            }
            Err(e) => Err(StorageError::io("stat", path, e)),
        }
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
    ) -> Result<Option<(BoxRead, Meta)>, StorageError> {
        let mut f = match tokio::fs::File::open(self.full(path)).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                return Ok(None)
            }
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let m = f
            .metadata()
            .await
            .map_err(|e| StorageError::io("stat", path, e))?;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| StorageError::io("seek", path, e))?;
        }
        f.set_max_buf_size(1 << 20);
        Ok(Some((Box::pin(f), meta_of(&m))))
    }

    async fn appender(&self, path: &str) -> Result<Box<dyn Appender>, StorageError> {
        let full = self.full(path);
        if let Some(dir) = full.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StorageError::io("mkdir", path, e))?;
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&full)
            .await
            .map_err(|e| StorageError::io("open", path, e))?;
        f.set_max_buf_size(1 << 20);
        Ok(Box::new(FsAppender {
            path: path.to_string(),
            file: tokio::io::BufWriter::with_capacity(1 << 20, f),
        }))
    }

    async fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let mut rd = match tokio::fs::read_dir(self.full(dir)).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(StorageError::io("readdir", dir, e)),
        };
        let mut out = Vec::new();
        while let Some(ent) = rd
            .next_entry()
            .await
            .map_err(|e| StorageError::io("readdir", dir, e))?
        {
            let name = ent.file_name().to_string_lossy().into_owned();
            if !name.starts_with(".tmp-") {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path);
        let res = match tokio::fs::symlink_metadata(&full).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&full).await,
            Ok(_) => tokio::fs::remove_file(&full).await,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                return Ok(false)
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io("delete", path, e)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (f, t) = (self.full(from), self.full(to));
        let p = to.to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let dir = t.parent().expect("object path has a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&f, &t)?;
            sync_dir(dir)
        })
        .await
        .expect("rename task panicked")
        .map_err(|e| StorageError::io("rename", &p, e))
    }

    async fn sync(&self, path: &str) -> Result<(), StorageError> {
        let full = self.full(path);
        let p = path.to_string();
        tokio::task::spawn_blocking(move || std::fs::File::open(full)?.sync_data())
            .await
            .expect("sync task panicked")
            .map_err(|e| StorageError::io("fsync", &p, e))
    }

    async fn touch(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path);
        let p = path.to_string();
        tokio::task::spawn_blocking(move || {
            match std::fs::File::options().write(true).open(&full) {
                Ok(f) => f.set_modified(std::time::SystemTime::now()).map(|_| true),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
        .expect("touch task panicked")
        .map_err(|e| StorageError::io("touch", &p, e))
    }
}

//! The content store: an OCI image layout under the store directory
//! (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), plus skiff's own
//! `ingest/` (partial downloads), `snapshots/` (unpacked layers),
//! `containers/` (bundles) and `tmp/`. The store directory, `snapshots/`
//! and `containers/` are 0700 (an existing looser one is tightened with a
//! warning when the store is opened): they hold the images' setuid files.
//!
//! Blobs are written to a temp file, fsynced and renamed into place, so a
//! crash never leaves a half blob under its digest and concurrent writers of
//! the same blob simply race to an identical rename. `index.json` is
//! rewritten (temp + rename) under an exclusive `flock` on `index.lock`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestError, HashReader, Hasher};
use crate::manifest::{self, Descriptor, ImageConfig, Index, Manifest, REF_NAME};
use crate::reference::Reference;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on a store path.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Content failed verification.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A JSON document in the store is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// No image of that name.
    #[error("image not found: {0}")]
    NotFound(String),
    /// Something else about the content is wrong.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image in the store: its name and manifest descriptor.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Normalized reference (`docker.io/library/alpine:latest`).
    pub name: String,
    /// Descriptor of the (platform) manifest.
    pub manifest: Descriptor,
}

/// Removal counts reported by [`Store::prune`].
#[derive(Debug, Default, Clone)]
pub struct PruneStats {
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes of blobs removed.
    pub bytes: u64,
    /// Snapshots removed.
    pub snapshots: usize,
}

/// Handle on a store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on `index.json`, released on drop.
pub struct IndexLock {
    _file: File,
}

impl Store {
    /// Opens (creating when missing) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        // Snapshots and bundles hold the images' setuid files: nobody but
        // root may reach them, so the root and both are private.
        skiff_sys::fs::ensure_private_dir(root, 0o700).map_err(io_err(root))?;
        for sub in ["snapshots", "containers"] {
            let p = root.join(sub);
            skiff_sys::fs::ensure_private_dir(&p, 0o700).map_err(io_err(&p))?;
        }
        for sub in ["blobs/sha256", "ingest", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _l = Store {
                root: root.to_path_buf(),
            }
            .lock_index()?;
            if !index.exists() {
                write_atomic(
                    &index,
                    &serde_json::to_vec(&Index::empty()).expect("index json"),
                )?;
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a blob.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// Path of a partial download of a blob.
    pub fn ingest_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", d.hex()))
    }

    /// Directory for temporary files (same file system as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Directory of the unpacked layer with this chain id.
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain_id.hex())
    }

    /// Directory holding container bundles.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Whether the blob is present with the expected size.
    pub fn has_blob(&self, d: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(d)) {
            Ok(m) => size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Reads a whole blob and verifies it (for manifests and configs).
    pub fn read_blob(&self, d: &Digest, size: Option<u64>) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        let data = fs::read(&p).map_err(io_err(&p))?;
        d.verify(&format!("blob {}", p.display()), &data, size)?;
        Ok(data)
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(io_err(&p))
    }

    /// Stores `data` as a blob (idempotent); returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        if !self.has_blob(&d, Some(data.len() as u64)) {
            write_atomic(&self.blob_path(&d), data)?;
        }
        Ok(d)
    }

    /// Copies a reader into the store, verifying it against `expected`
    /// (digest and size) when given; returns the digest and size.
    pub fn write_blob_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp =
            tempfile::NamedTempFile::new_in(self.tmp_dir()).map_err(io_err(&self.tmp_dir()))?;
        let mut hr = HashReader {
            inner: reader,
            hasher: Hasher::new(),
        };
        let mut f = tmp.as_file();
        io::copy(&mut hr, &mut f).map_err(io_err(tmp.path()))?;
        let n = hr.hasher.len();
        let d = hr.hasher.finish();
        if let Some((e, size)) = expected {
            if *e != d || size != n {
                return Err(DigestError::Mismatch {
                    what: "blob".into(),
                    expected: e.clone(),
                    expected_size: size,
                    actual: d,
                    actual_size: n,
                }
                .into());
            }
        }
        f.sync_all().map_err(io_err(tmp.path()))?;
        let dest = self.blob_path(&d);
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((d, n))
    }

    /// Moves a verified, fsynced file into the store as blob `d`.
    pub fn commit_file(&self, path: &Path, d: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        fs::rename(path, &dest).map_err(io_err(&dest))
    }

    /// Takes the exclusive lock on index.json.
    pub fn lock_index(&self) -> Result<IndexLock, StoreError> {
        let p = self.root.join("index.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            StoreError::Io {
                path: p.clone(),
                source: e.into(),
            }
        })?;
        Ok(IndexLock { _file: f })
    }

    /// Reads index.json.
    pub fn read_index(&self) -> Result<Index, StoreError> {
        let p = self.root.join("index.json");
        let data = fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json { path: p, source })
    }

    fn write_index(&self, idx: &Index) -> Result<(), StoreError> {
        let p = self.root.join("index.json");
        write_atomic(&p, &serde_json::to_vec_pretty(idx).expect("index json"))
    }

    /// Names `manifest` as `name` in index.json (replacing an older entry).
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        let _l = self.lock_index()?;
        let mut idx = self.read_index()?;
        idx.manifests.retain(|d| d.ref_name() != Some(name));
        let mut d = manifest.clone();
        d.annotations
            .get_or_insert_with(Default::default)
            .insert(REF_NAME.into(), name.into());
        idx.manifests.push(d);
        self.write_index(&idx)
    }

    /// Removes the index entry `name`; returns whether it existed.
    pub fn untag(&self, name: &str) -> Result<bool, StoreError> {
        let _l = self.lock_index()?;
        let mut idx = self.read_index()?;
        let before = idx.manifests.len();
        idx.manifests.retain(|d| d.ref_name() != Some(name));
        let removed = idx.manifests.len() != before;
        if removed {
            self.write_index(&idx)?;
        }
        Ok(removed)
    }

    /// Lists named images.
    pub fn images(&self) -> Result<Vec<ImageEntry>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                Some(ImageEntry {
                    name: d.ref_name()?.to_string(),
                    manifest: d,
                })
            })
            .collect())
    }

    /// Finds an image by name (normalized), or by manifest digest / its prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageEntry, StoreError> {
        let images = self.images()?;
        if let Ok(r) = Reference::parse(name) {
            let n = r.to_string();
            if let Some(e) = images.iter().find(|e| e.name == n) {
                return Ok(e.clone());
            }
            if let Some(d) = &r.digest {
                if let Some(e) = images.iter().find(|e| e.manifest.digest == *d) {
                    return Ok(e.clone());
                }
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(e) = images
                .iter()
                .find(|e| e.manifest.digest.hex().starts_with(hex))
            {
                return Ok(e.clone());
            }
        }
        images
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| StoreError::NotFound(name.into()))
    }

    /// Reads and parses a manifest blob.
    pub fn manifest(&self, d: &Descriptor) -> Result<Manifest, StoreError> {
        let data = self.read_blob(&d.digest, Some(d.size))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            path: self.blob_path(&d.digest),
            source,
        })
    }

    /// Reads and parses an image config blob.
    pub fn config(&self, m: &Manifest) -> Result<ImageConfig, StoreError> {
        let data = self.read_blob(&m.config.digest, Some(m.config.size))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            path: self.blob_path(&m.config.digest),
            source,
        })
    }

    /// Removes blobs and snapshots no named image refers to.
    pub fn prune(&self) -> Result<PruneStats, StoreError> {
        let _l = self.lock_index()?;
        let mut keep_blobs = HashSet::new();
        let mut keep_snaps = HashSet::new();
        for d in self.read_index()?.manifests {
            keep_blobs.insert(d.digest.hex().to_string());
            let data = match self.read_blob(&d.digest, Some(d.size)) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let mt = manifest::sniff_media_type(&data).unwrap_or_default();
            let manifests: Vec<Manifest> = if manifest::is_index(&mt) {
                let idx: Index =
                    serde_json::from_slice(&data).map_err(|source| StoreError::Json {
                        path: self.blob_path(&d.digest),
                        source,
                    })?;
                idx.manifests
                    .iter()
                    .filter_map(|c| {
                        keep_blobs.insert(c.digest.hex().to_string());
                        self.manifest(c).ok()
                    })
                    .collect()
            } else {
                serde_json::from_slice(&data).into_iter().collect()
            };
            for m in manifests {
                keep_blobs.insert(m.config.digest.hex().to_string());
                for l in &m.layers {
                    keep_blobs.insert(l.digest.hex().to_string());
                }
                if let Ok(cfg) = self.config(&m) {
                    if let Ok(ids) = cfg.diff_ids() {
                        for c in manifest::chain_ids(&ids) {
                            keep_snaps.insert(c.hex().to_string());
                        }
                    }
                }
            }
        }
        let mut stats = PruneStats::default();
        let dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            if !keep_blobs.contains(&name) {
                stats.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
                stats.blobs += 1;
            }
        }
        let dir = self.root.join("snapshots");
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            // Staging dirs of running pulls are left alone (prune of old ones below).
            if name.starts_with(".tmp-") {
                if is_old(&e) {
                    let _ = remove_tree(&e.path());
                }
                continue;
            }
            if !keep_snaps.contains(&name) {
                remove_tree(&e.path()).map_err(io_err(&e.path()))?;
                stats.snapshots += 1;
            }
        }
        for sub in ["ingest", "tmp"] {
            let dir = self.root.join(sub);
            for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
                // Leave fresh files alone: another pull may be writing them.
                if is_old(&e) {
                    let _ = remove_tree(&e.path());
                }
            }
        }
        Ok(stats)
    }
}

fn is_old(e: &fs::DirEntry) -> bool {
    e.metadata()
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().map(|a| a.as_secs() > 3600).unwrap_or(false))
        .unwrap_or(false)
}

/// Removes a file or directory tree (also makes read-only dirs writable).
pub fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `data` to `path` via a temp file in the same directory, fsync and rename.
/// The file is 0600, as every file of the store.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    skiff_sys::fs::write_atomic(path, data, 0o600, skiff_sys::fs::Durability::Disk)
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_index_and_concurrent_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.write_blob(b"{}").unwrap();
        assert!(s.has_blob(&d, Some(2)));
        assert_eq!(s.read_blob(&d, Some(2)).unwrap(), b"{}");
        let desc = Descriptor::new(manifest::OCI_MANIFEST, d.clone(), 2);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                let desc = desc.clone();
                std::thread::spawn(move || {
                    s.tag(&format!("docker.io/library/t:{i}"), &desc).unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.images().unwrap().len(), 8);
        assert_eq!(s.resolve("t:3").unwrap().manifest.digest, d);
        assert!(s.untag("docker.io/library/t:3").unwrap());
        assert!(s.resolve("t:3").is_err());
        // A corrupted blob is caught on read.
        fs::write(s.blob_path(&d), b"{ }").unwrap();
        assert!(s.read_blob(&d, None).is_err());
    }
}

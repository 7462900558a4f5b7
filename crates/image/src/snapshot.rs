//! Store-side snapshots: a layer unpacked into `snapshots/<chain id>`.
//! Staging directories are created under the store's `snapshots/` and renamed
//! into place only once the layer is fully unpacked and verified, so a
//! snapshot that exists is always complete.

use std::path::PathBuf;

use crate::client::ClientError;
use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Compression, ImageConfig, Manifest};
use crate::store::Store;
use crate::unpack::{self, UnpackOptions};

/// A fresh staging directory under the store's `snapshots/`.
pub(crate) fn new_staging(store: &Store) -> Result<PathBuf, ClientError> {
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

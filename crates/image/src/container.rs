//! High-level operations the CLI calls: make sure an image is in the store
//! (pulling it, or building the embedded default image) and turn it into a
//! ready-to-run bundle under `<store>/containers/<id>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::{self, BundleError, Overrides, RootfsMode};
use crate::client::{self, Client, ClientError, ClientOptions, PullReport};
use crate::default_image;
use crate::reference::Reference;
use crate::store::{ImageEntry, Store, StoreError};

/// Errors of the high-level operations.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Registry / pull error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Store error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bundle error.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Bad reference.
    #[error(transparent)]
    Reference(#[from] crate::reference::RefError),
    /// Container bundle already exists.
    #[error("container {0:?} already exists under the store (remove it or pick another name)")]
    Exists(String),
}

/// A tokio runtime for the blocking callers (the CLI).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Pulls `reference` (the default image is built locally instead).
pub fn pull(store: &Store, reference: &str, opts: ClientOptions) -> Result<PullReport, ImageError> {
    let r = Reference::parse(reference)?;
    if default_image::is_default(&r) {
        let d = default_image::install(store)?;
        return Ok(PullReport {
            name: default_image::NAME.into(),
            manifest: Some(d),
            ..Default::default()
        });
    }
    let client = Arc::new(Client::new(opts)?);
    Ok(runtime().block_on(client.pull(store, &r))?)
}

/// Returns the stored image, pulling it when missing.
pub fn ensure_image(
    store: &Store,
    reference: &str,
    opts: ClientOptions,
) -> Result<ImageEntry, ImageError> {
    if let Ok(e) = store.resolve(reference) {
        return Ok(e);
    }
    pull(store, reference, opts)?;
    Ok(store.resolve(reference)?)
}

/// A prepared container bundle.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Bundle directory (`config.json`, `rootfs/`).
    pub bundle: PathBuf,
    /// How the rootfs was made.
    pub mode: RootfsMode,
}

/// Prepares `<store>/containers/<id>` for `image` with `ov` applied.
pub fn prepare_bundle(
    store: &Store,
    image: &ImageEntry,
    id: &str,
    ov: &Overrides,
) -> Result<Prepared, ImageError> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(BundleError::Invalid(format!("invalid container name {id:?}")).into());
    }
    let m = store.manifest(&image.manifest)?;
    let cfg = store.config(&m)?;
    let chains = client::ensure_snapshots(store, &m, &cfg, 64 << 30)?;
    let bundle = store.containers_dir().join(id);
    match std::fs::create_dir(&bundle) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ImageError::Exists(id.into()))
        }
        Err(e) => {
            return Err(BundleError::Io {
                path: bundle,
                source: e,
            }
            .into())
        }
    }
    let result = (|| {
        let mode = bundle::prepare_rootfs(store, &m, &chains, &bundle)?;
        let spec = bundle::generate_config(&cfg, &bundle.join("rootfs"), ov)?;
        bundle::write_config(&bundle, &spec)?;
        Ok::<_, ImageError>(mode)
    })();
    match result {
        Ok(mode) => Ok(Prepared { bundle, mode }),
        Err(e) => {
            remove_bundle(&bundle);
            Err(e)
        }
    }
}

/// Unmounts and deletes a bundle made by [`prepare_bundle`].
pub fn remove_bundle(bundle: &Path) {
    bundle::release_rootfs(bundle);
    let _ = crate::store::remove_tree(bundle);
}

//! High-level operations the CLI calls: make sure an image is in the store
//! (pulling it, or building the embedded default image) and turn it into a
//! ready-to-run bundle under `<store>/containers/<id>`, and take such a
//! bundle down again ([`cleanup_bundle`], also run by the runtime as the
//! bundle's `poststop` hook so `skiff delete` cleans an image container).

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
    /// I/O on a store or bundle path.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `cleanup_bundle` was given something that is not a bundle of the store.
    #[error("refusing to clean up {path}: {reason}")]
    Refused {
        /// The path given.
        path: PathBuf,
        /// Why it is not a bundle directory of the store.
        reason: String,
    },
    /// Mounts under a bundle survived a lazy unmount; nothing was deleted.
    #[error("{path}: still mounted after a lazy unmount: {mounts:?}; nothing deleted")]
    StillMounted {
        /// The bundle.
        path: PathBuf,
        /// Mount points left at or under it.
        mounts: Vec<PathBuf>,
    },
}

fn io_at(p: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |e| ImageError::Io {
        path: p.to_path_buf(),
        source: e,
    }
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
///
/// With `cleanup_program` (the absolute path of `skiff-tools`), the bundle's
/// `config.json` gets a `poststop` hook running
/// `<cleanup_program> --store <store> image cleanup-bundle <bundle>`, so the
/// runtime's `delete` unmounts and removes the bundle ([`cleanup_bundle`]).
/// The store and bundle paths in the hook and in [`Prepared::bundle`] are
/// canonical (absolute, no symlinks).
pub fn prepare_bundle(
    store: &Store,
    image: &ImageEntry,
    id: &str,
    ov: &Overrides,
    cleanup_program: Option<&Path>,
) -> Result<Prepared, ImageError> {
    if !valid_name(id) {
        return Err(BundleError::Invalid(format!("invalid container name {id:?}")).into());
    }
    let m = store.manifest(&image.manifest)?;
    let cfg = store.config(&m)?;
    let chains = client::ensure_snapshots(store, &m, &cfg, 64 << 30)?;
    let containers = store.containers_dir();
    let containers = std::fs::canonicalize(&containers).map_err(io_at(&containers))?;
    let bundle = containers.join(id);
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
        let mut spec = bundle::generate_config(&cfg, &bundle.join("rootfs"), ov)?;
        if let Some(program) = cleanup_program {
            add_cleanup_hook(&mut spec, program, &bundle)?;
        }
        bundle::write_config(&bundle, &spec)?;
        Ok::<_, ImageError>(mode)
    })();
    match result {
        Ok(mode) => Ok(Prepared { bundle, mode }),
        Err(e) => {
            let _ = remove_bundle(store, &bundle);
            Err(e)
        }
    }
}

fn valid_name(id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && !id.starts_with('.') && !id.contains('\0')
}

/// Appends the `poststop` hook that runs
/// `<program> --store <store> image cleanup-bundle <bundle>` to `spec`
/// (`<store>` is the bundle's grandparent: bundles live in `<store>/containers`).
pub fn add_cleanup_hook(
    spec: &mut serde_json::Value,
    program: &Path,
    bundle: &Path,
) -> Result<(), ImageError> {
    let refuse = |reason: &str| ImageError::Refused {
        path: bundle.to_path_buf(),
        reason: reason.into(),
    };
    if !program.is_absolute() {
        return Err(ImageError::Refused {
            path: program.to_path_buf(),
            reason: "the cleanup hook's program must be an absolute path".into(),
        });
    }
    let store_root = bundle
        .parent()
        .and_then(Path::parent)
        .filter(|_| bundle.is_absolute())
        .ok_or_else(|| refuse("not an absolute path under <store>/containers"))?;
    let text = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| refuse("path is not UTF-8 (config.json cannot hold it)"))
    };
    let program_s = text(program)?;
    let hook = serde_json::json!({
        "path": program_s,
        "args": [program_s, "--store", text(store_root)?, "image", "cleanup-bundle", text(bundle)?],
    });
    let obj = spec
        .as_object_mut()
        .ok_or_else(|| refuse("config.json is not an object"))?;
    let hooks = obj
        .entry("hooks")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| refuse("config.json hooks is not an object"))?;
    match hooks
        .entry("poststop")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
    {
        Some(list) => list.push(hook),
        None => return Err(refuse("config.json hooks.poststop is not an array")),
    }
    Ok(())
}

/// What [`cleanup_bundle`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// The bundle was unmounted (when mounted) and deleted.
    Removed,
    /// There was no such bundle (already cleaned up): nothing to do.
    AlreadyGone,
}

/// Unmounts and deletes a bundle made by [`prepare_bundle`] (idempotent).
pub fn remove_bundle(store: &Store, bundle: &Path) -> Result<Cleanup, ImageError> {
    cleanup_bundle(store.root(), bundle)
}

/// Takes down the bundle `bundle` of the store at `store_root`: lazily
/// unmounts everything at or under it (the overlay rootfs), then deletes the
/// directory. Idempotent: a bundle already gone is [`Cleanup::AlreadyGone`].
///
/// Refuses ([`ImageError::Refused`], nothing touched) anything that is not
/// a bundle directory of this store: `store_root` must be an existing store
/// (`oci-layout` and `containers/` present; nothing is created) and
/// `bundle` must be the canonical path of a direct child of the store's
/// canonical `containers/` directory, a real directory (not a symlink).
/// Deletes nothing while a mount is left under the bundle.
pub fn cleanup_bundle(store_root: &Path, bundle: &Path) -> Result<Cleanup, ImageError> {
    let refuse = |reason: String| ImageError::Refused {
        path: bundle.to_path_buf(),
        reason,
    };
    if !bundle.is_absolute() {
        return Err(refuse("not an absolute path".into()));
    }
    let layout = store_root.join("oci-layout");
    if !std::fs::symlink_metadata(&layout).is_ok_and(|m| m.is_file()) {
        return Err(refuse(format!(
            "{} is not an image store (no oci-layout file)",
            store_root.display()
        )));
    }
    let containers = store_root.join("containers");
    let containers = match std::fs::canonicalize(&containers) {
        Ok(c) if c.is_dir() => c,
        _ => {
            return Err(refuse(format!(
                "{} is not a directory",
                containers.display()
            )))
        }
    };
    let name = match bundle.file_name().and_then(|n| n.to_str()) {
        Some(n) if valid_name(n) => n,
        _ => return Err(refuse("not a container bundle name".into())),
    };
    if bundle.parent() != Some(containers.as_path()) || bundle != containers.join(name) {
        return Err(refuse(format!(
            "not a direct child of the store's bundle directory {}",
            containers.display()
        )));
    }
    let meta = match std::fs::symlink_metadata(bundle) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cleanup::AlreadyGone),
        Err(e) => return Err(io_at(bundle)(e)),
    };
    if !meta.is_dir() {
        return Err(refuse("not a directory (or a symlink)".into()));
    }
    match std::fs::canonicalize(bundle) {
        Ok(c) if c == bundle => {}
        Ok(c) => {
            return Err(refuse(format!(
                "not canonical (resolves to {})",
                c.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cleanup::AlreadyGone),
        Err(e) => return Err(io_at(bundle)(e)),
    }
    // Deepest first; MNT_DETACH also takes busy mounts out of the tree.
    let mut mounts = mounts_under(bundle);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
    }
    let left = mounts_under(bundle);
    if !left.is_empty() {
        return Err(ImageError::StillMounted {
            path: bundle.to_path_buf(),
            mounts: left,
        });
    }
    // Belt and braces (mountinfo of another namespace, unparsable lines):
    // never descend into another filesystem.
    use std::os::unix::fs::MetadataExt as _;
    let rootfs = bundle.join("rootfs");
    if let Ok(r) = std::fs::symlink_metadata(&rootfs) {
        if r.dev() != meta.dev() {
            return Err(ImageError::StillMounted {
                path: bundle.to_path_buf(),
                mounts: vec![rootfs],
            });
        }
    }
    match std::fs::remove_dir_all(bundle) {
        Ok(()) => Ok(Cleanup::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !bundle.exists() => {
            Ok(Cleanup::AlreadyGone)
        }
        Err(e) => Err(io_at(bundle)(e)),
    }
}

/// Mount points (from `/proc/self/mountinfo`) equal to or below `dir`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(skiff_sys::mountinfo::unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_hook_in_config() {
        let mut spec = serde_json::json!({"hooks": {"poststop": [{"path": "/bin/true"}]}});
        add_cleanup_hook(
            &mut spec,
            Path::new("/usr/bin/skiff-tools"),
            Path::new("/var/lib/skiff/containers/c1"),
        )
        .unwrap();
        assert_eq!(
            spec["hooks"]["poststop"][1]["args"],
            serde_json::json!([
                "/usr/bin/skiff-tools",
                "--store",
                "/var/lib/skiff",
                "image",
                "cleanup-bundle",
                "/var/lib/skiff/containers/c1"
            ])
        );
        assert!(add_cleanup_hook(
            &mut spec,
            Path::new("skiff-tools"),
            Path::new("/s/containers/c")
        )
        .is_err());
        assert!(add_cleanup_hook(&mut spec, Path::new("/t"), Path::new("c")).is_err());
    }

    #[test]
    fn cleanup_refuses_outside_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let root = std::fs::canonicalize(store.root()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let containers = root.join("containers");
        std::os::unix::fs::symlink(outside.path(), containers.join("link")).unwrap();
        for bad in [
            outside.path().to_path_buf(),
            root.join("blobs"),
            containers.clone(),
            containers.join("link"),
            containers.join("..").join("blobs"),
            containers.join("a").join("..").join("b"),
            PathBuf::from("containers/x"),
        ] {
            let r = cleanup_bundle(&root, &bad);
            assert!(
                matches!(r, Err(ImageError::Refused { .. })),
                "{bad:?}: {r:?}"
            );
        }
        // Not a store: nothing is created there.
        let r = cleanup_bundle(outside.path(), &outside.path().join("containers").join("x"));
        assert!(matches!(r, Err(ImageError::Refused { .. })), "{r:?}");
        assert!(!outside.path().join("containers").exists());
        assert!(outside.path().join("keep").exists());
        // A real bundle dir goes, then is reported gone.
        let b = containers.join("c1");
        std::fs::create_dir_all(b.join("rootfs/etc")).unwrap();
        std::fs::write(b.join("config.json"), "{}").unwrap();
        assert_eq!(cleanup_bundle(&root, &b).unwrap(), Cleanup::Removed);
        assert!(!b.exists());
        assert_eq!(cleanup_bundle(&root, &b).unwrap(), Cleanup::AlreadyGone);
        assert!(containers.join("link").exists());
    }
}

//! Image tarballs: `oci-archive` (a tarred OCI image layout) and
//! `docker-archive` (`docker save`: `manifest.json`, config, `layer.tar`s),
//! imported into and exported from the store, plus [`unpack_image`] which
//! applies an image's layers in order into a plain directory.
//!
//! Imports are extracted with the same safe unpacker as layers, into a
//! temporary directory of the store; every blob is re-hashed on the way in.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use crate::digest::Digest;
use crate::manifest::{self, Compression, Descriptor, Index, Manifest, REF_NAME};
use crate::reference::Reference;
use crate::store::{ImageEntry, Store, StoreError};
use crate::unpack::{self, UnpackOptions, WhiteoutMode};

/// Errors of import/export.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// I/O on a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: io::Error,
    },
    /// Malformed archive.
    #[error("{0}")]
    Invalid(String),
    /// Store error.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpack error.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
}

fn io_at(p: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: p.display().to_string(),
        source,
    }
}

fn sniff_compression(f: &mut File) -> io::Result<Compression> {
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    f.rewind()?;
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Compression::Gzip
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Imports an archive; returns the names given to the imported images.
pub fn import(
    store: &Store,
    file: &Path,
    format: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<String>, ArchiveError> {
    let tmp = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(store.tmp_dir())
        .map_err(io_at(&store.tmp_dir()))?;
    let mut f = File::open(file).map_err(io_at(file))?;
    let c = sniff_compression(&mut f).map_err(io_at(file))?;
    let size = f.metadata().map_err(io_at(file))?.len();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
        owners: false,
        devices: false,
        max_bytes: unpack::size_limit(size, 256 << 30),
        diff_id: None,
    };
    unpack::unpack(f, c, tmp.path(), &opts)?;
    let dir = tmp.path();
    let format = match format {
        Some(f) => f.to_string(),
        None if dir.join("manifest.json").exists() => "docker-archive".into(),
        None if dir.join("index.json").exists() => "oci-archive".into(),
        None => {
            return Err(ArchiveError::Invalid(format!(
                "{}: neither an oci-archive nor a docker-archive",
                file.display()
            )))
        }
    };
    if format == "docker-archive" {
        import_docker(store, dir, name)
    } else {
        import_oci(store, dir, name)
    }
}

fn copy_blob(store: &Store, layout: &Path, d: &Descriptor) -> Result<(), ArchiveError> {
    if store.has_blob(&d.digest, Some(d.size)) {
        return Ok(());
    }
    let p = layout
        .join("blobs")
        .join(d.digest.algorithm())
        .join(d.digest.hex());
    let mut f = File::open(&p).map_err(io_at(&p))?;
    store.write_blob_from(&mut f, Some((&d.digest, d.size)))?;
    Ok(())
}

fn import_oci(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<String>, ArchiveError> {
    let ip = dir.join("index.json");
    let idx: Index = serde_json::from_slice(&std::fs::read(&ip).map_err(io_at(&ip))?)
        .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", ip.display())))?;
    let mut names = Vec::new();
    for (i, d) in idx.manifests.iter().enumerate() {
        let mut d = d.clone();
        let mp = dir
            .join("blobs")
            .join(d.digest.algorithm())
            .join(d.digest.hex());
        let body = std::fs::read(&mp).map_err(io_at(&mp))?;
        d.digest
            .verify(&format!("manifest {}", mp.display()), &body, Some(d.size))
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let mut body = body;
        if manifest::is_index(&d.media_type) {
            // Take the host platform's manifest of a nested index.
            let sub: Index = serde_json::from_slice(&body)
                .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", mp.display())))?;
            let host = manifest::Platform::host();
            let child = sub
                .manifests
                .iter()
                .find(|c| c.platform.as_ref().is_none_or(|p| host.matches(p)))
                .ok_or_else(|| {
                    ArchiveError::Invalid(
                        "nested index without a manifest for this platform".into(),
                    )
                })?
                .clone();
            let cp = dir
                .join("blobs")
                .join(child.digest.algorithm())
                .join(child.digest.hex());
            body = std::fs::read(&cp).map_err(io_at(&cp))?;
            child
                .digest
                .verify("manifest", &body, Some(child.size))
                .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
            d = Descriptor {
                annotations: d.annotations.clone(),
                ..child
            };
        }
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| ArchiveError::Invalid(format!("manifest {}: {e}", d.digest)))?;
        for b in m.layers.iter().chain(std::iter::once(&m.config)) {
            copy_blob(store, dir, b)?;
        }
        store.write_blob(&body)?;
        let n = match (name, d.ref_name()) {
            (Some(n), _) if i == 0 => n.to_string(),
            (_, Some(r)) if r.contains('/') || r.contains(':') => r.to_string(),
            (_, Some(tag)) => format!("localhost/imported:{tag}"),
            _ => format!("localhost/imported:{}", &d.digest.hex()[..12]),
        };
        let n = Reference::parse(&n).map(|r| r.to_string()).unwrap_or(n);
        let desc = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
        store.tag(&n, &desc)?;
        names.push(n);
    }
    Ok(names)
}

#[derive(serde::Deserialize, serde::Serialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn inside(dir: &Path, rel: &str) -> Result<std::path::PathBuf, ArchiveError> {
    let comps = unpack::clean_path(rel.as_bytes())?;
    Ok(comps.iter().fold(dir.to_path_buf(), |p, c| p.join(c)))
}

fn import_docker(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<String>, ArchiveError> {
    let mp = dir.join("manifest.json");
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&std::fs::read(&mp).map_err(io_at(&mp))?)
            .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", mp.display())))?;
    let mut names = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let cp = inside(dir, &e.config)?;
        let config = std::fs::read(&cp).map_err(io_at(&cp))?;
        let config_d = store.write_blob(&config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let lp = inside(dir, l)?;
            let mut f = File::open(&lp).map_err(io_at(&lp))?;
            let c = sniff_compression(&mut f).map_err(io_at(&lp))?;
            let (d, n) = store.write_blob_from(&mut f, None)?;
            let mt = match c {
                Compression::Gzip => manifest::OCI_LAYER_GZIP,
                Compression::Zstd => manifest::OCI_LAYER_ZSTD,
                Compression::None => manifest::OCI_LAYER_TAR,
            };
            layers.push(Descriptor::new(mt, d, n));
        }
        let m = Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.into()),
            config: Descriptor::new(manifest::OCI_CONFIG, config_d, config.len() as u64),
            layers,
            annotations: None,
        };
        let body = serde_json::to_vec(&m).expect("manifest json");
        let md = store.write_blob(&body)?;
        let n = match (name, e.repo_tags.as_ref().and_then(|t| t.first())) {
            (Some(n), _) if i == 0 => n.to_string(),
            (_, Some(t)) => t.clone(),
            _ => format!("localhost/imported:{}", &md.hex()[..12]),
        };
        let n = Reference::parse(&n).map(|r| r.to_string()).unwrap_or(n);
        store.tag(
            &n,
            &Descriptor::new(manifest::OCI_MANIFEST, md, body.len() as u64),
        )?;
        names.push(n);
    }
    Ok(names)
}

fn append_file(b: &mut tar::Builder<File>, path: &str, f: &mut File) -> io::Result<()> {
    let len = f.metadata()?.len();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(len);
    h.set_mtime(0);
    b.append_data(&mut h, path, f)
}

fn append_bytes(b: &mut tar::Builder<File>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, path, data)
}

/// Exports `image` as `format` (`oci-archive` or `docker-archive`) to `file`.
pub fn export(
    store: &Store,
    image: &ImageEntry,
    format: &str,
    file: &Path,
) -> Result<(), ArchiveError> {
    let m = store.manifest(&image.manifest)?;
    let out = File::create(file).map_err(io_at(file))?;
    let mut b = tar::Builder::new(out);
    let w = |e| ArchiveError::Io {
        path: file.display().to_string(),
        source: e,
    };
    if format == "docker-archive" {
        let cfg = store.config(&m)?;
        let diff_ids = cfg
            .diff_ids()
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let config = store.read_blob(&m.config.digest, Some(m.config.size))?;
        let config_name = format!("{}.json", m.config.digest.hex());
        append_bytes(&mut b, &config_name, &config).map_err(w)?;
        let mut layer_names = Vec::new();
        for (l, diff) in m.layers.iter().zip(&diff_ids) {
            let c = Compression::from_media_type(&l.media_type).ok_or_else(|| {
                ArchiveError::Invalid(format!("layer {}: unsupported media type", l.digest))
            })?;
            let mut tmp =
                tempfile::tempfile_in(store.tmp_dir()).map_err(io_at(&store.tmp_dir()))?;
            let mut r = unpack::decompress(store.open_blob(&l.digest)?, c)
                .map_err(io_at(&store.blob_path(&l.digest)))?;
            io::copy(&mut r, &mut tmp).map_err(io_at(&store.blob_path(&l.digest)))?;
            tmp.rewind().map_err(w)?;
            let name = format!("{}/layer.tar", diff.hex());
            append_file(&mut b, &name, &mut tmp).map_err(w)?;
            layer_names.push(name);
        }
        let entry = DockerEntry {
            config: config_name,
            repo_tags: Some(vec![image.name.clone()]),
            layers: layer_names,
        };
        append_bytes(
            &mut b,
            "manifest.json",
            &serde_json::to_vec(&[entry]).expect("json"),
        )
        .map_err(w)?;
    } else {
        append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;
        let mut d = image.manifest.clone();
        let mut ann = BTreeMap::new();
        ann.insert(REF_NAME.to_string(), image.name.clone());
        d.annotations = Some(ann);
        let idx = Index {
            manifests: vec![d],
            ..Index::empty()
        };
        append_bytes(
            &mut b,
            "index.json",
            &serde_json::to_vec(&idx).expect("json"),
        )
        .map_err(w)?;
        let mut blobs: Vec<&Digest> = vec![&image.manifest.digest, &m.config.digest];
        blobs.extend(m.layers.iter().map(|l| &l.digest));
        for dg in blobs {
            let mut f = store.open_blob(dg)?;
            append_file(&mut b, &format!("blobs/sha256/{}", dg.hex()), &mut f).map_err(w)?;
        }
    }
    let mut out = b.into_inner().map_err(w)?;
    out.flush().map_err(w)?;
    out.sync_all().map_err(w)?;
    Ok(())
}

/// Applies the layers of `image` in order into `dir` (whiteouts deleted).
pub fn unpack_image(store: &Store, image: &ImageEntry, dir: &Path) -> Result<(), ArchiveError> {
    let m = store.manifest(&image.manifest)?;
    let cfg = store.config(&m)?;
    let diff_ids = cfg
        .diff_ids()
        .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
    for (l, diff) in m.layers.iter().zip(diff_ids) {
        let c = Compression::from_media_type(&l.media_type).ok_or_else(|| {
            ArchiveError::Invalid(format!("layer {}: unsupported media type", l.digest))
        })?;
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Apply,
            max_bytes: unpack::size_limit(l.size, 64 << 30),
            diff_id: Some(diff),
            ..Default::default()
        };
        unpack::unpack(store.open_blob(&l.digest)?, c, dir, &opts)?;
    }
    Ok(())
}

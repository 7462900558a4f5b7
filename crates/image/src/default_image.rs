//! The embedded default image `skiff/default`: the build host's static
//! busybox (embedded by `build.rs` when `/bin/busybox` exists) packed into a
//! one-layer image in the store, without network. The layer is built
//! deterministically (fixed mtimes and owners), so its digest is stable.

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest};
use crate::reference::Reference;
use crate::store::{Store, StoreError};

/// The normalized name of the default image.
pub const NAME: &str = "docker.io/skiff/default:latest";

#[cfg(skiff_busybox)]
static BUSYBOX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/busybox"));
#[cfg(skiff_busybox)]
static APPLETS: &str = include_str!(concat!(env!("OUT_DIR"), "/busybox.list"));
#[cfg(not(skiff_busybox))]
static BUSYBOX: &[u8] = &[];
#[cfg(not(skiff_busybox))]
static APPLETS: &str = "";

/// Whether this build embeds busybox.
pub fn available() -> bool {
    !BUSYBOX.is_empty()
}

/// Whether `r` names the default image.
pub fn is_default(r: &Reference) -> bool {
    r.registry == crate::reference::DOCKER_HUB
        && r.repository == "skiff/default"
        && r.digest.is_none()
}

fn layer_tar() -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let hdr = |path: &str, kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        let _ = h.set_path(path);
        h
    };
    for (d, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("home/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("usr/", 0o755),
        ("var/", 0o755),
    ] {
        let mut h = hdr(d, tar::EntryType::Directory, mode, 0);
        h.set_cksum();
        b.append(&h, std::io::empty())?;
    }
    let mut h = hdr(
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        BUSYBOX.len() as u64,
    );
    h.set_cksum();
    b.append(&h, BUSYBOX)?;
    for applet in APPLETS
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
    {
        let mut h = hdr("", tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    for (name, target) in [
        ("sbin", "bin"),
        ("usr/bin", "../bin"),
        ("usr/sbin", "../bin"),
    ] {
        let mut h = hdr("", tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, name, target)?;
    }
    let files: [(&str, &str, u32); 5] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/os-release", "NAME=\"skiff default\"\nID=skiff\nPRETTY_NAME=\"skiff default image (static busybox)\"\nHOME_URL=\"https://example.invalid/skiff\"\n", 0o644),
        ("etc/hostname", "skiff\n", 0o644),
        ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644),
    ];
    for (path, content, mode) in files {
        let mut h = hdr(path, tar::EntryType::Regular, mode, content.len() as u64);
        h.set_cksum();
        b.append(&h, content.as_bytes())?;
    }
    b.into_inner()
}

/// Builds the default image into `store` and names it [`NAME`]; returns the
/// manifest descriptor.
pub fn install(store: &Store) -> Result<Descriptor, StoreError> {
    if !available() {
        return Err(StoreError::Invalid(
            "this skiff was built without /bin/busybox (Debian busybox-static): the default image is unavailable".into(),
        ));
    }
    let io = |e: std::io::Error| StoreError::Io {
        path: store.root().to_path_buf(),
        source: e,
    };
    let tar = layer_tar().map_err(io)?;
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, &tar).map_err(io)?;
    let gz = gz.finish().map_err(io)?;
    let layer = store.write_blob(&gz)?;
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": manifest::Platform::host().architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"], "Cmd": ["/bin/sh"], "WorkingDir": "/",
                   "Labels": {"org.opencontainers.image.title": "skiff default (busybox)"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "skiff: embedded busybox"}]
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let config_d = store.write_blob(&config)?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.into()),
        config: Descriptor::new(manifest::OCI_CONFIG, config_d, config.len() as u64),
        layers: vec![Descriptor::new(
            manifest::OCI_LAYER_GZIP,
            layer,
            gz.len() as u64,
        )],
        annotations: None,
    };
    let body = serde_json::to_vec(&m).expect("manifest json");
    let md = store.write_blob(&body)?;
    let desc = Descriptor::new(manifest::OCI_MANIFEST, md, body.len() as u64);
    store.tag(NAME, &desc)?;
    Ok(desc)
}

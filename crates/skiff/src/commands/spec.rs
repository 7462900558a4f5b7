//! `spec`: writes a default (or, with `--rootless true`, rootless)
//! config.json into a bundle.

use std::path::Path;

use anyhow::{bail, Context as _};

use crate::Global;

pub(super) fn spec(g: &Global, bundle: &Path) -> anyhow::Result<i32> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let spec = if g.rootless.as_deref() == Some("true") {
        skiff_runtime::spec::rootless_spec(uid, gid)
    } else {
        skiff_runtime::spec::default_spec()
    };
    std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

//! The container's seccomp program, compiled on the host for the guest's
//! cache (libseccomp under emulation costs hundreds of ms).

use crate::cache_dir;
use oci_spec::runtime::Spec;
use std::fs;
use std::path::Path;

/// Top-level key of the spec sent to the agent that carries the
/// container's seccomp program compiled on the host: `{"file": <name of
/// skiff-seccomp's cache entry>, "data": <its bytes, hex>}`. The agent puts
/// it into the runtime's seccomp cache in the guest and removes the key.
pub const SECCOMP_BPF_KEY: &str = "x-skiff-seccomp-bpf";

/// Compiles `linux.seccomp` on the host and returns skiff-seccomp's cache
/// entry for it (file name and content), or None (no profile, or it does
/// not compile here: the guest then compiles it and reports the error).
///
/// libseccomp in the guest runs under emulation with a cold translation
/// cache after a template restore: 360-470 ms for a docker-sized profile
/// (about 400 syscalls) on this host, more than everything else of the
/// container's `create`. Natively it takes milliseconds, and the entry is
/// memoised under `<cache>/seccomp/` by a hash of the profile. The cache
/// key of skiff-seccomp covers its version, libseccomp's version and the
/// architecture, which host and guest share (one build, the same
/// libseccomp); if they ever differ the guest misses the entry and
/// compiles. Flags (TSYNC, log, spec_allow, ...) are still checked in the
/// guest, which only takes the program from the cache.
pub fn precompile_seccomp(spec: &Spec) -> Option<(String, Vec<u8>)> {
    let profile = spec.linux().as_ref()?.seccomp().as_ref()?;
    precompile_seccomp_in(profile, &cache_dir().ok()?.join("seccomp"))
}

pub(crate) fn precompile_seccomp_in(
    profile: &oci_spec::runtime::LinuxSeccomp,
    dir: &Path,
) -> Option<(String, Vec<u8>)> {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let json = serde_json::to_vec(profile).ok()?;
    let id = hex::encode(&sha2::Sha256::digest(&json)[..16]);
    fs::create_dir_all(dir).ok()?;
    // Whoever can write these could weaken every VM container's filter.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).ok()?;
    let memo = dir.join(format!("{id}.entry"));
    let parse = |b: &[u8]| -> Option<(String, Vec<u8>)> {
        let nl = b.iter().position(|&c| c == b'\n')?;
        let name = std::str::from_utf8(&b[..nl]).ok()?;
        valid_seccomp_entry_name(name).then(|| (name.to_owned(), b[nl + 1..].to_vec()))
    };
    if let Some(e) = fs::read(&memo).ok().and_then(|b| parse(&b)) {
        return Some(e);
    }
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let tmp = dir.join(format!(
        ".tmp{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&tmp);
    let entry = (|| {
        skiff_seccomp::compile_cached(profile, &tmp).ok()?;
        let mut files = fs::read_dir(&tmp).ok()?.flatten();
        let f = files.next()?;
        if files.next().is_some() {
            return None;
        }
        let name = f.file_name().into_string().ok()?;
        let data = fs::read(f.path()).ok()?;
        valid_seccomp_entry_name(&name).then_some((name, data))
    })();
    let _ = fs::remove_dir_all(&tmp);
    let (name, data) = entry?;
    let mut body = format!("{name}\n").into_bytes();
    body.extend_from_slice(&data);
    let part = dir.join(format!(".{id}.{}", std::process::id()));
    if fs::write(&part, &body).is_ok() && fs::rename(&part, &memo).is_err() {
        let _ = fs::remove_file(&part);
    }
    Some((name, data))
}

/// A cache entry name as skiff-seccomp writes them: `<hex>.bpf` (checked by
/// the agent too, before it writes the file).
pub fn valid_seccomp_entry_name(name: &str) -> bool {
    name.strip_suffix(".bpf").is_some_and(|h| {
        !h.is_empty() && h.len() <= 128 && h.bytes().all(|c| c.is_ascii_hexdigit())
    })
}

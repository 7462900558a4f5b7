//! What the agent changes in the spec the host sends before the runtime
//! sees it: bind-mount sources the host shared (9p tags, file contents)
//! become guest paths, and the seccomp program the host compiled goes into
//! the runtime's cache.

use crate::boot::{mount, NINEP_OPTS};
use crate::rt;
use serde_json::Value;
use std::fs;
use std::io;

const BINDS: &str = "/run/skiff/binds";

/// Top-level key of the create request's spec carrying the seccomp
/// program compiled by the host (`skiff_vm::SECCOMP_BPF_KEY`).
const SECCOMP_BPF_KEY: &str = "x-skiff-seccomp-bpf";

/// Points the bind mounts the host made reachable at their guest paths:
/// `x-skiff-share` (a 9p tag holding the source directory, or with
/// `x-skiff-share-file` the directory holding the source file under that
/// name) is mounted under `/run/skiff/binds/<tag>`; `x-skiff-content` (a
/// file's content, hex, from older hosts) is written to
/// `/run/skiff/binds/file<N>`.
pub fn prepare_binds(spec: &mut Value) -> io::Result<()> {
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(());
    };
    let mut mounted: Vec<String> = Vec::new();
    for (i, m) in mounts.iter_mut().enumerate() {
        let Some(obj) = m.as_object_mut() else {
            continue;
        };
        if let Some(tag) = obj.remove("x-skiff-share") {
            let tag = tag.as_str().unwrap_or_default().to_owned();
            let target = format!("{BINDS}/{tag}");
            // The share of file sources serves several mounts: mounted once.
            if !mounted.contains(&tag) {
                mount(&tag, &target, "9p", 0, NINEP_OPTS).map_err(|e| {
                    io::Error::new(e.kind(), format!("mounts[{i}] (share {tag}): {e}"))
                })?;
                mounted.push(tag);
            }
            let source = match obj.remove("x-skiff-share-file") {
                Some(f) => format!("{target}/{}", f.as_str().unwrap_or_default()),
                None => target,
            };
            obj.insert("source".into(), Value::String(source));
        } else if let Some(content) = obj.remove("x-skiff-content") {
            let data = unhex(content.as_str().unwrap_or_default()).ok_or_else(|| {
                io::Error::other(format!("mounts[{i}]: bad file content from the host"))
            })?;
            fs::create_dir_all(BINDS)?;
            let path = format!("{BINDS}/file{i}");
            fs::write(&path, data)?;
            obj.insert("source".into(), Value::String(path));
        }
    }
    Ok(())
}

/// Takes the host-compiled seccomp program out of the spec and puts it into
/// the runtime's seccomp cache, where `Runtime::create` finds it instead of
/// running libseccomp under emulation (hundreds of ms for a docker-sized
/// profile). The entry is checksummed and keyed by the profile: a stale or
/// foreign one is recompiled by the runtime, never used.
pub fn install_seccomp_program(spec: &mut Value) -> io::Result<()> {
    let Some(entry) = spec.as_object_mut().and_then(|o| o.remove(SECCOMP_BPF_KEY)) else {
        return Ok(());
    };
    let file = entry["file"].as_str().unwrap_or_default();
    let hex_ok =
        |h: &str| !h.is_empty() && h.len() <= 128 && h.bytes().all(|c| c.is_ascii_hexdigit());
    if !file.strip_suffix(".bpf").is_some_and(hex_ok) {
        return Err(io::Error::other(format!(
            "{SECCOMP_BPF_KEY}: bad file name {file:?}"
        )));
    }
    let data = unhex(entry["data"].as_str().unwrap_or_default())
        .ok_or_else(|| io::Error::other(format!("{SECCOMP_BPF_KEY}: bad data")))?;
    let dir = rt::seccomp_cache_dir();
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    fs::write(dir.join(file), data)?;
    Ok(())
}

/// Decodes lowercase or uppercase hex; `None` on an odd length or a
/// non-hex digit.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_round_trip() {
        assert_eq!(unhex("00ff7a41").unwrap(), vec![0, 255, 0x7a, b'A']);
        assert_eq!(unhex("").unwrap(), Vec::<u8>::new());
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}

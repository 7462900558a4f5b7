//! Bind mounts of VM containers: directories shared over 9p (one share
//! each, up to a limit), file sources bind-mounted on the host into one
//! share of the state directory; undone at `delete`.

use crate::{io_err, qemu, Error};
use std::fs;
use std::path::{Path, PathBuf};

/// Most virtio-mmio transports a microvm has (8) minus the console port and
/// the rootfs share.
const MAX_BIND_SHARES: usize = 6;
/// Directory of the state dir whose entries are host bind mounts of the
/// container's file bind-mount sources, shared into the guest as one 9p
/// share ([`share_binds`]); unmounted and removed by [`crate::delete`].
pub const FILE_SHARE_DIR: &str = "files";

/// Makes the bind mounts of `spec` (config.json as JSON) reachable in the
/// guest: a directory source becomes a 9p share (`bindN`, marked on the
/// mount as `x-skiff-share`, read-only when the mount is); regular files
/// (/etc/hosts, resolv.conf and the like, of any size) are bind-mounted
/// (read-only when the mount is) onto entries of `<state_dir>/files`, which
/// is one more share, and marked with `x-skiff-share` plus
/// `x-skiff-share-file` (the entry's name): both sides see each other's
/// writes. Sources under /dev, /proc and /sys are the guest's own. Returns
/// the shares (tag, host directory). Only the sources themselves are
/// shared, never their parents.
pub fn share_binds(
    spec: &mut serde_json::Value,
    bundle: &Path,
    state_dir: &Path,
) -> Result<Vec<qemu::Share>, Error> {
    let mut shares: Vec<qemu::Share> = Vec::new();
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(shares);
    };
    let mut files: Vec<(usize, PathBuf, bool)> = Vec::new();
    for (i, m) in mounts.iter_mut().enumerate() {
        let opts: Vec<&str> = m["options"]
            .as_array()
            .map(|o| o.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let is_bind = m["type"].as_str() == Some("bind")
            || opts.iter().any(|o| *o == "bind" || *o == "rbind");
        let Some(src) = m["source"].as_str().filter(|_| is_bind) else {
            continue;
        };
        let readonly = opts.contains(&"ro");
        let path = bundle.join(src);
        if ["/dev", "/proc", "/sys"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            continue;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue; // the guest reports the missing source
        };
        if meta.is_dir() {
            if shares.len() >= MAX_BIND_SHARES {
                return Err(Error::Spec {
                    field: format!("mounts[{i}]"),
                    message: format!(
                        "more than {MAX_BIND_SHARES} directory bind mounts cannot be shared into a VM"
                    ),
                });
            }
            let tag = format!("bind{}", shares.len());
            m["x-skiff-share"] = serde_json::Value::String(tag.clone());
            shares.push(qemu::Share {
                tag,
                path: path
                    .canonicalize()
                    .map_err(|e| io_err(&format!("mounts[{i}].source {}", path.display()), e))?,
                readonly,
            });
        } else if meta.is_file() {
            files.push((i, path, readonly));
        }
    }
    if files.is_empty() {
        return Ok(shares);
    }
    if shares.len() >= MAX_BIND_SHARES {
        return Err(Error::Spec {
            field: format!("mounts[{}]", files[0].0),
            message: format!(
                "file bind mounts need one more share, beyond the {MAX_BIND_SHARES} a VM has"
            ),
        });
    }
    let dir = state_dir.join(FILE_SHARE_DIR);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir.display().to_string(), e))?;
    let tag = format!("bind{}", shares.len());
    let mut shared = 0;
    for (i, src, readonly) in files {
        let name = format!("f{i}");
        let target = dir.join(&name);
        let what = format!("mounts[{i}].source {}", src.display());
        fs::File::create(&target).map_err(|e| io_err(&what, e))?;
        let bind = |flags: nix::mount::MsFlags| {
            nix::mount::mount(
                Some(&src),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND | flags,
                None::<&str>,
            )
        };
        match bind(nix::mount::MsFlags::empty()) {
            Ok(()) => {}
            // Unprivileged: no host mounts; a small file is copied instead
            // (the guest's writes then stay in the guest).
            Err(nix::errno::Errno::EPERM)
                if fs::metadata(&src).is_ok_and(|m| m.len() <= 1 << 20) =>
            {
                let _ = fs::remove_file(&target);
                let data = fs::read(&src).map_err(|e| io_err(&what, e))?;
                mounts[i]["x-skiff-content"] = serde_json::Value::String(hex::encode(data));
                continue;
            }
            Err(e) => return Err(io_err(&what, e.into())),
        }
        if readonly {
            bind(nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY)
                .map_err(|e| io_err(&what, e.into()))?;
        }
        mounts[i]["x-skiff-share"] = serde_json::Value::String(tag.clone());
        mounts[i]["x-skiff-share-file"] = serde_json::Value::String(name);
        shared += 1;
    }
    if shared == 0 {
        let _ = fs::remove_dir(&dir);
        return Ok(shares);
    }
    shares.push(qemu::Share {
        tag,
        path: dir,
        readonly: false,
    });
    Ok(shares)
}

/// Unmounts and removes what [`share_binds`] made under `state_dir`.
pub(crate) fn unshare_files(state_dir: &Path) {
    let dir = state_dir.join(FILE_SHARE_DIR);
    let Ok(rd) = fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_file(e.path());
    }
    let _ = fs::remove_dir(&dir);
}

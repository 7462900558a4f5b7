//! Persistent network namespaces: a fresh netns bind-mounted on a file (what
//! `ip netns add` does), so CNI plugins can configure it before the
//! container exists and the runtime can join it by path.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::{io_at, NetError, Result};

/// Creates a new network namespace pinned at `path` (a new file).
pub fn create(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_at(path))?;
    let target = path.to_path_buf();
    // unshare(CLONE_NEWNET) changes the calling thread only: do it in a
    // thread of its own, which ends right after pinning the namespace.
    let r = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Sys {
            what: "unshare(CLONE_NEWNET)".into(),
            source: e,
        })?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| NetError::Sys {
            what: format!("bind-mounting a new netns on {}", target.display()),
            source: e,
        })
    })
    .join()
    .unwrap_or_else(|_| Err(NetError::Invalid("netns thread panicked".into())));
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unmounts and deletes a namespace made by [`create`] (idempotent).
pub fn remove(path: &Path) -> Result<()> {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

//! Persistent network namespaces: a fresh netns bind-mounted on a file (what
//! `ip netns add` does), so CNI plugins can configure it before the
//! container exists and the runtime can join it by path. Its loopback is
//! brought up here (what the CNI `loopback` plugin does, without another
//! process).

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
        })?;
        loopback_up().map_err(|e| NetError::Sys {
            what: "bringing up lo in the new netns".into(),
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

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::result::Result<(), nix::Error> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: `raw` is a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `ifr`, which lives
    // across the calls and names a NUL-terminated interface.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(nix::Error::last());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(nix::Error::last());
        }
    }
    Ok(())
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

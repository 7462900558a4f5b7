//! Device nodes of the container's /dev: the default set, the config's
//! `linux.devices` (mknod, or bind mounts of the host's nodes in a user
//! namespace) and the standard symlinks (fd, stdin, ptmx, ...).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::fs::{self, fd_path};
use super::rootfs::{do_mount, e, symlinkat, R};

struct Dev<'a> {
    path: &'a Path,
    kind: libc::mode_t,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub(super) fn create_devices(
    root: BorrowedFd,
    devices: &[LinuxDevice],
    userns: bool,
    defaults: bool,
) -> R<()> {
    let mut list: Vec<Dev> = Vec::new();
    if defaults {
        for (p, ma, mi) in DEFAULT_DEVICES {
            list.push(Dev {
                path: Path::new(p),
                kind: libc::S_IFCHR,
                major: ma,
                minor: mi,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(format!(
                    "linux.devices: {}: type \"a\" is not a device type",
                    d.path().display()
                ))
            }
        };
        list.retain(|x| x.path != d.path().as_path());
        list.push(Dev {
            path: d.path(),
            kind,
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    // Most devices share a directory (/dev): it is opened once.
    let mut dir: Option<(&Path, OwnedFd)> = None;
    for d in &list {
        create_device(root, d, userns, &mut dir)
            .map_err(e(format_args!("creating device {}", d.path.display())))?;
    }
    Ok(())
}

fn create_device<'a>(
    root: BorrowedFd,
    d: &Dev<'a>,
    userns: bool,
    cached: &mut Option<(&'a Path, OwnedFd)>,
) -> io::Result<()> {
    let parent = d.path.parent().unwrap_or(Path::new("/"));
    let name = d
        .path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    if cached.as_ref().is_none_or(|(p, _)| *p != parent) {
        *cached = Some((parent, fs::mkdir_all(root, parent)?));
    }
    let dir = &cached.as_ref().expect("set above").1;
    let cname = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))?;
    if !userns {
        let dev = libc::makedev(d.major as u32, d.minor as u32);
        // SAFETY: mknodat/unlinkat/fchownat on a valid dir fd with a
        // NUL-terminated single-component name.
        let mknod =
            || unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), d.kind | d.mode, dev) };
        let mut rc = mknod();
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
            rc = mknod();
        }
        // The node belongs to our fsuid/fsgid (0 outside a user namespace).
        // SAFETY: geteuid/getegid cannot fail.
        let owned = d.uid == unsafe { libc::geteuid() } && d.gid == unsafe { libc::getegid() };
        if rc == 0 && owned {
            return Ok(());
        }
        if rc == 0 {
            // SAFETY: as above.
            let rc = unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    cname.as_ptr(),
                    d.uid,
                    d.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
    }
    // In a user namespace: bind the host's device node onto an empty file.
    let src = fs::open_path(d.path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "in a user namespace devices are bind-mounted from the host (mknod is not \
                 allowed), but the host's {} cannot be opened: {e}",
                d.path.display()
            ),
        )
    })?;
    let target = fs::create_file(root, d.path)?;
    do_mount(
        Some(&fd_path(src.as_fd())),
        &fd_path(target.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
}

pub(super) fn setup_dev_symlinks(root: BorrowedFd) -> R<()> {
    let dev = fs::mkdir_all(root, Path::new("/dev")).map_err(e("opening /dev"))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
            Err(err) => return Err(format!("creating /dev/{name}: {err}")),
        }
    }
    // /dev/ptmx -> pts/ptmx (the devpts instance of the container).
    let c = c"ptmx";
    // SAFETY: unlinkat on a valid dir fd with a NUL-terminated name.
    unsafe { libc::unlinkat(dev.as_raw_fd(), c.as_ptr(), 0) };
    symlinkat("pts/ptmx", dev.as_fd(), "ptmx").map_err(e("creating /dev/ptmx"))?;
    Ok(())
}

//! Idmapped bind mounts (`idmap` / `ridmap` mount options).
//!
//! Built by the runtime before the init is cloned: a detached copy of the
//! source tree (`open_tree(OPEN_TREE_CLONE)`) gets `MOUNT_ATTR_IDMAP` with a
//! user namespace holding the mount's mappings (runtime-spec
//! `mounts[].uidMappings/gidMappings`, else the container's). Setting an
//! idmap needs privilege over the filesystem, which the init in its own user
//! namespace lacks; attaching the ready tree (`move_mount`) does not.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One id mapping line: container id, host id, size.
pub type IdMap = (u32, u32, u32);

fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A user namespace fd with the given maps: a short-lived child unshares it,
/// the maps are written, its ns file is opened, and the child exits.
fn userns_with(uid: &[IdMap], gid: &[IdMap]) -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 with a valid 2-int array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: fds are fresh and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork of a single-threaded process; the child only makes
    // async-signal-safe syscalls and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::close(w.as_raw_fd());
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(1);
            }
            let mut b = 0u8;
            // Wait until the parent is done (EOF on the pipe).
            libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(r);
    let fmt = |m: &[IdMap]| {
        m.iter()
            .map(|(c, h, s)| format!("{c} {h} {s}\n"))
            .collect::<String>()
    };
    let res = (|| {
        // Wait for the unshare: the ns link changes from ours.
        let ours = std::fs::read_link("/proc/self/ns/user")?;
        for _ in 0..2000 {
            if std::fs::read_link(format!("/proc/{pid}/ns/user"))? != ours {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        std::fs::write(format!("/proc/{pid}/uid_map"), fmt(uid))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), fmt(gid))?;
        Ok(OwnedFd::from(std::fs::File::open(format!(
            "/proc/{pid}/ns/user"
        ))?))
    })();
    drop(w);
    // SAFETY: reap our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    res
}

/// A detached, idmapped copy of `src` (recursive for `ridmap`).
pub fn idmapped_tree(
    src: &Path,
    uid: &[IdMap],
    gid: &[IdMap],
    recursive: bool,
) -> io::Result<OwnedFd> {
    let userns = userns_with(uid, gid)?;
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(src.as_os_str()))?;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let rec = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: open_tree with a NUL-terminated path; returns a new fd.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec,
        )
    })?;
    // SAFETY: fd is a fresh fd we own.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let mut a = MountAttr {
        attr_set: super::mount_opts::attr::IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr with a valid fd, empty path and a sized struct.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 },
            &mut a as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(tree)
}

/// Attaches a detached tree on the object `target` refers to.
pub fn attach(tree: &OwnedFd, target: std::os::fd::BorrowedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: move_mount with valid fds and empty NUL-terminated paths.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

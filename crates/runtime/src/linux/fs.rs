//! Path work inside a container's rootfs that never escapes it.
//!
//! Every lookup goes through `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to an fd of the rootfs, so `..`, absolute symlinks and symlinks
//! swapped in during setup all stay inside. Mounts then target the resolved
//! object through `/proc/self/fd/N` (CVE-2021-30465 class).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

fn how(flags: OFlag, mode: u32) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn rel(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// Opens `path` inside the root `root` (symlinks resolved inside it).
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let p = rel(path);
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    openat2(root, p, how(flags, 0)).map_err(io::Error::from)
}

/// Creates every missing directory of `path` inside `root` (mode 0755) and
/// returns an O_PATH fd of the final directory.
pub fn mkdir_all(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    match open_in_root(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let mut cur = root.try_clone_to_owned()?;
    let mut prefix = std::path::PathBuf::from("/");
    for comp in rel(path).components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            // `..` is resolved by the kernel inside the root: re-resolve the prefix.
            Component::ParentDir => {
                prefix.push("..");
                cur = open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
                continue;
            }
            _ => continue,
        };
        prefix.push(name);
        match open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))?;
                // SAFETY: mkdirat with a valid dir fd and a NUL-terminated name
                // that has no '/' (one path component).
                let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                // Open through the root again: if a symlink raced in, it is
                // still resolved inside the root.
                cur = open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Creates (if missing) a regular file at `path` inside `root`, making parent
/// directories, and returns an O_PATH fd of it.
pub fn create_file(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, path, OFlag::O_PATH) {
        return Ok(fd);
    }
    if let Some(parent) = path.parent() {
        mkdir_all(root, parent)?;
    }
    let fd = openat2(
        root,
        rel(path),
        how(OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW, 0o644),
    )
    .map_err(io::Error::from)?;
    drop(fd);
    open_in_root(root, path, OFlag::O_PATH)
}

/// `/proc/self/fd/N` for an fd: a path that names exactly that object.
pub fn fd_path(fd: BorrowedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// True if the fd is a directory.
pub fn is_dir(fd: BorrowedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Opens `path` as an O_PATH fd (host paths: the bundle, bind sources).
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

/// Checks that `fd` is on a filesystem with magic `magic` (e.g. procfs), so a
/// fake /proc mounted by the container cannot redirect runtime writes.
pub fn check_fs_magic(fd: impl AsFd, magic: i64, what: &str) -> io::Result<()> {
    let st = nix::sys::statfs::fstatfs(fd).map_err(io::Error::from)?;
    if st.filesystem_type().0 as i64 != magic {
        return Err(io::Error::other(format!(
            "{what} is not on the expected filesystem"
        )));
    }
    Ok(())
}

/// procfs magic number.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Opens a host directory (the rootfs) as an O_PATH directory fd.
pub fn open_in_root_host(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

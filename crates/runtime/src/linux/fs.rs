//! Path work inside a container's rootfs that never escapes it.
//!
//! Every lookup goes through `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to an fd of the rootfs, so `..`, absolute symlinks and symlinks
//! swapped in during setup all stay inside. Mounts then target the resolved
//! object through `/proc/self/fd/N` (CVE-2021-30465 class).
//!
//! Kernels without openat2 (before 5.6: RHEL 8, Debian 10, Ubuntu 20.04) and
//! tools that do not know it (valgrind) get `ENOSYS`; the resolver then walks
//! the path itself ([`walk_in_root`]): one `openat(O_PATH | O_NOFOLLOW)` per
//! component from the root fd, symlinks read and expanded by hand (absolute
//! ones restart at the root, `..` never climbs above it, 40 links at most),
//! so the result is the object openat2 would have returned, never a host path.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Set once openat2 answered `ENOSYS`: every later lookup walks by hand.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn have_openat2() -> bool {
    !NO_OPENAT2.load(Ordering::Relaxed)
}

/// How often a lookup is tried again when it fails with `EAGAIN`.
///
/// With `RESOLVE_IN_ROOT`, openat2 answers `EAGAIN` whenever a rename or a
/// mount anywhere on the system happened during a `..` step (it cannot
/// prove the walk stayed inside); openat2(2) says to retry. The hand walk
/// answers the same when an entry was swapped between its walk and open.
const EAGAIN_RETRIES: usize = 128;

/// Runs `f` until it fails with something other than `EAGAIN` (at most
/// [`EAGAIN_RETRIES`] times).
fn retry_eagain<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 1;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < EAGAIN_RETRIES => {
                tries += 1
            }
            r => return r,
        }
    }
}

/// Runs `f` (an openat2 call); on `ENOSYS` remembers that the kernel lacks
/// openat2 and returns `None` so the caller falls back. `EAGAIN` is
/// retried (see [`EAGAIN_RETRIES`]).
fn try_openat2(f: impl Fn() -> nix::Result<OwnedFd>) -> Option<io::Result<OwnedFd>> {
    if !have_openat2() {
        return None;
    }
    match retry_eagain(|| f().map_err(io::Error::from)) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            None
        }
        r => Some(r),
    }
}

/// Opens `path` inside the root `root` (symlinks resolved inside it).
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let p = rel(path);
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    match try_openat2(|| openat2(root, p, how(flags, 0))) {
        Some(r) => r,
        None => retry_eagain(|| walk_in_root(root, p, flags)),
    }
}

/// Most symlinks one lookup follows (the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn file_type(fd: BorrowedFd) -> io::Result<u32> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(st.st_mode & libc::S_IFMT)
}

/// `open_in_root` without openat2: resolves `path` one component at a time
/// below `root`, as `RESOLVE_IN_ROOT` does (`..` at the root stays at the
/// root; an absolute symlink target starts again at the root), then opens
/// the final object with `flags` (`O_NOFOLLOW` added: a symlink swapped in
/// after the walk fails with `ELOOP` instead of being followed). Magic links
/// are never followed: a link's text is resolved inside the root like any
/// other symlink.
pub fn walk_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStrExt;
    // Pending components, last first (so pop() yields the next one).
    let mut todo: Vec<OsString> = Vec::new();
    let push_path = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push(OsString::from("..")),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    push_path(&mut todo, path);
    // `dir/` names a directory, whatever the flags say.
    let flags = if path.as_os_str().as_bytes().ends_with(b"/") {
        flags | OFlag::O_DIRECTORY
    } else {
        flags
    };
    // Directories walked into, below the root (the root itself is `root`).
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    let o_path = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    while let Some(name) = todo.pop() {
        if name.as_bytes() == b".." {
            dirs.pop();
            continue;
        }
        let cur = dirs.last().map(|d| d.as_fd()).unwrap_or(root);
        let fd = nix::fcntl::openat(cur, name.as_os_str(), o_path, Mode::empty())
            .map_err(io::Error::from)?;
        let kind = file_type(fd.as_fd())?;
        let last = todo.is_empty();
        if kind == libc::S_IFLNK {
            if last && flags.contains(OFlag::O_NOFOLLOW) {
                // The caller wants the link itself (O_PATH | O_NOFOLLOW).
                return reopen(cur, &name, fd, flags);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(errno(libc::ELOOP));
            }
            let target = nix::fcntl::readlinkat(fd.as_fd(), "").map_err(io::Error::from)?;
            let target = Path::new(&target);
            if target.is_absolute() {
                dirs.clear();
            }
            push_path(&mut todo, target);
            continue;
        }
        if last {
            if flags.contains(OFlag::O_DIRECTORY) && kind != libc::S_IFDIR {
                return Err(errno(libc::ENOTDIR));
            }
            return reopen(cur, &name, fd, flags);
        }
        if kind != libc::S_IFDIR {
            return Err(errno(libc::ENOTDIR));
        }
        dirs.push(fd);
    }
    // The path named a directory already walked into (or the root itself).
    let dir = dirs.last().map(|d| d.as_fd()).unwrap_or(root);
    nix::fcntl::openat(dir, ".", flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(io::Error::from)
}

/// Opens `name` in `dir` with the caller's `flags`, checking that it is the
/// object `found` (an O_PATH fd from the walk) still.
fn reopen(
    dir: BorrowedFd,
    name: &std::ffi::OsStr,
    found: OwnedFd,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    if flags.contains(OFlag::O_PATH) && !flags.contains(OFlag::O_DIRECTORY) {
        return Ok(found);
    }
    let fd = nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let (a, b) = (
        nix::sys::stat::fstat(found.as_fd()).map_err(io::Error::from)?,
        nix::sys::stat::fstat(fd.as_fd()).map_err(io::Error::from)?,
    );
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
        // Swapped between the walk and the open: refuse rather than guess.
        return Err(errno(libc::EAGAIN));
    }
    Ok(fd)
}

/// Creates every missing directory of `path` inside `root` (mode 0755) and
/// returns an O_PATH fd of the final directory.
pub fn mkdir_all(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    match open_in_root(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    // Usually only the last component is missing (`dev/pts`, a mount
    // point): create it in its parent, and walk only if that is missing too.
    if let (Some(parent), Some(Component::Normal(leaf))) =
        (path.parent(), path.components().next_back())
    {
        if rel(parent)
            .components()
            .any(|c| matches!(c, Component::Normal(_)))
        {
            match open_in_root(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(dir) => {
                    mkdir_in(dir.as_fd(), leaf)?;
                    // Through the root again: a symlink raced in is still
                    // resolved inside it.
                    return open_in_root(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
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
                mkdir_in(cur.as_fd(), name)?;
                // Open through the root again: if a symlink raced in, it is
                // still resolved inside the root.
                cur = open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// `mkdirat(dir, name, 0755)` of one path component; an existing entry is
/// fine (the caller opens it as a directory next).
pub fn mkdir_in(dir: BorrowedFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let c = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))?;
    // SAFETY: mkdirat with a valid dir fd and a NUL-terminated name that
    // has no '/' (one path component).
    let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
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
    let create = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW;
    let fd = match try_openat2(|| openat2(root, rel(path), how(create, 0o644))) {
        Some(r) => r?,
        None => {
            // Without openat2: the parent resolved inside the root, the file
            // created in it by name (never through a symlink).
            let name = path.file_name().ok_or_else(|| errno(libc::EINVAL))?;
            let parent = match path.parent() {
                Some(p) => open_in_root(root, p, OFlag::O_PATH | OFlag::O_DIRECTORY)?,
                None => root.try_clone_to_owned()?,
            };
            nix::fcntl::openat(
                parent.as_fd(),
                name,
                create | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(io::Error::from)?
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ident(fd: &OwnedFd) -> (u64, u64) {
        let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
        (st.st_dev, st.st_ino)
    }

    /// The hand walk resolves every path to the object openat2's
    /// `RESOLVE_IN_ROOT` resolves it to, or fails with the same errno.
    #[test]
    fn walk_matches_openat2_resolve_in_root() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(base.join("outside/etc")).unwrap();
        std::fs::write(root.join("a/file"), "in").unwrap();
        std::fs::write(base.join("outside/etc/passwd"), "host").unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "container").unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("a/b/up")).unwrap();
        symlink("../file", root.join("a/b/rel")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("/nonexistent", root.join("dangling")).unwrap();
        symlink(base.join("outside"), root.join("hostabs")).unwrap();
        symlink("a/file", root.join("tofile")).unwrap();
        let rootfd = open_in_root_host(&root).unwrap();
        let cases = [
            "",
            "/",
            ".",
            "a",
            "a/b/c",
            "a/file",
            "abs/passwd",
            "a/b/up",
            "a/b/up/etc/passwd",
            "a/b/rel",
            "../../etc/passwd",
            "a/../../a/b",
            "loop1",
            "dangling",
            "hostabs/etc/passwd",
            "tofile/x",
            "a/file/",
            "missing/x",
            "a/b/c/../../file",
            "abs/../a",
        ];
        let flag_sets = [
            OFlag::O_PATH,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            OFlag::O_RDONLY,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
        ];
        for case in cases {
            for flags in flag_sets {
                let p = rel(Path::new(case));
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                let kernel = openat2(rootfd.as_fd(), p, how(flags, 0)).map_err(io::Error::from);
                let walked = walk_in_root(rootfd.as_fd(), p, flags);
                match (&kernel, &walked) {
                    (Ok(k), Ok(w)) => assert_eq!(ident(k), ident(w), "{case:?} {flags:?}"),
                    (Err(k), Err(w)) => {
                        assert_eq!(k.raw_os_error(), w.raw_os_error(), "{case:?} {flags:?}")
                    }
                    _ => panic!("{case:?} {flags:?}: openat2 {kernel:?}, walk {walked:?}"),
                }
            }
        }
    }
}

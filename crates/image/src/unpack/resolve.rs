//! Path safety for unpacking: layer paths split into normal components
//! (`..` refused), directories opened and created with `openat2`
//! `RESOLVE_IN_ROOT` one component at a time, and `*at` helpers that never
//! follow the last component.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use super::UnpackError;

pub(super) fn display(comps: &[OsString]) -> String {
    let v: Vec<_> = comps
        .iter()
        .map(|c| c.to_string_lossy().to_string())
        .collect();
    v.join("/")
}

pub(super) fn io_err(comps: &[OsString], op: &'static str, e: impl Into<io::Error>) -> UnpackError {
    UnpackError::Io {
        path: display(comps),
        op,
        source: e.into(),
    }
}

/// Splits a layer path into normal components; refuses `..`.
pub fn clean_path(raw: &[u8]) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Refused {
                    path: String::from_utf8_lossy(raw).into(),
                    reason: "path contains '..'".into(),
                })
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

pub(super) fn path_of(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    comps.iter().collect()
}

/// Opens the directory `comps` under `root`, resolving symlinks inside root
/// only, creating missing directories (0755) on the way. A symlinked
/// component whose target is missing is followed lexically (`..` clamped at
/// the root, like `RESOLVE_IN_ROOT`) and its target created.
pub(super) fn open_dir_in_root(
    root: BorrowedFd<'_>,
    comps: &[OsString],
    op: &'static str,
) -> Result<OwnedFd, UnpackError> {
    open_dir_depth(root, comps, op, 0)
}

fn open_dir_depth(
    root: BorrowedFd<'_>,
    comps: &[OsString],
    op: &'static str,
    depth: u32,
) -> Result<OwnedFd, UnpackError> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(root, path_of(comps), flags, Mode::empty(), how) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(io_err(comps, op, e)),
    }
    if depth > 40 {
        return Err(io_err(comps, op, rustix::io::Errno::LOOP));
    }
    // Walk from the root, one component at a time (no fd is trusted across
    // steps: each step re-resolves from the root with IN_ROOT).
    for i in 0..comps.len() {
        let prefix = &comps[..=i];
        match rustix::fs::openat2(root, path_of(prefix), flags, Mode::empty(), how) {
            Ok(_) => continue,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_err(comps, op, e)),
        }
        let parent = rustix::fs::openat2(root, path_of(&comps[..i]), flags, Mode::empty(), how)
            .map_err(|e| io_err(comps, op, e))?;
        let name = comps[i].as_os_str();
        match rustix::fs::statat(parent.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                // Dangling symlink: continue at its target, inside the root.
                let target = rustix::fs::readlinkat(parent.as_fd(), name, Vec::new())
                    .map_err(|e| io_err(comps, "readlink", e))?;
                let t = target.as_bytes();
                let mut next: Vec<OsString> = if t.starts_with(b"/") {
                    Vec::new()
                } else {
                    comps[..i].to_vec()
                };
                for c in t.split(|&b| b == b'/') {
                    match c {
                        b"" | b"." => {}
                        b".." => {
                            next.pop();
                        }
                        c => next.push(OsString::from_vec(c.to_vec())),
                    }
                }
                next.extend_from_slice(&comps[i + 1..]);
                return open_dir_depth(root, &next, op, depth + 1);
            }
            Ok(_) => return Err(io_err(comps, op, rustix::io::Errno::NOTDIR)),
            Err(rustix::io::Errno::NOENT) => {
                match rustix::fs::mkdirat(parent.as_fd(), name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io_err(comps, "mkdir parent", e)),
                }
            }
            Err(e) => return Err(io_err(comps, op, e)),
        }
    }
    rustix::fs::openat2(root, path_of(comps), flags, Mode::empty(), how)
        .map_err(|e| io_err(comps, op, e))
}

pub(super) fn set_times(dir: BorrowedFd<'_>, name: &OsStr, mtime: u64) -> rustix::io::Result<()> {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        dir,
        name,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
}

/// Removes `name` in `dir` (recursively for directories) without following symlinks.
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        clear_dir(sub.as_fd(), &[])?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())
    }
}

/// Removes every entry of `dir` except the names in `keep`.
pub(super) fn clear_dir(dir: BorrowedFd<'_>, keep: &[OsString]) -> rustix::io::Result<()> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if n != "." && n != ".." && !keep.contains(&n) {
            names.push(n);
        }
    }
    for n in names {
        remove_at(dir, &n)?;
    }
    Ok(())
}

pub(super) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

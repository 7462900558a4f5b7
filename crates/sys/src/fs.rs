//! Files and directories that other users must not read.
//!
//! [`write_atomic`] replaces a file in one step (a temporary file in the same
//! directory, created with the final mode, then `rename`), so a reader sees
//! the old or the new content, never a mix, and never a moment where the
//! file has a looser mode. [`write_private`] is the 0600 case (state files,
//! container records, anything holding a container's environment).
//! [`ensure_private_dir`] creates a directory with a private mode, or
//! tightens an existing one that is looser (with a warning on stderr).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether [`write_atomic`] flushes the data to disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No `fsync`: the file survives the process, not a power cut (runtime
    /// state under `/run`, which a reboot empties anyway).
    Process,
    /// `fsync` before the rename: after a crash, the old or the new content.
    Disk,
}

/// Writes `data` to `path` atomically with mode 0600, without `fsync`.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, 0o600, Durability::Process)
}

/// Writes `data` to `path` through a temporary file created in the same
/// directory with `mode` (minus the umask) and renamed over `path`.
///
/// The temporary file is created with `O_EXCL|O_NOFOLLOW`, so a file or
/// symlink planted under its name is never written through; it is removed
/// when anything fails. Errors name the path that failed.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, durability: Durability) -> io::Result<()> {
    let (tmp, mut file) = create_temp(path, mode)?;
    let written = file
        .write_all(data)
        .and_then(|()| match durability {
            Durability::Disk => file.sync_all(),
            Durability::Process => Ok(()),
        })
        .map_err(|e| at(&tmp, "writing", e));
    drop(file);
    let renamed =
        written.and_then(|()| fs::rename(&tmp, path).map_err(|e| at(path, "renaming onto", e)));
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed
}

/// Creates the temporary sibling of `path`: `.<name>.<pid>.<n>.tmp`.
fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, fs::File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        at(
            path,
            "writing",
            io::Error::from(io::ErrorKind::InvalidInput),
        )
    })?;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp);
        match opened {
            Ok(f) => return Ok((tmp, f)),
            // A leftover of a killed process that had our pid: next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1 << 20 => continue,
            Err(e) => return Err(at(&tmp, "creating", e)),
        }
    }
}

/// What [`ensure_private_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// The directory did not exist and was created with the mode.
    Created,
    /// It existed with no permission bits beyond the mode.
    Kept,
    /// It existed with more permission bits (the old mode is given) and
    /// was changed to the mode; a warning was printed on stderr.
    Tightened(u32),
}

/// Makes `path` a directory whose permission bits are at most `mode`.
///
/// Missing parents are created as usual (0755 minus the umask); `path`
/// itself is created with `mode`. An existing directory with bits that
/// `mode` does not have (e.g. 0755 for a 0700 root) is `chmod`ed to
/// `mode` and a warning naming it goes to stderr. Costs one `mkdir` when
/// the directory is new, a `mkdir` and a `stat` when it exists.
pub fn ensure_private_dir(path: &Path, mode: u32) -> io::Result<DirState> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => return Ok(DirState::Created),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| at(parent, "creating", e))?;
            }
            return match fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => Ok(DirState::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_mode(path, mode),
                Err(e) => Err(at(path, "creating", e)),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(at(path, "creating", e)),
    }
    check_mode(path, mode)
}

fn check_mode(path: &Path, mode: u32) -> io::Result<DirState> {
    let meta = fs::metadata(path).map_err(|e| at(path, "reading", e))?;
    if !meta.is_dir() {
        return Err(at(
            path,
            "using",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        ));
    }
    let old = meta.mode() & 0o7777;
    if old & !mode == 0 {
        return Ok(DirState::Kept);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| at(path, "tightening the mode of", e))?;
    eprintln!(
        "skiff: warning: {} had mode {old:04o}, which lets other users in; changed to {mode:04o}",
        path.display()
    );
    Ok(DirState::Tightened(old))
}

/// An error that names what was done to which path.
fn at(path: &Path, doing: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "skiff-sys-fs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn private_file_replaces_a_loose_one_and_leaves_no_temp() {
        let d = tempdir();
        let p = d.join("state.json");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o600);
        write_atomic(&p, b"disk", 0o600, Durability::Disk).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"disk");
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("state.json")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_names_the_path_and_cleans_up() {
        let d = tempdir();
        let target = d.join("sub");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        let err = write_private(&target, b"data").unwrap_err();
        assert!(
            err.to_string().contains(&target.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn private_dir_is_created_kept_and_tightened() {
        let d = tempdir();
        let root = d.join("a/b/root");
        assert_eq!(ensure_private_dir(&root, 0o700).unwrap(), DirState::Created);
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(ensure_private_dir(&root, 0o711).unwrap(), DirState::Kept);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            ensure_private_dir(&root, 0o700).unwrap(),
            DirState::Tightened(0o755)
        );
        assert_eq!(mode(&root), 0o700);
        let file = d.join("file");
        fs::write(&file, b"").unwrap();
        assert!(ensure_private_dir(&file, 0o700).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}

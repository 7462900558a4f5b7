//! Safe layer unpacking.
//!
//! Every path operation starts from a directory fd of the target and resolves
//! the entry's parent with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`,
//! then acts on the last component with `*at` calls that never follow it
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`).
//! So `../`, absolute paths, symlinked parents, absolute or relative symlinks
//! pointing out, hardlinks to outside and symlinks swapped mid-unpack all stay
//! inside the target: no fd is cached across entries and resolution is always
//! scoped to the root. Entries with `..` components are refused outright.
//!
//! Whiteouts are either converted to overlayfs whiteouts (a 0/0 char device,
//! `trusted.overlay.opaque=y`), for per-layer snapshots stacked with
//! overlayfs, or applied (deleting from the target) when layers are
//! extracted on top of each other. `trusted.overlay.*` xattrs from the layer
//! itself are dropped. Device nodes are skipped unless explicitly allowed.
//!
//! Decompression is bounded: the uncompressed stream may not exceed
//! [`UnpackOptions::max_bytes`] (callers derive it from the compressed size).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use crate::digest::{Digest, HashReader, Hasher};
use crate::manifest::Compression;

mod resolve;

pub use resolve::clean_path;
use resolve::{
    clear_dir, display, io_err, open_dir_in_root, path_of, proc_path, remove_at, set_times,
};

/// Prefix of whiteout files.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE: &str = ".wh..wh..opq";

/// Errors while unpacking.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A system call on an entry failed.
    #[error("unpack {path:?}: {op}: {source}")]
    Io {
        /// Entry path in the layer.
        path: String,
        /// The operation that failed.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The layer is malformed or hostile.
    #[error("refusing layer entry {path:?}: {reason}")]
    Refused {
        /// Entry path in the layer.
        path: String,
        /// Why.
        reason: String,
    },
    /// The layer decompressed to more than allowed.
    #[error("layer expands beyond {limit} bytes (decompression bomb?)")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the layer stream failed.
    #[error("reading layer: {0}")]
    Read(io::Error),
    /// The uncompressed content does not match the config's diff id.
    #[error("layer diff id mismatch: expected {expected}, got {actual}")]
    DiffId {
        /// From the image config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
}

/// How whiteouts are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Convert to overlayfs whiteouts (the target is one layer of a stack).
    Overlay,
    /// Delete the whited-out paths from the target (layers applied in order).
    Apply,
}

/// Options of [`unpack`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Maximum uncompressed bytes.
    pub max_bytes: u64,
    /// Create block/char device nodes (off: they are skipped and counted).
    pub devices: bool,
    /// Apply owners from the layer (needs root).
    pub owners: bool,
    /// Check the uncompressed stream against this diff id.
    pub diff_id: Option<Digest>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            max_bytes: 64 << 30,
            devices: false,
            owners: rustix::process::geteuid().is_root(),
            diff_id: None,
        }
    }
}

/// Bound on the uncompressed size of a layer of `compressed` bytes: 100x,
/// at least 256 MiB, at most `cap`.
pub fn size_limit(compressed: u64, cap: u64) -> u64 {
    compressed.saturating_mul(100).max(256 << 20).min(cap)
}

/// What [`unpack`] did.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    /// Entries processed.
    pub entries: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
    /// Device nodes skipped.
    pub skipped_devices: u64,
    /// The uncompressed digest (diff id).
    pub diff_id: Option<Digest>,
}

struct Limit<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(TooLargeMarker(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLargeMarker(u64);
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer larger than {} bytes", self.0)
    }
}
impl std::error::Error for TooLargeMarker {}

/// Wraps `r` in the decompressor for `c`.
pub fn decompress<'a, R: Read + 'a>(r: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 << 10, r),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

fn map_read(e: io::Error) -> UnpackError {
    if let Some(m) = e.get_ref().and_then(|i| i.downcast_ref::<TooLargeMarker>()) {
        return UnpackError::TooLarge { limit: m.0 };
    }
    UnpackError::Read(e)
}

/// Unpacks a (compressed) layer stream into the directory `target`.
pub fn unpack(
    reader: impl Read,
    compression: Compression,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = rustix::fs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        path: target.display().to_string(),
        op: "open target",
        source: e.into(),
    })?;
    let dec = decompress(reader, compression).map_err(UnpackError::Read)?;
    let limited = Limit {
        inner: dec,
        left: opts.max_bytes,
        limit: opts.max_bytes,
    };
    let mut hashed = HashReader {
        inner: limited,
        hasher: Hasher::new(),
    };
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<(Vec<OsString>, u64)> = Vec::new();
    let mut created: Vec<Vec<OsString>> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    {
        let mut ar = tar::Archive::new(&mut hashed);
        let entries = ar.entries().map_err(map_read)?;
        for entry in entries {
            let mut entry = entry.map_err(map_read)?;
            stats.entries += 1;
            let u = Unpacker {
                root: root.as_fd(),
                buf: &mut buf,
                opts,
                stats: &mut stats,
            };
            let done = u.entry(&mut entry, &created)?;
            if let Some((comps, is_dir, mtime)) = done {
                if is_dir {
                    dirs.push((comps.clone(), mtime));
                }
                if opts.whiteouts == WhiteoutMode::Apply {
                    created.push(comps);
                }
            }
        }
    }
    // Drain padding after the end-of-archive marker so the diff id covers it.
    io::copy(&mut hashed, &mut io::sink()).map_err(map_read)?;
    // Directory mtimes last (children changed them), deepest first.
    for (comps, mtime) in dirs.iter().rev() {
        let (parent, name) = match comps.split_last() {
            Some((name, parents)) => (
                open_dir_in_root(root.as_fd(), parents, "mtime")?,
                name.clone(),
            ),
            None => continue,
        };
        set_times(parent.as_fd(), &name, *mtime).map_err(|e| io_err(comps, "utimensat", e))?;
    }
    stats.bytes = hashed.hasher.len();
    let actual = hashed.hasher.finish();
    if let Some(expected) = &opts.diff_id {
        if *expected != actual {
            return Err(UnpackError::DiffId {
                expected: expected.clone(),
                actual,
            });
        }
    }
    stats.diff_id = Some(actual);
    Ok(stats)
}

struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    buf: &'a mut [u8],
    opts: &'a UnpackOptions,
    stats: &'a mut UnpackStats,
}

type Done = Option<(Vec<OsString>, bool, u64)>;

/// An entry's metadata: the header's, overridden by its PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        header: &tar::Header,
        comps: &[OsString],
    ) -> Result<Self, UnpackError> {
        let mode = header.mode().map_err(|e| io_err(comps, "header mode", e))?;
        let mut m = Meta {
            mode: mode & 0o7777,
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            mtime: header.mtime().unwrap_or(0),
            xattrs: Vec::new(),
        };
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                let val = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(val)
                        .ok()
                        .and_then(|s| s.split('.').next()?.parse::<u64>().ok())
                };
                match key {
                    "uid" => m.uid = num().unwrap_or(m.uid),
                    "gid" => m.gid = num().unwrap_or(m.gid),
                    "mtime" => m.mtime = num().unwrap_or(m.mtime),
                    k if k.starts_with("SCHILY.xattr.") => m
                        .xattrs
                        .push((k["SCHILY.xattr.".len()..].to_string(), val.to_vec())),
                    _ => {}
                }
            }
        }
        Ok(m)
    }
}

impl Unpacker<'_> {
    /// Unpacks one entry; `created` are the paths this layer made so far
    /// (an opaque whiteout keeps them).
    fn entry<R: Read>(
        mut self,
        entry: &mut tar::Entry<'_, R>,
        created: &[Vec<OsString>],
    ) -> Result<Done, UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let comps = clean_path(&raw)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let meta = Meta::read(entry, &header, &comps)?;
        let Some((name, parents)) = comps.split_last() else {
            // The root itself ("./"): only directory metadata applies.
            if kind.is_dir() {
                self.meta_fd(self.root, &comps, &meta)?;
            }
            return Ok(None);
        };
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            self.whiteout(&comps, parents, name, hidden, created)?;
            return Ok(None);
        }
        let parent = open_dir_in_root(self.root, parents, "open parent")?;
        let pfd = parent.as_fd();
        let existing = match rustix::fs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(io_err(&comps, "stat", e)),
        };
        // Replace whatever is there, except a directory by a directory.
        if existing.is_some() && !(kind.is_dir() && existing == Some(FileType::Directory)) {
            remove_at(pfd, name).map_err(|e| io_err(&comps, "replace", e))?;
        }
        let mtime = meta.mtime;
        match kind {
            tar::EntryType::Directory => {
                if existing != Some(FileType::Directory) {
                    rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err(&comps, "mkdir", e))?;
                }
                let fd = rustix::fs::openat(
                    pfd,
                    name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(&comps, "open dir", e))?;
                self.meta_fd(fd.as_fd(), &comps, &meta)?;
                return Ok(Some((comps.clone(), true, mtime)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.regular(entry, pfd, name, &comps, &meta)?;
                return Ok(Some((comps.clone(), false, mtime)));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Refused {
                        path: display(&comps),
                        reason: "symlink without target".into(),
                    })?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), pfd, name)
                    .map_err(|e| io_err(&comps, "symlink", e))?;
            }
            tar::EntryType::Link => {
                self.hardlink(entry, pfd, name, &comps)?;
                // A hard link shares the inode: its metadata comes from the source.
                return Ok(Some((comps.clone(), false, mtime)));
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !self.special(&header, pfd, name, &comps, &meta)? {
                    return Ok(None);
                }
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                return Ok(None);
            }
            other => {
                return Err(UnpackError::Refused {
                    path: display(&comps),
                    reason: format!("unsupported entry type {other:?}"),
                });
            }
        }
        // Symlinks, devices, fifos: owner (symlink), xattrs via the parent fd, times.
        if kind == tar::EntryType::Symlink && self.opts.owners {
            rustix::fs::chownat(
                pfd,
                name,
                Some(uid_of(meta.uid)),
                Some(gid_of(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(&comps, "lchown", e))?;
        }
        for (k, v) in &meta.xattrs {
            if skip_xattr(k) {
                continue;
            }
            rustix::fs::lsetxattr(
                proc_path(pfd, name).as_path(),
                k.as_str(),
                v,
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| io_err(&comps, "lsetxattr", e))?;
        }
        set_times(pfd, name, mtime).map_err(|e| io_err(&comps, "utimensat", e))?;
        Ok(Some((comps.clone(), false, mtime)))
    }

    /// A whiteout entry `.wh.<hidden>` in `parents`: removes `hidden`
    /// (and, for overlay output, leaves a whiteout device), or for the
    /// opaque marker hides everything the lower layers put in the directory.
    fn whiteout(
        &self,
        comps: &[OsString],
        parents: &[OsString],
        name: &OsStr,
        hidden: &[u8],
        created: &[Vec<OsString>],
    ) -> Result<(), UnpackError> {
        let parent = open_dir_in_root(self.root, parents, "open parent")?;
        if name.as_bytes() == OPAQUE.as_bytes() {
            return self.opaque(comps, parents, parent.as_fd(), created);
        }
        if hidden.is_empty()
            || hidden == b"."
            || hidden == b".."
            || hidden.starts_with(WHITEOUT_PREFIX.as_bytes())
        {
            return Err(UnpackError::Refused {
                path: display(comps),
                reason: "invalid whiteout target".into(),
            });
        }
        let hidden = OsStr::from_bytes(hidden);
        remove_at(parent.as_fd(), hidden).map_err(|e| io_err(comps, "whiteout remove", e))?;
        if self.opts.whiteouts == WhiteoutMode::Overlay {
            rustix::fs::mknodat(
                parent.as_fd(),
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            )
            .map_err(|e| io_err(comps, "mknod whiteout", e))?;
        }
        Ok(())
    }

    /// The opaque whiteout of directory `parents` (open as `parent`).
    fn opaque(
        &self,
        comps: &[OsString],
        parents: &[OsString],
        parent: BorrowedFd<'_>,
        created: &[Vec<OsString>],
    ) -> Result<(), UnpackError> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                rustix::fs::lsetxattr(
                    proc_path(parent, OsStr::new(".")).as_path(),
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| io_err(comps, "set opaque xattr", e))?;
            }
            WhiteoutMode::Apply => {
                let d = rustix::fs::openat2(
                    self.root,
                    path_of(parents),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| io_err(comps, "open opaque dir", e))?;
                let keep: Vec<OsString> = created
                    .iter()
                    .filter(|c| c.len() == parents.len() + 1 && c.starts_with(parents))
                    .map(|c| c[c.len() - 1].clone())
                    .collect();
                clear_dir(d.as_fd(), &keep).map_err(|e| io_err(comps, "opaque clear", e))?;
            }
        }
        Ok(())
    }

    /// A regular file: created exclusively (no following of anything
    /// there), filled, then its metadata and mtime.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let fd = rustix::fs::openat(
            pfd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(comps, "create", e))?;
        let mut f = std::fs::File::from(fd);
        copy_big(entry, &mut f, self.buf).map_err(|e| match map_read(e) {
            UnpackError::Read(e) => io_err(comps, "write", e),
            other => other,
        })?;
        self.meta_fd(f.as_fd(), comps, meta)?;
        let t = Timespec {
            tv_sec: meta.mtime as i64,
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            &f,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(|e| io_err(comps, "futimens", e))
    }

    /// A hard link to an earlier entry (never to a directory, never out of
    /// the root).
    fn hardlink<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
    ) -> Result<(), UnpackError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| UnpackError::Refused {
                path: display(comps),
                reason: "hardlink without target".into(),
            })?;
        let tcomps = clean_path(&target)?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(UnpackError::Refused {
                path: display(comps),
                reason: "hardlink to the root".into(),
            });
        };
        let tparent = open_dir_in_root(self.root, tparents, "open link source parent")?;
        let st = rustix::fs::statat(tparent.as_fd(), tname, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(comps, "stat link source", e))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(UnpackError::Refused {
                path: display(comps),
                reason: "hardlink to a directory".into(),
            });
        }
        rustix::fs::linkat(tparent.as_fd(), tname, pfd, name, AtFlags::empty())
            .map_err(|e| io_err(comps, "link", e))
    }

    /// A device node or fifo; `false` when a device is skipped (devices
    /// off in the options).
    fn special(
        &mut self,
        header: &tar::Header,
        pfd: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
        meta: &Meta,
    ) -> Result<bool, UnpackError> {
        let ft = match header.entry_type() {
            tar::EntryType::Char => FileType::CharacterDevice,
            tar::EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if ft != FileType::Fifo && !self.opts.devices {
            self.stats.skipped_devices += 1;
            return Ok(false);
        }
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let dev = rustix::fs::makedev(major, minor);
        let perm = Mode::from_raw_mode(meta.mode);
        rustix::fs::mknodat(pfd, name, ft, perm, dev).map_err(|e| io_err(comps, "mknod", e))?;
        if self.opts.owners {
            rustix::fs::chownat(
                pfd,
                name,
                Some(uid_of(meta.uid)),
                Some(gid_of(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(comps, "chown", e))?;
        }
        rustix::fs::chmodat(pfd, name, perm, AtFlags::empty())
            .map_err(|e| io_err(comps, "chmod", e))?;
        Ok(true)
    }

    fn meta_fd(
        &self,
        fd: BorrowedFd<'_>,
        comps: &[OsString],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if self.opts.owners {
            rustix::fs::fchown(fd, Some(uid_of(meta.uid)), Some(gid_of(meta.gid)))
                .map_err(|e| io_err(comps, "fchown", e))?;
        }
        // After chown, which clears set-id bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_err(comps, "fchmod", e))?;
        for (k, v) in &meta.xattrs {
            if skip_xattr(k) {
                continue;
            }
            match rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                // Unsupported namespaces (e.g. user.* on some fs) are not fatal.
                Err(rustix::io::Errno::NOTSUP) => {}
                Err(e) => return Err(io_err(comps, "fsetxattr", e)),
            }
        }
        Ok(())
    }
}

/// `io::copy` with a 256 KiB buffer (fewer syscalls for large files).
fn copy_big(r: &mut impl Read, w: &mut std::fs::File, buf: &mut [u8]) -> io::Result<u64> {
    use std::io::Write;
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

fn skip_xattr(k: &str) -> bool {
    k.starts_with("trusted.overlay.") || k.starts_with("security.selinux")
}

fn uid_of(u: u64) -> rustix::fs::Uid {
    // -1 means "unchanged" to chown: clamp below it.
    rustix::fs::Uid::from_raw(u.min(u32::MAX as u64 - 1) as u32)
}

fn gid_of(g: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g.min(u32::MAX as u64 - 1) as u32)
}

/// Verifies and returns the digest of an uncompressed stream (for diff ids of
/// layers that are not unpacked here).
pub fn diff_id_of(reader: impl Read, compression: Compression) -> io::Result<Digest> {
    let mut r = decompress(reader, compression)?;
    let mut h = HashReader {
        inner: &mut r,
        hasher: Hasher::new(),
    };
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.hasher.finish())
}

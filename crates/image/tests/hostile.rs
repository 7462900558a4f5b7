//! Hostile layers against the real unpacker on the real file system: each
//! case is refused or contained, and a sentinel "host" directory next to
//! the target is checked to be unchanged afterwards.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use skiff_image::manifest::Compression;
use skiff_image::unpack::{self, UnpackError, UnpackOptions, WhiteoutMode};

/// A tar entry written with raw header bytes (no path sanitizing).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_old();
    {
        let o = h.as_old_mut();
        o.name[..name.len()].copy_from_slice(name);
        o.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_size(data.len() as u64);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

struct Host {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    target: PathBuf,
}

impl Host {
    fn new() -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let target = tmp.path().join("target");
        std::fs::create_dir(&host).unwrap();
        std::fs::create_dir(&target).unwrap();
        std::fs::write(host.join("victim"), b"original").unwrap();
        Host {
            _tmp: tmp,
            host,
            target,
        }
    }

    /// The host side must look exactly as created.
    fn assert_unchanged(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("victim")],
            "host dir gained entries"
        );
        assert_eq!(
            std::fs::read(self.host.join("victim")).unwrap(),
            b"original"
        );
        let m = std::fs::symlink_metadata(self.host.join("victim")).unwrap();
        assert_eq!(m.nlink(), 1, "victim was hard-linked into the target");
        assert!(m.is_file());
    }

    fn unpack(&self, tar: Vec<u8>) -> Result<unpack::UnpackStats, UnpackError> {
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Apply,
            ..Default::default()
        };
        unpack::unpack(&tar[..], Compression::None, &self.target, &opts)
    }
}

fn hostb(h: &Host) -> Vec<u8> {
    h.host.as_os_str().as_encoded_bytes().to_vec()
}

#[test]
fn dotdot_paths_are_refused() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"../host/pwned", tar::EntryType::Regular, b"", b"x");
    let err = h.unpack(b.into_inner().unwrap()).unwrap_err();
    assert!(matches!(err, UnpackError::Refused { .. }), "{err}");
    h.assert_unchanged();
}

#[test]
fn absolute_paths_are_contained() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut name = hostb(&h);
    name.extend_from_slice(b"/pwned");
    raw(&mut b, &name, tar::EntryType::Regular, b"", b"x");
    h.unpack(b.into_inner().unwrap()).unwrap();
    h.assert_unchanged();
    let inside = h
        .target
        .join(h.host.strip_prefix("/").unwrap())
        .join("pwned");
    assert_eq!(std::fs::read(inside).unwrap(), b"x");
}

#[test]
fn symlinked_parents_stay_inside() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"abs", tar::EntryType::Symlink, &hostb(&h), b"");
    raw(&mut b, b"abs/pwned", tar::EntryType::Regular, b"", b"1");
    raw(&mut b, b"abs/victim", tar::EntryType::Regular, b"", b"2");
    raw(
        &mut b,
        b"rel",
        tar::EntryType::Symlink,
        b"../../../../../../host",
        b"",
    );
    raw(&mut b, b"rel/pwned", tar::EntryType::Regular, b"", b"3");
    h.unpack(b.into_inner().unwrap()).unwrap();
    h.assert_unchanged();
    let abs_in = h.target.join(h.host.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(abs_in.join("pwned")).unwrap(), b"1");
    assert_eq!(std::fs::read(abs_in.join("victim")).unwrap(), b"2");
    assert_eq!(std::fs::read(h.target.join("host/pwned")).unwrap(), b"3");
    // The symlinks themselves are kept verbatim (they resolve inside the container).
    assert_eq!(std::fs::read_link(h.target.join("abs")).unwrap(), h.host);
}

#[test]
fn hardlinks_cannot_reach_outside() {
    for link in [
        b"../host/victim".to_vec(),
        [hostb(&Host::new()), b"/victim".to_vec()].concat(),
    ] {
        let h = Host::new();
        let mut b = tar::Builder::new(Vec::new());
        let mut target = link.clone();
        if !link.starts_with(b"..") {
            target = [hostb(&h), b"/victim".to_vec()].concat();
        }
        raw(&mut b, b"hl", tar::EntryType::Link, &target, b"");
        assert!(h.unpack(b.into_inner().unwrap()).is_err());
        h.assert_unchanged();
    }
    // Through a symlinked parent.
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"l", tar::EntryType::Symlink, &hostb(&h), b"");
    raw(&mut b, b"hl", tar::EntryType::Link, b"l/victim", b"");
    assert!(h.unpack(b.into_inner().unwrap()).is_err());
    h.assert_unchanged();
    // A hardlink to a symlink links the symlink, not what it points to.
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        b"s",
        tar::EntryType::Symlink,
        &[hostb(&h), b"/victim".to_vec()].concat(),
        b"",
    );
    raw(&mut b, b"hl", tar::EntryType::Link, b"s", b"");
    h.unpack(b.into_inner().unwrap()).unwrap();
    h.assert_unchanged();
    assert!(std::fs::symlink_metadata(h.target.join("hl"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlink_swapped_mid_unpack() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"d/", tar::EntryType::Directory, b"", b"");
    raw(&mut b, b"d/a", tar::EntryType::Regular, b"", b"a");
    raw(&mut b, b"d", tar::EntryType::Symlink, &hostb(&h), b"");
    raw(&mut b, b"d/b", tar::EntryType::Regular, b"", b"b");
    raw(
        &mut b,
        b"d/victim",
        tar::EntryType::Regular,
        b"",
        b"overwritten?",
    );
    h.unpack(b.into_inner().unwrap()).unwrap();
    h.assert_unchanged();
    let inside = h.target.join(h.host.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside.join("b")).unwrap(), b"b");
}

#[test]
fn whiteouts_of_dotdot_and_outside() {
    for name in [&b".wh..."[..], b"sub/.wh...", b".wh..", b".wh."] {
        let h = Host::new();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, name, tar::EntryType::Regular, b"", b"");
        let err = h.unpack(b.into_inner().unwrap()).unwrap_err();
        assert!(
            matches!(err, UnpackError::Refused { .. }),
            "{name:?}: {err}"
        );
        h.assert_unchanged();
    }
    // A whiteout through a symlinked parent removes inside the target only.
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"l", tar::EntryType::Symlink, &hostb(&h), b"");
    raw(&mut b, b"l/.wh.victim", tar::EntryType::Regular, b"", b"");
    raw(&mut b, b"l/.wh..wh..opq", tar::EntryType::Regular, b"", b"");
    h.unpack(b.into_inner().unwrap()).unwrap();
    h.assert_unchanged();
}

#[test]
fn device_nodes_for_host_disks_are_not_created() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Block);
    hd.set_path("dev/sda").unwrap();
    hd.set_device_major(8).unwrap();
    hd.set_device_minor(0).unwrap();
    hd.set_mode(0o666);
    hd.set_size(0);
    hd.set_cksum();
    b.append(&hd, std::io::empty()).unwrap();
    let stats = h.unpack(b.into_inner().unwrap()).unwrap();
    assert_eq!(stats.skipped_devices, 1);
    assert!(!h.target.join("dev/sda").exists());
    h.assert_unchanged();
}

#[test]
fn gzip_bomb_is_bounded() {
    let h = Host::new();
    // A tar header claiming a 2 GiB file, then gzip members of 1 MiB zeros:
    // ~1 KiB each compressed, so a few hundred KiB expand past the limit.
    let mut hd = tar::Header::new_gnu();
    hd.set_path("zeros").unwrap();
    hd.set_size(2 << 30);
    hd.set_mode(0o644);
    hd.set_cksum();
    let member = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let mut bomb = member(hd.as_bytes());
    let zeros = member(&vec![0u8; 1 << 20]);
    for _ in 0..64 {
        bomb.extend_from_slice(&zeros);
    }
    let limit = unpack::size_limit(bomb.len() as u64, 16 << 20);
    assert!(bomb.len() < 1 << 20 && limit == 16 << 20);
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
        max_bytes: limit,
        ..Default::default()
    };
    let err = unpack::unpack(&bomb[..], Compression::Gzip, &h.target, &opts).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
    let written = std::fs::metadata(h.target.join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= limit, "wrote {written} bytes past the limit");
    h.assert_unchanged();
}

#[test]
fn overlay_whiteouts_and_metadata() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: overlay whiteouts (char 0/0, trusted.* xattrs) need root");
        return;
    }
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"etc/", tar::EntryType::Directory, b"", b"");
    raw(&mut b, b"etc/.wh.gone", tar::EntryType::Regular, b"", b"");
    raw(&mut b, b"opq/", tar::EntryType::Directory, b"", b"");
    raw(
        &mut b,
        b"opq/.wh..wh..opq",
        tar::EntryType::Regular,
        b"",
        b"",
    );
    let mut hd = tar::Header::new_gnu();
    hd.set_path("suid").unwrap();
    hd.set_mode(0o4755);
    hd.set_uid(1234);
    hd.set_gid(5678);
    hd.set_mtime(1_000_000_000);
    hd.set_size(2);
    hd.set_cksum();
    b.append(&hd, &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..Default::default()
    };
    unpack::unpack(&tar[..], Compression::None, &h.target, &opts).unwrap();
    let wh = std::fs::symlink_metadata(h.target.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let v = rustix::fs::getxattr(
        h.target.join("opq").as_path(),
        "trusted.overlay.opaque",
        &mut [0u8; 8],
    )
    .unwrap();
    assert_eq!(v, 1);
    let m = std::fs::metadata(h.target.join("suid")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o4755, 1234, 5678, 1_000_000_000)
    );
    h.assert_unchanged();
}

#[test]
fn apply_mode_deletes_whited_out_paths() {
    let h = Host::new();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"a/", tar::EntryType::Directory, b"", b"");
    raw(&mut b, b"a/keep", tar::EntryType::Regular, b"", b"k");
    raw(&mut b, b"a/old", tar::EntryType::Regular, b"", b"o");
    raw(&mut b, b"o/", tar::EntryType::Directory, b"", b"");
    raw(&mut b, b"o/x", tar::EntryType::Regular, b"", b"x");
    h.unpack(b.into_inner().unwrap()).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, b"a/.wh.old", tar::EntryType::Regular, b"", b"");
    raw(&mut b, b"o/new", tar::EntryType::Regular, b"", b"n");
    raw(&mut b, b"o/.wh..wh..opq", tar::EntryType::Regular, b"", b"");
    h.unpack(b.into_inner().unwrap()).unwrap();
    assert!(h.target.join("a/keep").exists());
    assert!(!h.target.join("a/old").exists());
    assert!(!h.target.join("o/x").exists());
    assert!(h.target.join("o/new").exists());
    h.assert_unchanged();
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

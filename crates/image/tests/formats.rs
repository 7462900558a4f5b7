//! Layer formats: the same tar as plain, gzip (single and multi-member) and
//! zstd unpacks to the same tree and diff id; a wrong diff id is refused.

use std::io::Write;

use skiff_image::digest::Digest;
use skiff_image::manifest::Compression;
use skiff_image::unpack::{self, UnpackError, UnpackOptions, WhiteoutMode};

fn layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in [("a/b/c.txt", &b"hello"[..]), ("a/big", &[7u8; 300_000][..])] {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_mtime(1_234_567_890);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(0);
    b.append_link(&mut h, "a/link", "b/c.txt").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o640);
    h.set_mtime(0);
    b.append_link(&mut h, "a/hard", "a/big").unwrap();
    b.into_inner().unwrap()
}

fn check(data: &[u8], c: Compression, diff_id: &Digest) {
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
        diff_id: Some(diff_id.clone()),
        ..Default::default()
    };
    let stats = unpack::unpack(data, c, dir.path(), &opts).unwrap();
    assert_eq!(stats.diff_id.as_ref(), Some(diff_id));
    assert_eq!(
        std::fs::read(dir.path().join("a/b/c.txt")).unwrap(),
        b"hello"
    );
    assert_eq!(std::fs::read(dir.path().join("a/link")).unwrap(), b"hello");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.path().join("a/big")).unwrap();
    assert_eq!(
        (m.len(), m.nlink(), m.mode() & 0o777, m.mtime()),
        (300_000, 2, 0o640, 1_234_567_890)
    );
}

#[test]
fn plain_gzip_multigzip_zstd() {
    let tar = layer();
    let diff_id = Digest::of(&tar);
    check(&tar, Compression::None, &diff_id);
    let gz = |d: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    };
    check(&gz(&tar), Compression::Gzip, &diff_id);
    let (x, y) = tar.split_at(1000);
    check(&[gz(x), gz(y)].concat(), Compression::Gzip, &diff_id);
    check(
        &zstd::encode_all(&tar[..], 3).unwrap(),
        Compression::Zstd,
        &diff_id,
    );
    // A layer whose content does not match the config's diff id is refused.
    let dir = tempfile::tempdir().unwrap();
    let opts = UnpackOptions {
        diff_id: Some(Digest::of(b"other")),
        ..Default::default()
    };
    let err = unpack::unpack(&tar[..], Compression::None, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
}

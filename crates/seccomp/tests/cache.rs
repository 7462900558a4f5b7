//! The BPF cache: a second compile of the same profile reads the cache, the cached
//! filter behaves like a fresh one, corrupt cache files are rebuilt.

mod common;

use common::*;
use serde_json::json;

fn profile() -> oci_spec::runtime::LinuxSeccomp {
    typed(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV}]
    }))
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn cached_filter_is_reused_and_behaves_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("seccomp-cache");
    let fresh = skiff_seccomp::compile(&profile()).unwrap();
    let first = skiff_seccomp::compile_cached(&profile(), &cache).unwrap();
    let files = cache_files(&cache);
    assert_eq!(files.len(), 1, "one cache entry: {files:?}");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();
    let second = skiff_seccomp::compile_cached(&profile(), &cache).unwrap();
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written,
        "hit: not rewritten"
    );
    assert_eq!(fresh.instructions(), second.instructions());
    assert_eq!(first.instructions(), second.instructions());

    let dir = tempfile::tempdir().unwrap();
    let c = cpath(&dir.path().join("x"));
    // SAFETY: mkdir with a valid path.
    let got = exit_code(&second, || unsafe {
        rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
    });
    assert_eq!(got, libc::EXDEV);

    // A different profile gets its own entry.
    let other = typed(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]}),
    );
    skiff_seccomp::compile_cached(&other, &cache).unwrap();
    assert_eq!(cache_files(&cache).len(), 2);
}

#[test]
fn corrupt_cache_entry_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    skiff_seccomp::compile_cached(&profile(), &cache).unwrap();
    let file = cache_files(&cache).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let f = skiff_seccomp::compile_cached(&profile(), &cache).unwrap();
    assert_ne!(std::fs::read(&file).unwrap(), bytes, "entry rewritten");
    let dir = tempfile::tempdir().unwrap();
    let c = cpath(&dir.path().join("x"));
    // SAFETY: mkdir with a valid path.
    let got = exit_code(&f, || unsafe {
        rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
    });
    assert_eq!(got, libc::EXDEV);
}

#[test]
fn validation_still_runs_on_a_cache_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = typed(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_LOG", "errnoRet": 3}]}),
    );
    let e = skiff_seccomp::compile_cached(&bad, tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linux.seccomp.syscalls[0].errnoRet"), "{e}");
}

//! The guest's initramfs: `skiff-agent` as `/init` plus the kernel modules it
//! loads, as an uncompressed newc cpio (no decompression cost in the guest).
//!
//! Modules are resolved from `/lib/modules/<release>/modules.dep` in the
//! order `modprobe --show-depends` prints them (dependencies first) and
//! stored as `/lib/modules/skiff/NN-name.ko`, so the agent just loads them in
//! file-name order. The vsock channel's modules ([`VSOCK_MODULES`]) go to
//! `/lib/modules/skiff-vsock/` instead: the agent loads them only when the
//! channel is vsock. The archive is cached under the cache dir, keyed by the
//! hash of everything in it.
//!
//! The agent must be a static binary. It is looked up as `$SKIFF_AGENT`,
//! then `skiff-agent` next to the running executable, then
//! `../libexec/skiff/skiff-agent` from the executable's directory (where
//! `scripts/install.sh` puts it), then `dist/skiff-agent` of a cargo target
//! dir above the running executable (`target/dist/`, where
//! `scripts/build.sh` puts it), then `/usr/local/libexec/skiff/`,
//! `/usr/libexec/skiff/`, `/usr/local/lib/skiff/`, `/usr/lib/skiff/`.
//! Build it with `scripts/build.sh` (or `scripts/build.sh --only agent`).
//!
//! A kernel without modules for its release (the minimal kernel has
//! everything built in) gets an initramfs with the agent only.

use crate::{cache_dir, io_err, Error};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Modules the agent needs (virtio transport, the channel, the rootfs share).
pub const MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "virtiofs",
];

/// Modules of the vsock channel, stored apart in `/lib/modules/skiff-vsock/`
/// (minus those already in [`MODULES`]): the agent loads them only when the
/// channel is vsock, so virtio-serial VMs do not pay for them.
pub const VSOCK_MODULES: &[&str] = &[
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
];

/// Writes newc ("070701") cpio archives.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str) {
        self.header(name, 0o040755, 0, (0, 0));
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.header(name, 0o100000 | mode, data.len(), (0, 0));
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// Adds a character device node.
    pub fn chardev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.header(name, 0o020000 | mode, 0, (major, minor));
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

/// `modprobe --show-depends` order for `wanted`, from `<dir>/modules.dep`;
/// modules built into the kernel (`modules.builtin`) are skipped.
pub fn resolve_modules(dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let dep_file = dir.join("modules.dep");
    let deps = fs::read_to_string(&dep_file)
        .map_err(|e| io_err(&format!("read {}", dep_file.display()), e))?;
    let builtin = fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let norm = |p: &str| -> String {
        let base = p.rsplit('/').next().unwrap_or(p);
        let base = base.split(".ko").next().unwrap_or(base);
        base.replace('-', "_")
    };
    let mut table: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in deps.lines() {
        if let Some((m, rest)) = line.split_once(':') {
            table.insert(
                norm(m),
                (
                    m.to_owned(),
                    rest.split_whitespace().map(str::to_owned).collect(),
                ),
            );
        }
    }
    let builtins: Vec<String> = builtin.lines().map(norm).collect();
    let mut out: Vec<PathBuf> = Vec::new();
    for w in wanted {
        let w = w.replace('-', "_");
        if builtins.contains(&w) {
            continue;
        }
        let (path, d) = table.get(&w).ok_or_else(|| {
            Error::NotFound(format!("kernel module {w} in {}", dep_file.display()))
        })?;
        for p in d.iter().rev().chain(std::iter::once(path)) {
            let full = dir.join(p);
            if !out.contains(&full) {
                out.push(full);
            }
        }
    }
    Ok(out)
}

/// True when `data` is an ELF executable without a program interpreter (static).
pub fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || !data.starts_with(b"\x7fELF") || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= data.len()
            && u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) != 3
        // PT_INTERP
    })
}

/// Where the static `skiff-agent` binary is looked for, in order (see
/// the module docs).
pub fn agent_candidates() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SKIFF_AGENT") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("skiff-agent"));
        candidates.push(dir.join("../libexec/skiff/skiff-agent"));
        for anc in dir.ancestors().take(4) {
            candidates.push(anc.join("dist").join("skiff-agent"));
        }
    }
    for dir in [
        "/usr/local/libexec/skiff",
        "/usr/libexec/skiff",
        "/usr/local/lib/skiff",
        "/usr/lib/skiff",
    ] {
        candidates.push(Path::new(dir).join("skiff-agent"));
    }
    candidates
}

/// Finds the static `skiff-agent` binary (see module docs for the search order).
pub fn find_agent() -> Result<PathBuf, Error> {
    let candidates = agent_candidates();
    for c in &candidates {
        if let Ok(data) = fs::read(c) {
            if is_static_elf(&data) {
                return Ok(c.clone());
            }
        }
    }
    Err(Error::NotFound(format!(
        "static skiff-agent binary (looked at {}); build it with scripts/build.sh \
         (into target/dist/), install it with scripts/install.sh, or set $SKIFF_AGENT",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Builds (or reuses from the cache) the initramfs for a kernel whose modules are in `modules_dir`.
pub fn build(agent: &Path, modules_dir: Option<&Path>) -> Result<PathBuf, Error> {
    let agent_bin =
        fs::read(agent).map_err(|e| io_err(&format!("read agent {}", agent.display()), e))?;
    if !is_static_elf(&agent_bin) {
        return Err(Error::NotFound(format!(
            "{} is not a static ELF binary",
            agent.display()
        )));
    }
    let (modules, vsock_modules) = match modules_dir {
        Some(d) => {
            let main = resolve_modules(d, MODULES)?;
            let vsock: Vec<PathBuf> = resolve_modules(d, VSOCK_MODULES)?
                .into_iter()
                .filter(|m| !main.contains(m))
                .collect();
            (main, vsock)
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut hasher = Sha256::new();
    hasher.update(&agent_bin);
    let mut mod_data = Vec::new();
    for (dir, m) in modules
        .iter()
        .map(|m| ("skiff", m))
        .chain(vsock_modules.iter().map(|m| ("skiff-vsock", m)))
    {
        let data = fs::read(m).map_err(|e| io_err(&format!("read module {}", m.display()), e))?;
        hasher.update(dir.as_bytes());
        hasher.update(m.to_string_lossy().as_bytes());
        hasher.update(&data);
        mod_data.push((dir, m, data));
    }
    let key = hex::encode(&hasher.finalize()[..12]);
    let dir = cache_dir()?;
    let out = dir.join(format!("initramfs-{key}.cpio"));
    if out.exists() {
        // Marks it in use for `prune`.
        let _ = fs::File::options()
            .append(true)
            .open(&out)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        return Ok(out);
    }
    let mut c = Cpio::default();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "lib",
        "lib/modules",
        "lib/modules/skiff",
        "lib/modules/skiff-vsock",
    ] {
        c.dir(d);
    }
    c.chardev("dev/console", 0o600, 5, 1);
    c.chardev("dev/null", 0o666, 1, 3);
    c.file("init", 0o755, &agent_bin);
    for (i, (dir, path, data)) in mod_data.iter().enumerate() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("m.ko");
        c.file(
            &format!("lib/modules/{dir}/{:02}-{name}", i + 1),
            0o644,
            data,
        );
    }
    crate::write_atomic(&out, &c.finish())?;
    prune(&dir, &out, std::time::Duration::from_secs(3600));
    Ok(out)
}

/// Removes the cached archives other than `keep` unused for `age` (each
/// agent build makes a new one, 2-6.5 MB). A VM started from an archive has
/// read it already, and a reused archive's mtime is refreshed.
fn prune(dir: &Path, keep: &Path, age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if path == keep || !(name.starts_with("initramfs-") && name.ends_with(".cpio")) {
            continue;
        }
        if unused_for(&e, age) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// True when the cache entry `e` was last modified more than `age` ago.
pub(crate) fn unused_for(e: &fs::DirEntry, age: std::time::Duration) -> bool {
    e.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_readable_by_gnu_cpio() {
        let mut c = Cpio::default();
        c.dir("d");
        c.file("d/f", 0o644, b"hello");
        let data = c.finish();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .current_dir(dir.path())
            .spawn();
        let Ok(child) = child.as_mut() else {
            eprintln!("SKIP: cpio not installed");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let mut out = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out.lines().collect::<Vec<_>>(), ["d", "d/f"]);
    }

    #[test]
    fn prune_keeps_the_current_and_recent_archives() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for n in [
            "initramfs-old.cpio",
            "initramfs-new.cpio",
            "initramfs-keep.cpio",
            "vmlinux-x",
        ] {
            fs::write(d.join(n), "x").unwrap();
        }
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for n in ["initramfs-old.cpio", "initramfs-keep.cpio", "vmlinux-x"] {
            let f = fs::File::options().append(true).open(d.join(n)).unwrap();
            f.set_modified(past).unwrap();
        }
        prune(
            d,
            &d.join("initramfs-keep.cpio"),
            std::time::Duration::from_secs(3600),
        );
        assert!(!d.join("initramfs-old.cpio").exists());
        assert!(d.join("initramfs-new.cpio").exists());
        assert!(d.join("initramfs-keep.cpio").exists());
        assert!(d.join("vmlinux-x").exists());
    }

    #[test]
    fn this_test_binary_is_not_static() {
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are dynamically linked against glibc.
        assert!(!is_static_elf(&exe));
    }
}

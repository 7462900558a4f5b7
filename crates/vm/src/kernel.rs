//! Guest kernel: find it, and turn a compressed bzImage into the uncompressed
//! ELF (`vmlinux`, PVH entry) that QEMU's microvm boots directly.
//!
//! Decompressing a bzImage inside the guest costs 2.5-3 s under TCG, so the
//! host does it once, like the kernel's `extract-vmlinux` script: find each
//! compression magic in the file, try to decompress from there, keep the
//! first result that is an ELF. The result is cached under the cache dir,
//! keyed by the SHA-256 of the kernel file.

use crate::{cache_dir, io_err, Error};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Uncompressed ELF image.
    pub vmlinux: PathBuf,
    /// Kernel release (`uname -r`), when known from the file name.
    pub release: Option<String>,
    /// Where its modules are (`/lib/modules/<release>`), when present.
    pub modules: Option<PathBuf>,
    /// The kernel takes virtio-mmio devices from its command line
    /// (`virtio_mmio.device=`, `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`): such a
    /// kernel (the minimal one of `scripts/vm-kernel.sh`) boots without ACPI,
    /// QEMU appending the devices itself. Others (Debian's, with virtio as
    /// modules) find the devices through ACPI.
    pub cmdline_devices: bool,
}

/// The parameter a kernel with `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` registers.
const CMDLINE_DEVICES_PARAM: &[u8] = b"virtio_mmio.device\0";

/// Whether the ELF at `vmlinux` has command-line virtio-mmio devices built
/// in; the scan result is cached per (path, size, mtime) in the cache dir.
fn has_cmdline_devices(vmlinux: &Path) -> Result<bool, Error> {
    let meta = fs::metadata(vmlinux)
        .map_err(|e| io_err(&format!("stat kernel {}", vmlinux.display()), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!("{}\0{}\0{mtime}", vmlinux.display(), meta.len());
    let marker = cache_dir()?.join(format!(
        "kinfo-{}",
        hex::encode(&Sha256::digest(id.as_bytes())[..12])
    ));
    if let Ok(s) = fs::read_to_string(&marker) {
        return Ok(s.trim() == "cmdline_devices=1");
    }
    let data =
        fs::read(vmlinux).map_err(|e| io_err(&format!("read kernel {}", vmlinux.display()), e))?;
    let found = memmem(&data, CMDLINE_DEVICES_PARAM);
    crate::write_atomic(
        &marker,
        format!("cmdline_devices={}\n", u8::from(found)).as_bytes(),
    )?;
    Ok(found)
}

/// Substring search, fast enough for a 65 MB kernel (first byte via `position`).
fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|b| *b == needle[0]) {
        let at = from + i;
        if hay[at..].starts_with(needle) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// The default guest kernel: `$SKIFF_VM_KERNEL`, else the newest `/boot/vmlinuz-*`.
pub fn default_kernel() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("SKIFF_VM_KERNEL") {
        return Ok(PathBuf::from(p));
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/boot")
        .map_err(|e| io_err("read /boot", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort_by_key(|p| version_key(p));
    found.pop().ok_or_else(|| {
        Error::NotFound(
            "no guest kernel: /boot/vmlinuz-* is missing and $SKIFF_VM_KERNEL is unset".into(),
        )
    })
}

fn version_key(p: &Path) -> Vec<u64> {
    p.to_string_lossy()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Resolves `path` to a bootable kernel, extracting (and caching) the vmlinux.
pub fn prepare(path: &Path) -> Result<Kernel, Error> {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| io_err(&format!("read kernel {}", path.display()), e))?;
    let release = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.strip_prefix("vmlinuz-")
                .or_else(|| n.strip_prefix("vmlinux-"))
        })
        .map(str::to_owned);
    let modules = release
        .as_ref()
        .map(|r| PathBuf::from(format!("/lib/modules/{r}")))
        .filter(|p| p.join("modules.dep").exists());
    if &magic == b"\x7fELF" {
        return Ok(Kernel {
            vmlinux: path.to_path_buf(),
            release,
            modules,
            cmdline_devices: has_cmdline_devices(path)?,
        });
    }
    let data = fs::read(path).map_err(|e| io_err(&format!("read kernel {}", path.display()), e))?;
    let key = hex::encode(&Sha256::digest(&data)[..12]);
    let dir = cache_dir()?;
    let out = dir.join(format!("vmlinux-{key}"));
    if !out.exists() {
        let elf = extract(&data).ok_or_else(|| {
            Error::Kernel(format!(
                "{}: no gzip/xz/zstd-compressed ELF found in the image",
                path.display()
            ))
        })?;
        crate::write_atomic(&out, &elf)?;
    }
    Ok(Kernel {
        cmdline_devices: has_cmdline_devices(&out)?,
        vmlinux: out,
        release,
        modules,
    })
}

/// Finds a compressed payload whose content is an ELF file, like `extract-vmlinux`.
pub fn extract(data: &[u8]) -> Option<Vec<u8>> {
    const MAGICS: &[(&[u8], u8)] = &[
        (b"\xfd7zXZ\x00", b'x'),
        (b"\x1f\x8b\x08", b'g'),
        (b"\x28\xb5\x2f\xfd", b'z'),
    ];
    let mut hits: Vec<(usize, u8)> = Vec::new();
    for (magic, kind) in MAGICS {
        let mut from = 0;
        while let Some(i) = find(&data[from..], magic) {
            hits.push((from + i, *kind));
            from += i + 1;
            if hits.len() > 64 {
                break;
            }
        }
    }
    hits.sort();
    for (off, kind) in hits {
        let src = &data[off..];
        let mut out = Vec::with_capacity(data.len() * 5);
        let ok = match kind {
            b'x' => unxz(src, &mut out),
            b'g' => flate2::read::GzDecoder::new(src)
                .read_to_end(&mut out)
                .is_ok(),
            _ => zstd::stream::read::Decoder::new(src)
                .map(|d| d.single_frame())
                .and_then(|mut d| d.read_to_end(&mut out))
                .is_ok(),
        };
        if ok && out.starts_with(b"\x7fELF") {
            return Some(out);
        }
    }
    None
}

/// Decodes one xz stream, ignoring whatever follows it (the bzImage trailer).
fn unxz(src: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(mut stream) = xz2::stream::Stream::new_stream_decoder(u64::MAX, 0) else {
        return false;
    };
    let mut input = src;
    loop {
        if out.capacity() - out.len() < 1 << 20 {
            out.reserve(16 << 20);
        }
        let before = stream.total_in();
        match stream.process_vec(input, out, xz2::stream::Action::Run) {
            Ok(xz2::stream::Status::StreamEnd) => return true,
            Ok(_) => {
                let used = (stream.total_in() - before) as usize;
                input = &input[used..];
                if input.is_empty() && used == 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn extracts_gzip_payload_after_junk() {
        let mut elf = b"\x7fELF".to_vec();
        elf.extend(std::iter::repeat_n(7u8, 5000));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&elf).unwrap();
        let gz = enc.finish().unwrap();
        // A false magic first, then the real stream, then trailing bytes.
        let mut image = b"MZ junk \x1f\x8b\x08 not gzip".to_vec();
        image.extend(&gz);
        image.extend(b"trailer");
        assert_eq!(extract(&image).unwrap(), elf);
        assert!(extract(b"nothing here").is_none());
    }

    #[test]
    fn finds_the_cmdline_devices_parameter() {
        let mut k = vec![b'v'; 1000];
        assert!(!memmem(&k, CMDLINE_DEVICES_PARAM));
        k.extend(b"virtio_mmio.devic");
        assert!(!memmem(&k, CMDLINE_DEVICES_PARAM));
        k.extend(b"xvirtio_mmio.device\0tail");
        assert!(memmem(&k, CMDLINE_DEVICES_PARAM));
    }
}

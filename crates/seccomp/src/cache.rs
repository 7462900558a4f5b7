//! On-disk cache of compiled BPF programs, keyed by the normalised profile.
//!
//! libseccomp needs milliseconds for a docker-sized profile while a cached program
//! loads in microseconds, and most containers on a host share one profile (crun
//! caches for the same reason). The key hashes the normalised profile, the crate
//! version, the libseccomp version and the native architecture; host-dependent
//! flag checks are redone on every call. A file is `MAGIC | len (u32 LE) | program
//! | sha256(program)`; anything that does not verify is recompiled and replaced.
//! The cache is best-effort: failing to write it only logs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bpf;
use crate::compiler::{self, Compiled};
use crate::profile::Profile;
use crate::Error;

const MAGIC: &[u8; 8] = b"SKFBPF01";

fn key(p: &Profile) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(b"\0");
    h.update(crate::libseccomp_version());
    h.update(b"\0");
    h.update(format!("{:?}", libseccomp::ScmpArch::native()));
    h.update(b"\0");
    h.update(format!("{p:?}"));
    hex::encode(h.finalize())
}

fn encode(prog: &[libc::sock_filter]) -> Vec<u8> {
    let mut body = Vec::with_capacity(prog.len() * 8);
    for i in prog {
        body.extend_from_slice(&i.code.to_ne_bytes());
        body.push(i.jt);
        body.push(i.jf);
        body.extend_from_slice(&i.k.to_ne_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 44);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(prog.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&Sha256::digest(&body));
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if len == 0 || len > bpf::MAX_INSNS || rest.len() != len * 8 + 32 {
        return None;
    }
    let (body, sum) = rest.split_at(len * 8);
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    bpf::parse_program(body)
}

fn store(dir: &Path, file: &Path, prog: &[libc::sock_filter]) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&encode(prog))?;
    drop(f);
    fs::rename(&tmp, file).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Compiles `p`, reusing `cache_dir/<key>.bpf` when it verifies.
pub(crate) fn compile(p: &Profile, cache_dir: &Path) -> Result<Compiled, Error> {
    let plan = compiler::plan(p)?;
    let file: PathBuf = cache_dir.join(format!("{}.bpf", key(p)));
    if let Ok(bytes) = fs::read(&file) {
        if let Some(prog) = decode(&bytes) {
            return Ok(Compiled {
                prog,
                flags: plan.flags,
            });
        }
        log::warn!("seccomp cache {}: corrupt, recompiling", file.display());
    }
    let prog = compiler::generate(p, &plan)?;
    if let Err(e) = store(cache_dir, &file, &prog) {
        log::warn!("seccomp cache {}: not written: {e}", file.display());
    }
    Ok(Compiled {
        prog,
        flags: plan.flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let prog = vec![
            libc::sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            },
        ];
        let enc = encode(&prog);
        let dec = decode(&enc).expect("decodes");
        assert_eq!(dec.len(), 2);
        assert_eq!((dec[1].code, dec[1].k), (0x06, 0x7fff_0000));
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_none(), "flipped byte {i} not detected");
        }
        assert!(decode(&enc[..enc.len() - 1]).is_none());
    }
}

//! The agent's initramfs, memoised by the identity of its inputs so that a
//! `create` does not re-read and re-hash the agent every time.

use crate::{cache_dir, initramfs, Error};
use std::fs;
use std::path::{Path, PathBuf};

/// [`initramfs::build`] memoised by the identity (device, inode, size,
/// mtime, ctime) of the agent, of the kernel's `modules.dep` and of the
/// running binary (which fixes the module list and the archive layout):
/// `build` reads and hashes the 6.5 MB agent to name the archive, ~20 ms of
/// every `create` on this host. The memo (`<cache>/initramfs-memo/<hash>`,
/// holding the archive's path) is only trusted while that archive exists;
/// a hit marks the archive used, as `build` does.
pub(crate) fn agent_initramfs(agent: &Path, modules: Option<&Path>) -> Result<PathBuf, Error> {
    agent_initramfs_in(&cache_dir()?.join("initramfs-memo"), agent, modules, || {
        initramfs::build(agent, modules)
    })
}

fn agent_initramfs_in(
    memo_dir: &Path,
    agent: &Path,
    modules: Option<&Path>,
    build: impl FnOnce() -> Result<PathBuf, Error>,
) -> Result<PathBuf, Error> {
    use sha2::Digest;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ident = |p: &Path| {
        fs::metadata(p).ok().map(|m| {
            format!(
                "{}:{}:{}:{}.{}:{}.{}",
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            )
        })
    };
    let exe = std::env::current_exe().ok();
    let src = format!(
        "{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}",
        agent.display(),
        ident(agent),
        modules,
        modules.and_then(|m| ident(&m.join("modules.dep"))),
        exe,
        exe.as_deref().and_then(ident),
        env!("CARGO_PKG_VERSION"),
    );
    let memo = memo_dir.join(hex::encode(&sha2::Sha256::digest(src.as_bytes())[..16]));
    if let Ok(path) = fs::read_to_string(&memo) {
        let path = PathBuf::from(path);
        let in_cache = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("initramfs-"));
        if in_cache && path.is_file() {
            // Marks it in use for the cache's pruning.
            let _ = fs::File::options()
                .append(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(path);
        }
    }
    let built = build()?;
    if fs::create_dir_all(memo_dir).is_ok()
        && fs::set_permissions(memo_dir, fs::Permissions::from_mode(0o700)).is_ok()
    {
        let part = memo_dir.join(format!(".tmp{}", std::process::id()));
        if fs::write(&part, built.to_string_lossy().as_bytes()).is_ok()
            && fs::rename(&part, &memo).is_err()
        {
            let _ = fs::remove_file(&part);
        }
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn initramfs_memo_follows_the_agent_and_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = tmp.path().join("skiff-agent");
        fs::write(&agent, b"agent v1").unwrap();
        let archive = tmp.path().join("initramfs-abc.cpio");
        let memo = tmp.path().join("memo");
        let builds = std::cell::Cell::new(0);
        let build = || {
            builds.set(builds.get() + 1);
            fs::write(&archive, b"cpio").unwrap();
            Ok(archive.clone())
        };
        assert_eq!(
            agent_initramfs_in(&memo, &agent, None, build).unwrap(),
            archive
        );
        assert_eq!(
            agent_initramfs_in(&memo, &agent, None, build).unwrap(),
            archive
        );
        assert_eq!(builds.get(), 1, "second call served by the memo");
        // A rebuilt agent (new mtime/ctime/size) is built again.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&agent, b"agent v2!").unwrap();
        agent_initramfs_in(&memo, &agent, None, build).unwrap();
        assert_eq!(builds.get(), 2);
        // A pruned archive is built again.
        fs::remove_file(&archive).unwrap();
        agent_initramfs_in(&memo, &agent, None, build).unwrap();
        assert_eq!(builds.get(), 3);
        // Another modules directory is another key.
        agent_initramfs_in(&memo, &agent, Some(tmp.path()), build).unwrap();
        assert_eq!(builds.get(), 4);
    }
}

//! The files a VM container keeps in its state directory, in one place.
//!
//! Sockets go through [`sock_path`]: a state directory deep enough to hit
//! the unix socket path limit gets them under `/tmp` instead (a name
//! derived from the directory). [`StateDir::remove_all`] removes exactly
//! what the other methods name, so nothing is left behind and nothing
//! else is touched.

use crate::sock_path;
use std::fs;
use std::path::{Path, PathBuf};

/// A VM container's state directory (the runtime's, one per container).
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The layout of `dir`.
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    fn socket(&self, name: &str) -> PathBuf {
        sock_path(&self.dir, name)
    }

    /// QEMU's chardev of the agent channel (virtio-serial).
    pub fn agent_socket(&self) -> PathBuf {
        self.socket("agent.sock")
    }

    /// The shim's control socket (`start`, `exec`, `stats`, ...).
    pub fn control_socket(&self) -> PathBuf {
        self.socket("shim.sock")
    }

    /// QEMU's QMP socket (template restore).
    pub fn qmp_socket(&self) -> PathBuf {
        self.socket("qmp.sock")
    }

    /// virtiofsd's vhost-user socket (rootfs over virtio-fs).
    pub fn virtiofs_socket(&self) -> PathBuf {
        self.socket("virtiofs.sock")
    }

    /// The hybrid vsock's host-side socket (vhost-device-vsock).
    pub fn vsock_socket(&self) -> PathBuf {
        self.socket("vsock.sock")
    }

    /// vhost-device-vsock's vhost-user socket.
    pub fn vsock_vhost_socket(&self) -> PathBuf {
        self.socket("vsock-vhost.sock")
    }

    /// Pid of the shim.
    pub fn shim_pid(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }

    /// Pid of QEMU (leader of its process group).
    pub fn vmm_pid(&self) -> PathBuf {
        self.dir.join("vmm.pid")
    }

    /// Pid of virtiofsd.
    pub fn virtiofsd_pid(&self) -> PathBuf {
        self.dir.join("virtiofsd.pid")
    }

    /// Pid of vhost-device-vsock.
    pub fn vsock_pid(&self) -> PathBuf {
        self.dir.join("vsock.pid")
    }

    /// The guest console (kernel and agent messages).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Output of QEMU and its helper daemons.
    pub fn vmm_log(&self) -> PathBuf {
        self.dir.join("vmm.log")
    }

    /// The boot breakdown (JSON), read by the benchmarks.
    pub fn timings(&self) -> PathBuf {
        self.dir.join("timings.json")
    }

    fn sockets(&self) -> [PathBuf; 6] {
        [
            self.agent_socket(),
            self.control_socket(),
            self.qmp_socket(),
            self.virtiofs_socket(),
            self.vsock_socket(),
            self.vsock_vhost_socket(),
        ]
    }

    fn files(&self) -> [PathBuf; 7] {
        [
            self.virtiofsd_pid(),
            self.vsock_pid(),
            self.vmm_pid(),
            self.shim_pid(),
            self.console_log(),
            self.vmm_log(),
            self.timings(),
        ]
    }

    /// Removes every socket and file above (those that exist).
    pub fn remove_all(&self) {
        for s in self.sockets() {
            remove_stale(&s);
            // A socket moved to /tmp by sock_path may also exist under
            // its plain name (written by an older skiff).
            if let Some(name) = s.file_name() {
                remove_stale(&self.dir.join(name));
            }
        }
        for f in self.files() {
            remove_stale(&f);
        }
    }
}

/// Removes `path` if it exists.
pub(crate) fn remove_stale(path: &Path) {
    // Ignored: a missing file is the goal, and any other error resurfaces
    // at the bind or create that follows (or, after `delete`, as a file the
    // caller finds left behind).
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_all_removes_what_it_names_only() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::new(d.path());
        for f in s.files().iter().chain(s.sockets().iter()) {
            fs::write(f, "x").unwrap();
        }
        fs::write(d.path().join("config.json"), "{}").unwrap();
        s.remove_all();
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("config.json")]);
    }
}

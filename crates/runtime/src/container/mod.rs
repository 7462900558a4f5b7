//! Container lifecycle on the runtime side: [`Runtime`] (create, load,
//! list) and [`Container`] (start, state, kill, delete, exec, pause/resume,
//! stats, update).
//!
//! Each verb checks the lifecycle state, runs the spec's hooks and keeps
//! the state file here, and calls the container's isolation
//! ([`crate::isolation`]) once for the isolation-specific step. The
//! namespace isolation's own code is in [`create`] (the init),
//! [`exec`](mod@exec) and `ns` (namespaces); [`wait`] waits for a foreground
//! process.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::config;
use crate::error::Context;
use crate::isolation;
use crate::state::{self, Lock, Root, Saved, Status};
use crate::{Error, Result};

pub(crate) mod create;
pub(crate) mod exec;
mod lifecycle;
mod ns;
pub mod wait;

pub(crate) use create::unmount_under;
pub use lifecycle::{kill_init, kill_init_and_wait};
pub use wait::{forwarded_signals, set_subreaper, wait_forwarding};

/// Options of `create` (and `run`).
#[derive(Debug)]
pub struct CreateOptions<'a> {
    /// Container id.
    pub id: &'a str,
    /// Bundle directory.
    pub bundle: &'a Path,
    /// Unix socket that receives the pty master when process.terminal is set.
    pub console_socket: Option<&'a Path>,
    /// File to write the init pid to.
    pub pid_file: Option<&'a Path>,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Number of extra fds (from 3) to pass to the container.
    pub preserve_fds: u32,
    /// An already connected console socket (used by `run` with a terminal).
    pub console_conn: Option<OwnedFd>,
}

/// Options of `exec`.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions<'a> {
    /// Unix socket that receives the pty master when process.terminal is set.
    pub console_socket: Option<&'a Path>,
    /// File to write the process pid to.
    pub pid_file: Option<&'a Path>,
    /// Number of extra fds (from 3) to pass.
    pub preserve_fds: u32,
    /// Sub-cgroup (relative to the container's) to join.
    pub cgroup: Option<&'a str>,
    /// An already connected console socket (`exec -t` without
    /// `--console-socket`: one end of a socketpair).
    pub console_conn: Option<std::os::fd::BorrowedFd<'a>>,
    /// Do not wait for the process (VM isolation runs it to completion
    /// otherwise).
    pub detach: bool,
}

/// The runtime: a state root plus global settings.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: Root,
    /// Drive cgroups through systemd.
    pub systemd_cgroup: bool,
    /// Rootless mode.
    pub rootless: bool,
    /// Default isolation (`namespace` or `vm`) for containers that do not
    /// choose one with the `run.skiff.isolation` annotation.
    pub isolation: Option<String>,
    /// Verbose diagnostics.
    pub debug: bool,
}

/// A loaded container, locked for the lifetime of this value (unless read
/// with [`Runtime::peek`], which takes no lock).
#[derive(Debug)]
pub struct Container {
    /// What is stored about it.
    pub saved: Saved,
    dir: PathBuf,
    lock: Option<Lock>,
}

/// runtime-spec `state` JSON for a container.
fn state_json(saved: &Saved, status: Status) -> serde_json::Value {
    let pid = if matches!(status, Status::Stopped) {
        0
    } else {
        saved.pid
    };
    serde_json::json!({
        "ociVersion": config::OCI_VERSION_MAX,
        "id": saved.id,
        "status": status.as_str(),
        "pid": pid,
        "bundle": saved.bundle,
        "rootfs": saved.rootfs,
        "created": saved.created,
        "owner": state::owner_display(&saved.owner),
        "annotations": saved.annotations(),
    })
}

/// Writes a pid file atomically (temp file + rename), as runc does.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let data = pid.to_string();
    skiff_sys::fs::write_atomic(
        path,
        data.as_bytes(),
        0o644,
        skiff_sys::fs::Durability::Process,
    )
    .ctx(|| "writing pid file")
}

impl Runtime {
    /// A runtime keeping state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: Root::new(root),
            systemd_cgroup: false,
            rootless: false,
            isolation: None,
            debug: false,
        }
    }

    /// The state root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Where compiled seccomp programs are cached (root-only, under the
    /// state root: whoever can write it could weaken every filter).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.path().join(".seccomp-cache")
    }

    fn cgroup(
        &self,
        saved_path: Option<&str>,
        id: &str,
    ) -> Result<Box<dyn skiff_cgroups::Manager>> {
        Ok(skiff_cgroups::new_manager(&skiff_cgroups::Config {
            cgroups_path: saved_path,
            id,
            systemd: self.systemd_cgroup,
            rootless: self.rootless,
        })?)
    }

    /// Loads the bundle's config.json (validated).
    pub fn load_bundle(bundle: &Path) -> Result<(PathBuf, Spec)> {
        let bundle = std::fs::canonicalize(bundle)
            .map_err(|e| Error::Config(format!("bundle {}: {e}", bundle.display())))?;
        let spec = config::load(&bundle)?;
        Ok((bundle, spec))
    }

    /// `create`: sets up the container; its process waits for [`Container::start`].
    pub fn create(&self, o: &CreateOptions) -> Result<Container> {
        let (bundle, spec) = Self::load_bundle(o.bundle)?;
        self.create_with(o, bundle, spec)
    }

    /// `create` with an already loaded config: the isolation the config
    /// asks for (see [`isolation::choose`]) builds the container.
    pub fn create_with(&self, o: &CreateOptions, bundle: PathBuf, spec: Spec) -> Result<Container> {
        config::validate_id(o.id)?;
        let rootfs = config::rootfs_path(&spec, &bundle)?;
        let isolation = isolation::choose(&spec, self.isolation.as_deref());
        isolation::of(isolation).create(self, o, bundle, spec, rootfs)
    }

    /// Loads (and locks) container `id`.
    pub fn load(&self, id: &str) -> Result<Container> {
        let (saved, lock) = self.root.load(id)?;
        let dir = self.root.dir(id);
        Ok(Container {
            saved,
            dir,
            lock: Some(lock),
        })
    }

    /// Reads container `id` without taking its lock (for `state` and
    /// `list`): state files are replaced by atomic renames, so the read is
    /// consistent, and a command holding the lock (a `create` in a slow
    /// hook) does not hold up the reader.
    pub fn peek(&self, id: &str) -> Result<Container> {
        let saved = self.root.read(id)?;
        Ok(Container {
            saved,
            dir: self.root.dir(id),
            lock: None,
        })
    }

    /// State of every container (for `list`), read without locks.
    pub fn list(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for id in self.root.ids()? {
            if let Ok(c) = self.peek(&id) {
                out.push(c.state(self));
            }
        }
        Ok(out)
    }
}

impl Container {
    /// A container just created (its directory locked by `lock`).
    pub(crate) fn from_parts(saved: Saved, dir: PathBuf, lock: Lock) -> Self {
        Container {
            saved,
            dir,
            lock: Some(lock),
        }
    }

    /// The fd of the container's state lock, if held (a child must close
    /// it).
    pub(crate) fn lock_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.lock.iter().map(Lock::raw_fd).collect()
    }

    /// True when the state says creating but its `create` is gone (see
    /// [`Container::status`]).
    pub(crate) fn creator_gone(&self) -> bool {
        self.saved.creating && (self.lock.is_some() || state::Lock::is_free(&self.dir))
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.saved.id
    }

    /// Init pid.
    pub fn pid(&self) -> i32 {
        self.saved.pid
    }

    /// The container's directory under the state root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manager of the container's cgroups (as recorded at create).
    pub(crate) fn cgroup(&self, rt: &Runtime) -> Result<Box<dyn skiff_cgroups::Manager>> {
        Ok(skiff_cgroups::new_manager(&skiff_cgroups::Config {
            cgroups_path: self.saved.cgroups_path.as_deref(),
            id: &self.saved.id,
            systemd: self.saved.systemd_cgroup,
            rootless: self.saved.rootless || rt.rootless,
        })?)
    }

    /// runtime-spec state JSON.
    pub fn state(&self, rt: &Runtime) -> serde_json::Value {
        state_json(&self.saved, self.status(rt))
    }

    pub(crate) fn bad_state(&self, status: Status, msg: &str) -> Error {
        Error::BadState {
            id: self.saved.id.clone(),
            status: status.to_string(),
            msg: msg.into(),
        }
    }
}

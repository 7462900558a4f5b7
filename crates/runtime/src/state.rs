//! Container state on disk: one directory per container under the runtime
//! root (`--root`, default `/run/skiff`, 0700), holding `state.json` (0600,
//! written atomically: temp file + rename), the `exec.fifo` that blocks the init
//! until `start`, and a lock (`flock` on the directory) that serializes
//! commands on the same container.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::Context;
use crate::{Error, Result};

/// Name of the state file inside a container's directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the fifo the init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Status of a container as defined by runtime.md (plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; the user process waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process exited.
    Stopped,
}

impl Status {
    /// The spec's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// Container id.
    pub id: String,
    /// Init pid in the runtime's pid namespace (0 while creating).
    pub pid: i32,
    /// Start time of the init (field 22 of /proc/<pid>/stat), against pid reuse.
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Owner user name (or uid).
    pub owner: String,
    /// Set while `create` runs; cleared when the container is created.
    pub creating: bool,
    /// cgroupsPath used for the container.
    pub cgroups_path: Option<String>,
    /// Whether cgroups are driven through systemd.
    pub systemd_cgroup: bool,
    /// Rootless mode.
    pub rootless: bool,
    /// "namespace" or "vm".
    pub isolation: String,
    /// `create --no-new-keyring`: exec'd processes keep the caller's
    /// session keyring too (otherwise they join the container's).
    #[serde(default)]
    pub no_new_keyring: bool,
    /// The config the container was created with (hooks, annotations...).
    pub spec: Spec,
}

/// Root of the state tree (`--root`).
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// Uses `path` as the state root; created 0700 on first container (an
    /// existing looser root is tightened then, with a warning).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Root { path: path.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Creates the directory of a new container and locks it. Fails with
    /// [`Error::Exists`] if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<(PathBuf, Lock)> {
        crate::config::validate_id(id)?;
        skiff_sys::fs::ensure_private_dir(&self.path, 0o700).ctx(|| "state root")?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
        }
        let lock = Lock::take(&dir)?;
        Ok((dir, lock))
    }

    /// Locks and loads container `id`.
    pub fn load(&self, id: &str) -> Result<(Saved, Lock)> {
        crate::config::validate_id(id).map_err(|_| Error::NotFound(id.to_string()))?;
        let dir = self.dir(id);
        let lock = match Lock::take(&dir) {
            Ok(l) => l,
            Err(_) if !dir.exists() => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(e),
        };
        let saved = read_saved(&dir, id)?;
        Ok((saved, lock))
    }

    /// Reads container `id`'s state without locking it (state files are
    /// replaced by atomic renames).
    pub fn read(&self, id: &str) -> Result<Saved> {
        crate::config::validate_id(id).map_err(|_| Error::NotFound(id.to_string()))?;
        read_saved(&self.dir(id), id)
    }

    /// Ids of all containers under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", self.path.display())),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn read_saved(dir: &Path, id: &str) -> Result<Saved> {
    let path = dir.join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_string()))
        }
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&data)
        .map_err(|e| Error::Other(format!("{}: corrupt state: {e}", path.display())))
}

/// Writes `saved` to `<dir>/state.json` atomically.
pub fn write_saved(dir: &Path, saved: &Saved) -> Result<()> {
    let data = serde_json::to_vec(saved).map_err(|e| Error::Other(e.to_string()))?;
    let path = dir.join(STATE_FILE);
    skiff_sys::fs::write_private(&path, &data).ctx(|| "saving container state")
}

/// An exclusive `flock` on a container directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// The lock's fd (the init closes its inherited copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self._file.as_raw_fd()
    }

    /// Blocks until the lock on `dir` is held.
    pub fn take(dir: &Path) -> Result<Lock> {
        let file = File::open(dir).ctx(|| format!("opening {}", dir.display()))?;
        // SAFETY: flock on a valid, owned fd; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("locking {}", dir.display()));
        }
        Ok(Lock { _file: file })
    }

    /// True when nobody holds the lock on `dir` (probed without blocking
    /// and released at once). A missing directory counts as free.
    pub fn is_free(dir: &Path) -> bool {
        let Ok(file) = File::open(dir) else {
            return true;
        };
        // SAFETY: flock on a valid, owned fd; closing it releases the lock.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
}

/// Process start time (clock ticks since boot) from /proc/<pid>/stat, and
/// whether the process is a zombie/dead. `None` if the process is gone.
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    if pid <= 0 {
        return None;
    }
    let mut buf = [0u8; 1024];
    let stat = read_small(&format!("/proc/{pid}/stat"), &mut buf)?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 2..];
    let mut fields = rest.split(|&b| b == b' ');
    let state = fields.next()?.first().copied()?;
    // rest starts at field 3 (state); starttime is field 22.
    let start = fields.nth(18)?;
    let start: u64 = std::str::from_utf8(start).ok()?.parse().ok()?;
    Some((start, state == b'Z' || state == b'X'))
}

fn read_small<'a>(path: &str, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    use std::io::Read;
    let mut f = File::open(path).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    Some(&buf[..n])
}

impl Saved {
    /// True while the init process (the one recorded at create) is alive.
    pub fn init_alive(&self) -> bool {
        match proc_start(self.pid) {
            Some((start, zombie)) => start == self.pid_start && !zombie,
            None => false,
        }
    }

    /// Status derived from the process and the exec fifo (not `paused`, which
    /// needs the cgroup: see `Container::status`). `creator_gone`: the
    /// `create` that wrote a creating state no longer runs (it was killed),
    /// so the container is stopped whatever its init does.
    pub fn base_status(&self, dir: &Path, creator_gone: bool) -> Status {
        if self.creating {
            return if !creator_gone && (self.pid == 0 || self.init_alive()) {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// Annotations of the config.
    pub fn annotations(&self) -> HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }
}

/// Current time as RFC 3339 UTC with nanoseconds (as runc prints `created`).
pub fn now_rfc3339() -> String {
    skiff_sys::time::now_rfc3339()
}

/// The owner recorded at `create`: the effective uid. The name is looked
/// up only when shown ([`owner_display`]), not on the start path.
pub fn owner_uid() -> String {
    // SAFETY: geteuid has no failure modes.
    unsafe { libc::geteuid() }.to_string()
}

/// The owner as `list`/`state` show it: a recorded uid becomes the user's
/// name (from /etc/passwd without NSS, as runc shows it); anything else
/// (a name recorded by an older skiff) is shown as it is.
pub fn owner_display(owner: &str) -> String {
    match owner.parse::<u32>() {
        Ok(uid) => owner_name(uid),
        Err(_) => owner.to_string(),
    }
}

/// Name of user `uid` (from /etc/passwd without NSS), or the uid.
pub fn owner_name(uid: u32) -> String {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut f = line.split(':');
            let (name, _, u) = (f.next(), f.next(), f.next());
            if u.and_then(|u| u.parse::<u32>().ok()) == Some(uid) {
                if let Some(n) = name {
                    return n.to_string();
                }
            }
        }
    }
    uid.to_string()
}

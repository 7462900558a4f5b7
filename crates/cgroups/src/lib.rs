//! skiff-cgroups: the cgroup managers of skiff.
//!
//! One trait, [`Manager`], with one filesystem implementation that drives the
//! three host layouts:
//!
//! * **v1**: one hierarchy per controller group (`/sys/fs/cgroup/memory`, ...);
//! * **v2**: the unified hierarchy (`/sys/fs/cgroup`);
//! * **hybrid**: v1 controllers plus a cgroup2 mount (usually
//!   `/sys/fs/cgroup/unified`). Each controller is driven where it is bound:
//!   a controller mounted as v1 is written on its v1 hierarchy, a controller
//!   only available on cgroup2 (on the development host: `hugetlb`) on the
//!   unified hierarchy. The container joins every hierarchy, including
//!   `name=systemd` and the unified one.
//!
//! The crate knows nothing about containers: it takes a cgroups path and an id
//! ([`Config`]), validates `linux.resources` ([`validate`]) and writes them
//! ([`Manager::apply`]). Semantics (paths, conversions between v1 and v2
//! values, device rules) follow runc; see `docs/cgroups.md`.
//!
//! The mount table is read once per process ([`MountTable::host`]); tests and
//! callers with a private cgroup2 mount build their own table with
//! [`MountTable::unified`] and call [`new_manager_with`].

mod devices;
mod error;
mod fsutil;
mod manager;
mod mounts;
mod stats;
mod systemd;
mod v1;
mod v2;
mod validate;

use std::path::PathBuf;

pub use devices::{attached_device_filters, default_device_rules, deny_all_rule, device_rule};
pub use error::Error;
pub use mounts::{CgroupMount, MountTable};
pub use oci_spec::runtime::LinuxResources;
/// Undoes mountinfo's octal escapes (kept here for the runtime's callers).
pub use skiff_sys::mountinfo::unescape as unescape_mountinfo;
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuSet, CpuUsage, Hugetlb, Memory, MemoryEntry, Pids, PsiData,
    PsiStats, Stats, Throttling,
};
pub use v2::{blkio_weight_to_io, shares_to_weight};
pub use validate::{parse_id_list, validate};

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only cgroup v1 hierarchies are mounted.
    V1,
    /// Only the unified (cgroup2) hierarchy is mounted.
    V2,
    /// cgroup v1 hierarchies plus a cgroup2 mount.
    Hybrid,
}

/// Detects the layout of this host from `/proc/self/mountinfo` (read once per
/// process and cached).
pub fn detect_layout() -> Result<Layout, Error> {
    MountTable::host()?.layout()
}

/// What a manager is built from: the container's `linux.cgroupsPath` and id.
///
/// The same `Config` always yields the same cgroup directories, so later
/// commands (`kill`, `delete`, `update`, ...) re-create the manager from the
/// stored `cgroupsPath` and id.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// `linux.cgroupsPath`: absolute (`/a/b`, below every hierarchy root),
    /// relative (`a/b`, below the cgroup of the calling process in each
    /// hierarchy as runc; on a pure v2 host below the *parent* of that
    /// cgroup, as runc's fs2), or `None`/empty for `/skiff/<id>`. With
    /// `systemd`, the `slice:prefix:name` form.
    pub cgroups_path: Option<&'a str>,
    /// The container id.
    pub id: &'a str,
    /// Use the systemd driver (`--systemd-cgroup`).
    pub systemd: bool,
    /// Rootless: permission errors while creating or joining cgroups are
    /// ignored (the container then runs without those limits), and device
    /// rules are not applied (as runc: an unprivileged user cannot mknod).
    pub rootless: bool,
}

/// One cgroup hierarchy the container is part of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// 1 or 2.
    pub version: u8,
    /// The v1 controllers bound to the hierarchy, comma separated as in
    /// `/proc/self/cgroup` (`memory`, `cpu,cpuacct`, `name=systemd`); empty
    /// for cgroup2.
    pub controllers: String,
    /// Where the hierarchy is mounted on the host.
    pub mount_point: PathBuf,
    /// This container's directory in it.
    pub path: PathBuf,
}

/// Operations on the cgroup(s) of one container.
pub trait Manager: std::fmt::Debug + Send + Sync {
    /// Creates the container's directory in every hierarchy (on cgroup2, also
    /// enables the available controllers in the parents'
    /// `cgroup.subtree_control`; on v1, fills an empty cpuset from the parent).
    fn create(&self) -> Result<(), Error>;
    /// Writes every field set in `r` (also used by `update`).
    fn apply(&self, r: &LinuxResources) -> Result<(), Error>;
    /// Moves `pid` into the container's cgroup in every hierarchy.
    fn add_task(&self, pid: i32) -> Result<(), Error>;
    /// All pids in the container's cgroup, recursively.
    fn pids(&self) -> Result<Vec<i32>, Error>;
    /// Freezes every process of the container and waits until it is frozen.
    fn freeze(&self) -> Result<(), Error>;
    /// Thaws the container.
    fn thaw(&self) -> Result<(), Error>;
    /// Whether the container is frozen.
    fn is_frozen(&self) -> Result<bool, Error>;
    /// Resource usage in the `data` format of runc's `events --stats`.
    fn stats(&self) -> Result<Stats, Error>;
    /// The number of processes the OOM killer killed in the cgroup.
    fn oom_kill_count(&self) -> Result<u64, Error>;
    /// A file descriptor that becomes readable when an OOM may have happened
    /// in the cgroup (v1: an eventfd registered on `memory.oom_control`,
    /// also signalled when the cgroup is removed; v2: an inotify watch on
    /// `memory.events`). After a wake-up, drain the fd and compare
    /// [`Manager::oom_kill_count`] with the previous value.
    fn oom_notifier(&self) -> Result<std::os::fd::OwnedFd, Error> {
        Err(Error::Unsupported {
            field: "events".into(),
            msg: "this manager has no OOM notifier".into(),
        })
    }
    /// Sends `signal` to every process (`cgroup.kill` for `SIGKILL` when
    /// cgroup2 is joined; otherwise freeze, signal each pid, thaw). A paused
    /// container stays paused, except for `SIGKILL`.
    fn kill_all(&self, signal: i32) -> Result<(), Error>;
    /// Removes the container's directories (and any sub-cgroups); `Ok` if
    /// they are already gone. Retries briefly while the kernel reports EBUSY.
    fn destroy(&self) -> Result<(), Error>;
    /// The hierarchies the container is part of (to mount cgroupfs inside
    /// the container).
    fn hierarchies(&self) -> Vec<Hierarchy>;
    /// The layout this manager drives.
    fn layout(&self) -> Layout;
}

/// Builds the manager for `cfg` on this host (mount table of
/// `/proc/self/mountinfo`, cached).
pub fn new_manager(cfg: &Config) -> Result<Box<dyn Manager>, Error> {
    if cfg.systemd {
        return Err(systemd::unavailable(cfg));
    }
    new_manager_with(cfg, MountTable::host()?)
}

/// Builds a cgroupfs manager for `cfg` on the hierarchies of `table` (for
/// callers and tests with their own cgroup mounts). `cfg.systemd` is an error
/// here: the systemd driver only works on the host's own mounts.
pub fn new_manager_with(cfg: &Config, table: &MountTable) -> Result<Box<dyn Manager>, Error> {
    if cfg.systemd {
        return Err(systemd::unavailable(cfg));
    }
    Ok(Box::new(manager::FsManager::new(cfg, table)?))
}

/// Expands a systemd `slice:prefix:name` cgroups path into the cgroup path
/// systemd would create (`/system.slice/docker-abc.scope`), as runc does.
/// Exposed so that callers can show where a systemd-managed container lives.
pub fn systemd_cgroup_path(cgroups_path: &str, id: &str) -> Result<String, Error> {
    systemd::expand(cgroups_path, id)
}

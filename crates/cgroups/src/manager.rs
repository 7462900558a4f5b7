//! The cgroupfs manager: one implementation of [`Manager`] for v1, v2 and
//! hybrid hosts. Each controller is routed once, at construction, to the
//! hierarchy that carries it (a v1 mount first, else the cgroup2 hierarchy
//! when the controller is available there); every operation then writes the
//! v1 (`v1.rs`) or v2 (`v2.rs`) files of that hierarchy.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::fsutil::{self, exists, keyed, Num};
use crate::mounts::CgroupMount;
use crate::{stats, Config, Error, Hierarchy, Layout, Manager, MountTable, Stats};

mod apply;
mod preflight;

use apply::{blkio_set, cpu_set, memory_set};

/// Controllers the manager routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum C {
    Cpu,
    Cpuacct,
    Cpuset,
    Memory,
    Devices,
    Freezer,
    Blkio,
    Pids,
    Hugetlb,
    NetCls,
    NetPrio,
    Rdma,
}

const ALL: [C; 12] = [
    C::Cpu,
    C::Cpuacct,
    C::Cpuset,
    C::Memory,
    C::Devices,
    C::Freezer,
    C::Blkio,
    C::Pids,
    C::Hugetlb,
    C::NetCls,
    C::NetPrio,
    C::Rdma,
];

impl C {
    fn v1_name(self) -> &'static str {
        match self {
            C::Cpu => "cpu",
            C::Cpuacct => "cpuacct",
            C::Cpuset => "cpuset",
            C::Memory => "memory",
            C::Devices => "devices",
            C::Freezer => "freezer",
            C::Blkio => "blkio",
            C::Pids => "pids",
            C::Hugetlb => "hugetlb",
            C::NetCls => "net_cls",
            C::NetPrio => "net_prio",
            C::Rdma => "rdma",
        }
    }
    /// The cgroup2 controller serving this one; `Some("")` when cgroup2 has
    /// it built in (freezer, device filter, cpu.stat); `None` when cgroup2
    /// has no equivalent.
    fn v2_name(self) -> Option<&'static str> {
        match self {
            C::Cpu => Some("cpu"),
            C::Cpuacct | C::Devices | C::Freezer => Some(""),
            C::Cpuset => Some("cpuset"),
            C::Memory => Some("memory"),
            C::Blkio => Some("io"),
            C::Pids => Some("pids"),
            C::Hugetlb => Some("hugetlb"),
            C::Rdma => Some("rdma"),
            C::NetCls | C::NetPrio => None,
        }
    }
}

/// The manager for cgroupfs (v1, v2, hybrid).
#[derive(Debug)]
pub(crate) struct FsManager {
    layout: Layout,
    hs: Vec<Hierarchy>,
    /// Index into `hs` per controller of [`ALL`].
    route: [Option<u8>; 12],
    v2: Option<usize>,
    v2_controllers: String,
    rootless: bool,
}

const PATH_FIELD: &str = "linux.cgroupsPath";

/// Normalises a cgroups path: drops `.` and empty components, rejects `..`.
fn clean(p: &str) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(Error::invalid(
                    PATH_FIELD,
                    format!("{p:?} must not contain \"..\""),
                ))
            }
            Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

impl FsManager {
    pub(crate) fn new(cfg: &Config, table: &MountTable) -> Result<Self, Error> {
        let id = cfg.id;
        if id.is_empty() || id.contains('/') || id == "." || id == ".." || id.contains('\0') {
            return Err(Error::invalid(
                "id",
                format!("{id:?} is not a valid container id"),
            ));
        }
        let layout = table.layout()?;
        let (inner, relative) = match cfg.cgroups_path.filter(|p| !p.is_empty()) {
            None => (Path::new("skiff").join(id), false),
            Some(p) => {
                let c = clean(p)?;
                if c.as_os_str().is_empty() {
                    return Err(Error::invalid(
                        PATH_FIELD,
                        format!("{p:?} names the root cgroup"),
                    ));
                }
                (c, !p.starts_with('/'))
            }
        };
        let own = if relative {
            Some(
                std::fs::read_to_string("/proc/self/cgroup")
                    .map_err(|e| Error::io("read", "/proc/self/cgroup", e))?,
            )
        } else {
            None
        };
        let path_in = |m: &CgroupMount, v1: bool| -> Result<PathBuf, Error> {
            let mut p = m.mount_point.clone();
            if let Some(text) = &own {
                let mine = own_cgroup(text, m, v1)?;
                if layout == Layout::V2 {
                    // runc (fs2): the parent of our own cgroup, which most
                    // probably has processes and so cannot enable controllers
                    p.push(mine.parent().unwrap_or(Path::new("")));
                } else {
                    p.push(mine);
                }
            }
            p.push(&inner);
            Ok(p)
        };
        let mut hs = Vec::with_capacity(table.v1.len() + 1);
        for m in &table.v1 {
            hs.push(Hierarchy {
                version: 1,
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                path: path_in(m, true)?,
            });
        }
        let mut v2 = None;
        let mut v2_controllers = String::new();
        if let Some(m) = &table.v2 {
            v2 = Some(hs.len());
            v2_controllers = m.controllers.clone();
            hs.push(Hierarchy {
                version: 2,
                controllers: String::new(),
                mount_point: m.mount_point.clone(),
                path: path_in(m, false)?,
            });
        }
        let mut route = [None; 12];
        for (i, c) in ALL.iter().enumerate() {
            route[i] = table
                .v1
                .iter()
                .position(|m| m.has(c.v1_name()))
                .or_else(|| match (c.v2_name(), v2) {
                    (Some(""), Some(ix)) => Some(ix),
                    (Some(n), Some(ix)) if v2_controllers.split(',').any(|x| x == n) => Some(ix),
                    _ => None,
                })
                .map(|ix| ix as u8);
        }
        Ok(FsManager {
            layout,
            hs,
            route,
            v2,
            v2_controllers,
            rootless: cfg.rootless,
        })
    }

    /// The directory and version serving `c`, if any.
    fn dir(&self, c: C) -> Option<(&Path, bool)> {
        let ix = self.route[c as usize]? as usize;
        let h = &self.hs[ix];
        Some((h.path.as_path(), h.version == 2))
    }

    /// Like [`FsManager::dir`] but a clear error naming `field` when absent.
    fn need(&self, c: C, field: &str) -> Result<(&Path, bool), Error> {
        self.dir(c).ok_or_else(|| {
            Error::unsupported(
                format!("linux.resources.{field}"),
                format!(
                    "the {} controller is not mounted on this host{}",
                    c.v1_name(),
                    match (self.v2, c.v2_name()) {
                        (Some(_), Some(n)) => format!(
                            " and {n:?} is not available on the cgroup2 hierarchy (available: {:?})",
                            self.v2_controllers
                        ),
                        (Some(_), None) => " and cgroup v2 has no equivalent".to_owned(),
                        _ => String::new(),
                    }
                ),
            )
        })
    }

    fn is_perm(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
        )
    }

    fn create_one(&self, h: &Hierarchy) -> Result<(), Error> {
        let rel = h.path.strip_prefix(&h.mount_point).unwrap_or(Path::new(""));
        let cpuset = h.version == 1 && h.controllers.split(',').any(|c| c == "cpuset");
        let mut cur = h.mount_point.clone();
        let mut enable = String::new();
        for comp in rel.components() {
            if h.version == 2 {
                self.enable_controllers(&cur, &mut enable);
            }
            cur.push(comp);
            match std::fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("mkdir", cur, e)),
            }
            if cpuset {
                inherit_cpuset(&cur)?;
            }
        }
        Ok(())
    }

    /// Enables every controller available in `dir` in its
    /// `cgroup.subtree_control` (one write per missing controller; failures
    /// are left for `apply` to report against the field that needs it).
    fn enable_controllers(&self, dir: &Path, buf: &mut String) {
        let Ok(Some(avail)) = fsutil::read_opt(dir, "cgroup.controllers") else {
            return;
        };
        let on = fsutil::read_opt(dir, "cgroup.subtree_control")
            .ok()
            .flatten()
            .unwrap_or_default();
        for c in avail.split_whitespace() {
            if on.split_whitespace().any(|x| x == c) {
                continue;
            }
            buf.clear();
            buf.push('+');
            buf.push_str(c);
            let _ = fsutil::write(dir, "cgroup.subtree_control", buf.as_bytes(), "create");
        }
    }

    fn freezer(&self) -> Result<(&Path, bool), Error> {
        self.dir(C::Freezer).ok_or_else(|| {
            Error::unsupported(
                "freeze",
                "no freezer: neither the v1 freezer nor cgroup2 is mounted",
            )
        })
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        let (d, v2) = self.freezer()?;
        let field = if frozen { "freeze" } else { "thaw" };
        let (file, value): (&str, &[u8]) = match (v2, frozen) {
            (true, true) => ("cgroup.freeze", b"1"),
            (true, false) => ("cgroup.freeze", b"0"),
            (false, true) => ("freezer.state", b"FROZEN"),
            (false, false) => ("freezer.state", b"THAWED"),
        };
        fsutil::write(d, file, value, field)?;
        let start = Instant::now();
        let mut nap = Duration::from_micros(100);
        let mut polls = 0u32;
        loop {
            if self.is_frozen()? == frozen {
                return Ok(());
            }
            polls += 1;
            if !v2 && polls & 31 == 0 {
                // v1 can stay in FREEZING when a task forks concurrently:
                // asking again, as runc does, lets it finish
                fsutil::write(d, file, value, field)?;
            }
            if start.elapsed() > Duration::from_secs(10) {
                if frozen {
                    let _ = self.set_frozen(false);
                }
                return Err(Error::io(
                    "waiting for the freezer",
                    d,
                    io::Error::new(io::ErrorKind::TimedOut, "state did not settle within 10s"),
                ));
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    /// The directory used to list processes: the unified one when joined
    /// (it holds every process), else a v1 one.
    fn procs_dir(&self) -> Option<&Path> {
        if let Some(ix) = self.v2 {
            return Some(&self.hs[ix].path);
        }
        [C::Freezer, C::Pids, C::Devices, C::Memory]
            .into_iter()
            .find_map(|c| self.dir(c).map(|(d, _)| d))
            .or_else(|| self.hs.first().map(|h| h.path.as_path()))
    }
}

/// Copies `cpuset.cpus`/`cpuset.mems` from the parent when empty (a new v1
/// cpuset cgroup starts empty and cannot take tasks).
fn inherit_cpuset(dir: &Path) -> Result<(), Error> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let cur = fsutil::read(dir, f)?;
        if cur.trim().is_empty() {
            let p = fsutil::read(parent, f)?;
            fsutil::write(dir, f, p.trim().as_bytes(), "create")?;
        }
    }
    Ok(())
}

/// The process's own cgroup in `m`, relative to the mount's root.
fn own_cgroup(text: &str, m: &CgroupMount, v1: bool) -> Result<PathBuf, Error> {
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let hit = if v1 {
            ctrls == m.controllers
        } else {
            id == "0" && ctrls.is_empty()
        };
        if hit {
            let p = Path::new(path);
            let rel = p.strip_prefix(&m.root).unwrap_or(p);
            return Ok(rel.strip_prefix("/").unwrap_or(rel).to_path_buf());
        }
    }
    Err(Error::Mounts(format!(
        "/proc/self/cgroup has no entry for the hierarchy at {}",
        m.mount_point.display()
    )))
}

impl Manager for FsManager {
    fn create(&self) -> Result<(), Error> {
        for h in &self.hs {
            if let Err(e) = self.create_one(h) {
                if self.rootless && matches!(&e, Error::Io { source, .. } if Self::is_perm(source))
                {
                    continue;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        self.apply_resources(r)
    }

    fn add_task(&self, pid: i32) -> Result<(), Error> {
        let n = Num::i(pid as i64);
        for h in &self.hs {
            if let Err(e) = fsutil::write(&h.path, "cgroup.procs", n.as_bytes(), "add task") {
                if self.rootless
                    && matches!(&e, Error::Write { source, .. } if Self::is_perm(source))
                {
                    continue;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, Error> {
        let Some(d) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let text = fsutil::read(&dir, "cgroup.procs")?;
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("readdir", &dir, e))?;
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        Ok(out)
    }

    fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool, Error> {
        let (d, v2) = self.freezer()?;
        if v2 {
            let ev = fsutil::read(d, "cgroup.events")?;
            Ok(keyed(&ev, "frozen") == Some(1))
        } else {
            Ok(fsutil::read(d, "freezer.state")?.trim() == "FROZEN")
        }
    }

    fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        if let Some((d, v2)) = self.dir(C::Cpuacct) {
            if v2 {
                stats::throttling(d, &mut s, true)?;
            } else {
                stats::cpuacct_v1(d, &mut s)?;
            }
        }
        if let Some((d, v2)) = self.dir(C::Cpu) {
            if !v2 {
                stats::throttling(d, &mut s, false)?;
            } else {
                stats::throttling(d, &mut s, true)?;
            }
        }
        if let Some((d, v2)) = self.dir(C::Memory) {
            if v2 {
                stats::memory_v2(d, &mut s)?;
            } else {
                stats::memory_v1(d, &mut s)?;
            }
        }
        if let Some((d, v2)) = self.dir(C::Cpuset) {
            stats::cpuset(d, &mut s, v2)?;
        }
        if let Some((d, _)) = self.dir(C::Pids) {
            stats::pids(d, &mut s)?;
        }
        if let Some((d, v2)) = self.dir(C::Blkio) {
            if v2 {
                stats::io_v2(d, &mut s)?;
            } else {
                stats::blkio_v1(d, &mut s)?;
            }
        }
        if let Some((d, v2)) = self.dir(C::Hugetlb) {
            stats::hugetlb(d, &mut s, v2)?;
        }
        if let Some(ix) = self.v2 {
            // pressure files are per cgroup2 cgroup, also on hybrid hosts
            let d = &self.hs[ix].path;
            s.cpu.psi = stats::psi(d, "cpu.pressure")?;
            s.memory.psi = stats::psi(d, "memory.pressure")?;
            s.blkio.psi = stats::psi(d, "io.pressure")?;
        }
        Ok(s)
    }

    fn oom_kill_count(&self) -> Result<u64, Error> {
        let (d, v2) = self.need(C::Memory, "memory")?;
        let (file, text) = if v2 {
            ("memory.events", fsutil::read(d, "memory.events")?)
        } else {
            ("memory.oom_control", fsutil::read(d, "memory.oom_control")?)
        };
        keyed(&text, "oom_kill").ok_or_else(|| Error::Parse {
            path: d.join(file),
            msg: "no oom_kill counter (kernel older than 4.13?)".into(),
        })
    }

    fn oom_notifier(&self) -> Result<OwnedFd, Error> {
        let (d, v2) = self.need(C::Memory, "memory")?;
        if v2 {
            // SAFETY: inotify_init1 takes no pointers.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
            if fd < 0 {
                return Err(Error::io("inotify_init1", d, io::Error::last_os_error()));
            }
            // SAFETY: fd is a new descriptor we own from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let path = d.join("memory.events");
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| Error::invalid("cgroup path", "contains a NUL byte"))?;
            // SAFETY: valid fd and NUL-terminated path.
            if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) } < 0 {
                return Err(Error::io(
                    "inotify_add_watch",
                    path,
                    io::Error::last_os_error(),
                ));
            }
            return Ok(fd);
        }
        // SAFETY: eventfd takes no pointers.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(Error::io("eventfd", d, io::Error::last_os_error()));
        }
        // SAFETY: efd is a new descriptor we own from here on.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ctl_path = d.join("memory.oom_control");
        let ctl = std::fs::File::open(&ctl_path).map_err(|e| Error::io("open", ctl_path, e))?;
        let line = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
        fsutil::write(d, "cgroup.event_control", line.as_bytes(), "events")?;
        Ok(efd)
    }

    fn kill_all(&self, signal: i32) -> Result<(), Error> {
        if signal == libc::SIGKILL {
            if let Some(ix) = self.v2 {
                let d = &self.hs[ix].path;
                if exists(d, "cgroup.kill") {
                    return match fsutil::write(d, "cgroup.kill", b"1", "kill") {
                        Err(e) if e.is_not_found() => Ok(()),
                        r => r,
                    };
                }
            }
        }
        // Freeze so no process forks past the signal; a container that was
        // paused stays paused unless the signal is SIGKILL (frozen tasks
        // cannot die until thawed).
        let has_freezer = self.dir(C::Freezer).is_some();
        let was_frozen = has_freezer && self.is_frozen().unwrap_or(false);
        let froze = has_freezer && !was_frozen && self.freeze().is_ok();
        let thaw_after = froze || (was_frozen && signal == libc::SIGKILL);
        let pids = match self.pids() {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                if froze {
                    let _ = self.thaw();
                }
                return Err(e);
            }
        };
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, signal) };
        }
        if thaw_after {
            self.thaw()?;
        }
        Ok(())
    }

    fn destroy(&self) -> Result<(), Error> {
        // one EBUSY budget for all hierarchies
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut first_err = None;
        for h in &self.hs {
            if let Err(e) = remove_tree(&h.path, deadline) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn hierarchies(&self) -> Vec<Hierarchy> {
        self.hs.clone()
    }

    fn layout(&self) -> Layout {
        self.layout
    }
}

/// Removes a cgroup directory and its sub-cgroups, deepest first; retries
/// EBUSY until `deadline` (processes that are exiting); ENOENT is success.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), Error> {
    // Usually the cgroup is empty and has no children: one rmdir.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path(), deadline)?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("readdir", dir, e)),
    }
    let mut nap = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = fsutil::read_opt(dir, "cgroup.procs")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let procs: Vec<&str> = procs.split_whitespace().collect();
                let msg = format!("{e}; processes still inside: [{}]", procs.join(" "));
                return Err(Error::io("rmdir", dir, io::Error::new(e.kind(), msg)));
            }
            Err(e) => return Err(Error::io("rmdir", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::{blkio_weight_to_io, shares_to_weight, swap_v2};

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
        assert_eq!(swap_v2(0, -1), Ok(-1));
        assert_eq!(swap_v2(-1, 100), Ok(-1));
        assert_eq!(swap_v2(300, 100), Ok(200));
        assert!(swap_v2(50, 100).is_err());
        assert!(swap_v2(50, 0).is_err());
    }

    #[test]
    fn paths() {
        let t = MountTable::parse(
            "1 0 0:1 / /cg/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /cg/unified rw - cgroup2 cgroup2 rw\n",
        );
        let cfg = Config {
            cgroups_path: None,
            id: "c1",
            systemd: false,
            rootless: false,
        };
        let m = FsManager::new(&cfg, &t).unwrap();
        assert_eq!(m.hs[0].path, PathBuf::from("/cg/memory/skiff/c1"));
        assert_eq!(m.hs[1].path, PathBuf::from("/cg/unified/skiff/c1"));
        assert_eq!(m.layout, Layout::Hybrid);
        let cfg = Config {
            cgroups_path: Some("/a/./b/"),
            ..cfg
        };
        let m = FsManager::new(&cfg, &t).unwrap();
        assert_eq!(m.hs[0].path, PathBuf::from("/cg/memory/a/b"));
        let cfg = Config {
            cgroups_path: Some("/a/../b"),
            ..cfg
        };
        assert!(FsManager::new(&cfg, &t)
            .unwrap_err()
            .to_string()
            .contains("linux.cgroupsPath"));
        let cfg = Config {
            cgroups_path: None,
            id: "../x",
            ..cfg
        };
        assert!(FsManager::new(&cfg, &t).is_err());
    }
}

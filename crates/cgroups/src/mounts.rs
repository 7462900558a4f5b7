//! The cgroup mount table: which hierarchies are mounted where, parsed from
//! `/proc/self/mountinfo` once per process.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{Error, Layout};

/// Controllers (and named hierarchies) a v1 mount can carry.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// v1: the bound controllers, comma separated (`cpu,cpuacct`,
    /// `name=systemd`); v2: the controllers listed in the root's
    /// `cgroup.controllers`, comma separated.
    pub controllers: String,
    /// Mount point.
    pub mount_point: PathBuf,
    /// The cgroup of the hierarchy shown at the mount point (`/` unless the
    /// mount was made inside a cgroup namespace or is a bind mount).
    pub root: String,
}

impl CgroupMount {
    /// True if `ctrl` is one of this mount's controllers.
    pub fn has(&self, ctrl: &str) -> bool {
        self.controllers.split(',').any(|c| c == ctrl)
    }
}

/// The cgroup hierarchies of a mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    /// cgroup v1 hierarchies, in mountinfo order, the first mount of each.
    pub v1: Vec<CgroupMount>,
    /// The cgroup2 hierarchy, if mounted.
    pub v2: Option<CgroupMount>,
}

static HOST: OnceLock<MountTable> = OnceLock::new();

impl MountTable {
    /// The table of this process's mount namespace, read from
    /// `/proc/self/mountinfo` on first use and cached for the process.
    pub fn host() -> Result<&'static MountTable, Error> {
        if let Some(t) = HOST.get() {
            return Ok(t);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
        let mut t = MountTable::parse(&text);
        t.load_v2_controllers();
        if t.v1.is_empty() && t.v2.is_none() {
            return Err(Error::Mounts(
                "no cgroup or cgroup2 filesystem in /proc/self/mountinfo".into(),
            ));
        }
        Ok(HOST.get_or_init(|| t))
    }

    /// A table with only a cgroup2 hierarchy mounted at `mount_point` (its
    /// root), e.g. a private mount made by a test. Reads the available
    /// controllers from `<mount_point>/cgroup.controllers`.
    pub fn unified(mount_point: impl Into<PathBuf>) -> Result<MountTable, Error> {
        let mut t = MountTable {
            v1: Vec::new(),
            v2: Some(CgroupMount {
                controllers: String::new(),
                mount_point: mount_point.into(),
                root: "/".into(),
            }),
        };
        let p =
            t.v2.as_ref()
                .map(|m| m.mount_point.join("cgroup.controllers"));
        if let Some(p) = p {
            std::fs::metadata(&p).map_err(|e| Error::io("stat", p, e))?;
        }
        t.load_v2_controllers();
        Ok(t)
    }

    /// Parses the text of a mountinfo file. Controllers of the cgroup2 mount
    /// are left empty (see [`MountTable::host`], which reads them).
    pub fn parse(mountinfo: &str) -> MountTable {
        let mut t = MountTable::default();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post_it = post.split(' ');
            let fstype = post_it.next().unwrap_or("");
            if fstype != "cgroup" && fstype != "cgroup2" {
                continue;
            }
            let _source = post_it.next();
            let superopts = post_it.next().unwrap_or("");
            let mut pre_it = pre.split(' ');
            let (Some(_id), Some(_parent), Some(_dev), Some(root), Some(mp)) = (
                pre_it.next(),
                pre_it.next(),
                pre_it.next(),
                pre_it.next(),
                pre_it.next(),
            ) else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mp));
            let root = unescape(root);
            if fstype == "cgroup2" {
                if t.v2.is_none() {
                    t.v2 = Some(CgroupMount {
                        controllers: String::new(),
                        mount_point,
                        root,
                    });
                }
                continue;
            }
            let mut controllers = String::new();
            for opt in superopts.split(',') {
                if V1_CONTROLLERS.contains(&opt) || opt.starts_with("name=") {
                    if !controllers.is_empty() {
                        controllers.push(',');
                    }
                    controllers.push_str(opt);
                }
            }
            if controllers.is_empty() || t.v1.iter().any(|m| m.controllers == controllers) {
                continue;
            }
            t.v1.push(CgroupMount {
                controllers,
                mount_point,
                root,
            });
        }
        t
    }

    fn load_v2_controllers(&mut self) {
        if let Some(m) = self.v2.as_mut() {
            if let Ok(s) = std::fs::read_to_string(m.mount_point.join("cgroup.controllers")) {
                m.controllers = s.split_whitespace().collect::<Vec<_>>().join(",");
            }
        }
    }

    /// The layout of this table.
    pub fn layout(&self) -> Result<Layout, Error> {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (true, true) => Ok(Layout::V2),
            (false, true) => Ok(Layout::Hybrid),
            (false, false) => Ok(Layout::V1),
            (true, false) => Err(Error::Mounts("no cgroup hierarchy is mounted".into())),
        }
    }

    /// The v1 mount carrying controller `ctrl`.
    pub fn v1_with(&self, ctrl: &str) -> Option<&CgroupMount> {
        self.v1.iter().find(|m| m.has(ctrl))
    }
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(s: &str) -> String {
    skiff_sys::mountinfo::unescape_lossy(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid() {
        let t = MountTable::parse(
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(t.layout().unwrap(), Layout::Hybrid);
        assert_eq!(t.v1[0].controllers, "cpu,cpuacct");
        assert!(t.v1[0].has("cpuacct"));
        assert_eq!(t.v1[1].controllers, "name=systemd");
        assert_eq!(
            t.v2.unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}

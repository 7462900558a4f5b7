//! Namespaces for `create` and `exec`: which to create and which to join
//! (by path), the parent-side pid/time namespace switch around the clone,
//! and the id maps of a new user namespace.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config;
use crate::error::Context;
use crate::linux::{self, Join};
use crate::{Error, Result};

pub(super) fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

pub(super) fn proc_ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Parent-side namespace setup: what to create, what to join (child side),
/// and what the runtime itself must enter before cloning (pid, time).
pub(super) struct NsSetup {
    pub(super) new_ns: libc::c_int,
    pub(super) join: Vec<Join>,
    pub(super) parent_join: Vec<Join>,
}

pub(super) fn open_ns(path: &Path, t: LinuxNamespaceType) -> Result<OwnedFd> {
    let fd =
        nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
            Error::Config(format!(
                "config.json: linux.namespaces: {} namespace path {}: {e}",
                config::ns_name(t),
                path.display()
            ))
        })?;
    // NS_GET_NSTYPE checks that the file really is a namespace of this type.
    // SAFETY: ioctl without arguments on a valid fd.
    let got = unsafe { libc::ioctl(fd.as_raw_fd(), 0xb703) };
    if got >= 0 && got != ns_flag(t) {
        return Err(Error::Config(format!(
            "config.json: linux.namespaces: {} is not a {} namespace",
            path.display(),
            config::ns_name(t)
        )));
    }
    if got < 0 {
        return Err(Error::Config(format!(
            "config.json: linux.namespaces: {} is not a namespace file",
            path.display()
        )));
    }
    Ok(fd)
}

pub(super) fn ns_setup(spec: &Spec) -> Result<NsSetup> {
    let mut s = NsSetup {
        new_ns: 0,
        join: Vec::new(),
        parent_join: Vec::new(),
    };
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in &nss {
        let flag = ns_flag(ns.typ());
        match ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
            None => s.new_ns |= flag,
            Some(p) => {
                let j = Join {
                    flag,
                    name: config::ns_name(ns.typ()),
                    fd: open_ns(p, ns.typ())?,
                };
                if flag == libc::CLONE_NEWPID || flag == libc::CLONE_NEWTIME {
                    s.parent_join.push(j);
                } else if flag == libc::CLONE_NEWUSER {
                    s.join.insert(0, j);
                } else {
                    s.join.push(j);
                }
            }
        }
    }
    Ok(s)
}

/// Runs `f` (the clone) with the runtime's pid/time namespace for children
/// switched as the config asks, and restores them afterwards.
pub(super) fn with_parent_ns<T>(
    joins: &[Join],
    new_time: bool,
    spec: &Spec,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if joins.is_empty() && !new_time {
        return f();
    }
    let mut restore = Vec::new();
    for j in joins {
        let own = if j.flag == libc::CLONE_NEWPID {
            "/proc/self/ns/pid"
        } else {
            "/proc/self/ns/time"
        };
        restore.push((
            j.flag,
            std::fs::File::open(own).ctx(|| format!("opening {own}"))?,
        ));
        nix::sched::setns(
            j.fd.as_fd(),
            nix::sched::CloneFlags::from_bits_retain(j.flag),
        )
        .ctx(|| format!("joining {} namespace", j.name))?;
    }
    if new_time {
        restore.push((
            libc::CLONE_NEWTIME,
            std::fs::File::open("/proc/self/ns/time").ctx(|| "opening time ns")?,
        ));
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
            libc::CLONE_NEWTIME,
        ))
        .ctx(|| "creating time namespace")?;
        write_time_offsets(spec)?;
    }
    let r = f();
    for (flag, file) in restore {
        let _ = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::from_bits_retain(flag));
    }
    r
}

pub(super) fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offs) = spec.linux().as_ref().and_then(|l| l.time_offsets().clone()) else {
        return Ok(());
    };
    let mut s = String::new();
    for (clock, o) in offs {
        s.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", s)
        .ctx(|| "config.json: linux.timeOffsets: writing timens_offsets")
}

pub(super) fn write_id_maps(pid: i32, spec: &Spec, rootless: bool) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid = fmt(&linux.and_then(|l| l.uid_mappings().clone()));
    let gid = fmt(&linux.and_then(|l| l.gid_mappings().clone()));
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 || rootless {
        // Unprivileged: a map of just our own uid/gid is written directly
        // (after denying setgroups, needed to write gid_map); anything else
        // needs the setuid helpers and /etc/subuid, /etc/subgid entries.
        // SAFETY: getegid cannot fail.
        let egid = unsafe { libc::getegid() };
        let own = |maps: &str, id: u32| {
            maps.lines().count() <= 1
                && maps.lines().all(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(1) == Some(&id.to_string().as_str()) && f.get(2) == Some(&"1")
                })
        };
        if euid != 0 && !(own(&uid, euid) && own(&gid, egid)) {
            for (tool, maps, field, file) in [
                ("newuidmap", &uid, "uidMappings", "/etc/subuid"),
                ("newgidmap", &gid, "gidMappings", "/etc/subgid"),
            ] {
                let mut cmd = std::process::Command::new(tool);
                cmd.arg(pid.to_string());
                for l in maps.lines() {
                    cmd.args(l.split_whitespace());
                }
                let out = cmd.output().ctx(|| {
                    format!(
                        "config.json: linux.{field}: running {tool} (install the uidmap package)"
                    )
                })?;
                if !out.status.success() {
                    return Err(Error::Other(format!(
                        "config.json: linux.{field}: {tool} failed ({}): {}; as uid {euid}, \
                         ids other than your own must be delegated to your user in {file}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
            }
            return Ok(());
        }
        let _ = std::fs::write(format!("/proc/{pid}/setgroups"), "deny");
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .ctx(|| "config.json: linux.uidMappings: writing uid_map")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .ctx(|| "config.json: linux.gidMappings: writing gid_map")?;
    Ok(())
}

/// Builds the detached idmapped trees for mounts with `idmap`/`ridmap`,
/// with the mount's own uidMappings/gidMappings (read from the raw
/// config.json: oci-spec does not model them) or else the container's.
pub(super) fn idmap_trees(spec: &Spec, bundle: &Path) -> Result<Vec<(usize, OwnedFd)>> {
    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let wanted: Vec<(usize, bool)> = mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let opts = m.options().as_deref().unwrap_or(&[]);
            if opts.iter().any(|o| o == "ridmap") {
                Some((i, true))
            } else if opts.iter().any(|o| o == "idmap") {
                Some((i, false))
            } else {
                None
            }
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let raw: serde_json::Value = config::read_config(bundle)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let parse = |v: &serde_json::Value| -> Vec<linux::idmap::IdMap> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                Some((
                    m.get("containerID")?.as_u64()? as u32,
                    m.get("hostID")?.as_u64()? as u32,
                    m.get("size")?.as_u64()? as u32,
                ))
            })
            .collect()
    };
    let mut out = Vec::new();
    for (i, recursive) in wanted {
        let m = &mounts[i];
        let mut uid = parse(&raw["mounts"][i]["uidMappings"]);
        let mut gid = parse(&raw["mounts"][i]["gidMappings"]);
        if uid.is_empty() {
            uid = parse(&raw["linux"]["uidMappings"]);
        }
        if gid.is_empty() {
            gid = parse(&raw["linux"]["gidMappings"]);
        }
        if uid.is_empty() || gid.is_empty() {
            return Err(Error::Config(format!(
                "config.json: mounts[{i}]: idmap needs uidMappings and gidMappings (on the mount or in linux)"
            )));
        }
        let src = m.source().as_ref().ok_or_else(|| {
            Error::Config(format!(
                "config.json: mounts[{i}]: idmap mount without source"
            ))
        })?;
        let src = bundle.join(src);
        let tree = linux::idmap::idmapped_tree(&src, &uid, &gid, recursive).map_err(|e| {
            Error::Config(format!(
                "config.json: mounts[{i}]: idmapped mount of {}: {e} (the filesystem or kernel may not support idmapped mounts)",
                src.display()
            ))
        })?;
        out.push((i, tree));
    }
    Ok(out)
}

/// Host uid/gid that the container's root maps to (0/0 without a user namespace).
pub(super) fn host_root_ids(spec: &Spec) -> (u32, u32) {
    let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    let linux = spec.linux().as_ref();
    // SAFETY: geteuid/getegid cannot fail.
    let (eu, eg) = unsafe { (libc::geteuid(), libc::getegid()) };
    (
        find(linux.and_then(|l| l.uid_mappings().as_ref())).unwrap_or(eu),
        find(linux.and_then(|l| l.gid_mappings().as_ref())).unwrap_or(eg),
    )
}

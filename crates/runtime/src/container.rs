//! Container lifecycle on the runtime side: create, start, state, kill,
//! delete, exec, pause/resume, and waiting for a foreground container.
//!
//! `create` validates everything before touching the host, then builds the
//! state directory, cgroup and init process; any failure tears all of it
//! down again (see [`Guard`]), so a failed `create` leaves nothing behind.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxNamespaceType, LinuxResources, Process, Spec};

use crate::config;
use crate::error::Context;
use crate::linux::{self, caps::CapSets, sync, Join, Kind, Plan};
use crate::state::{self, Lock, Root, Saved, Status};
use crate::{hooks, Error, Result};

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

/// Sends `tag` to the container init. When the init is gone (it failed
/// and exited), returns the error it reported rather than the broken pipe.
fn tell_init(chan: &sync::Chan, tag: u8, payload: &[u8]) -> Result<()> {
    let Err(e) = chan.send(tag, payload) else {
        return Ok(());
    };
    for _ in 0..16 {
        match chan.recv() {
            Ok((sync::ERROR, msg, _)) => {
                return Err(Error::Init(String::from_utf8_lossy(&msg).into_owned()))
            }
            Ok((0, ..)) => break,
            Ok(_) => continue,
            Err(r) if r.raw_os_error() == Some(libc::ECONNRESET) => continue,
            Err(_) => break,
        }
    }
    Err(e).ctx(|| "setup channel")
}

/// Lets the init outlive this process (it drops its parent-death signal)
/// and waits until it has: exiting earlier would still kill it.
fn handover(chan: &sync::Chan) -> Result<()> {
    tell_init(chan, sync::HANDOVER, &[])?;
    match chan.recv().ctx(|| "reading from the container init")? {
        (sync::HANDED_OVER, ..) => Ok(()),
        (sync::ERROR, msg, _) => Err(Error::Init(String::from_utf8_lossy(&msg).into_owned())),
        (t, ..) => Err(Error::Init(format!(
            "unexpected message {t} from the container init"
        ))),
    }
}

/// Kills what is left in the container's cgroups and removes them. A
/// killed process stays in its cgroup until its exit is done, which can
/// take seconds under load (tearing down a mount namespace waits for an
/// RCU grace period): busy cgroups are retried for up to `limit`.
fn destroy_cgroup(cg: &dyn skiff_cgroups::Manager, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if cg.pids().is_ok_and(|p| !p.is_empty()) {
            let _ = cg.kill_all(libc::SIGKILL);
        }
        match cg.destroy() {
            Err(skiff_cgroups::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ResourceBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return Ok(r?),
        }
    }
}

/// Tears down a half-created container unless disarmed.
struct Guard {
    // Read only with feature `vm` (the guest agent builds without it).
    #[cfg_attr(not(feature = "vm"), allow(dead_code))]
    vm: bool,
    /// Rootfs whose mounts live in the runtime's namespace (no mount ns).
    host_mounts: Option<PathBuf>,
    dir: Option<PathBuf>,
    cgroup: Option<Box<dyn skiff_cgroups::Manager>>,
    pid: i32,
}

impl Guard {
    fn disarm(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.host_mounts = None;
        self.pid = 0;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill + waitpid on our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        if let Some(rootfs) = self.host_mounts.take() {
            unmount_under(&rootfs);
        }
        if let Some(dir) = self.dir.take() {
            #[cfg(feature = "vm")]
            if self.vm {
                let _ = skiff_vm::delete(&dir);
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// True when the config gives the container a mount namespace (new or
/// joined by path).
fn has_mount_ns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Mount))
}

/// Without a mount namespace the container shares the runtime's: its
/// mounts are made under the rootfs in the host's namespace (runc does the
/// same; skiff unmounts them again at `delete`) and it is entered with
/// chroot. What would change the host's own mounts is refused, as runc
/// refuses masked and read-only paths there.
fn check_host_mntns(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let refuse = |field: &str| {
        Err(Error::Config(format!(
            "config.json: {field} needs a mount namespace, but linux.namespaces has no \"mount\" \
             (the container would share the host's)"
        )))
    };
    if linux
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|v| !v.is_empty())
    {
        return refuse("linux.maskedPaths");
    }
    if linux
        .and_then(|l| l.readonly_paths().as_ref())
        .is_some_and(|v| !v.is_empty())
    {
        return refuse("linux.readonlyPaths");
    }
    if linux
        .and_then(|l| l.rootfs_propagation().as_ref())
        .is_some()
    {
        return refuse("linux.rootfsPropagation");
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        return refuse("root.readonly");
    }
    Ok(())
}

/// Unmounts what a container without a mount namespace mounted under its
/// rootfs in the runtime's namespace (deepest first). Only mount points
/// strictly below `rootfs` are touched.
pub(crate) fn unmount_under(rootfs: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(skiff_cgroups::unescape_mountinfo(p)))
        .filter(|p| p.starts_with(rootfs) && p != rootfs)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
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

fn proc_ns_name(t: LinuxNamespaceType) -> &'static str {
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
struct NsSetup {
    new_ns: libc::c_int,
    join: Vec<Join>,
    parent_join: Vec<Join>,
}

fn open_ns(path: &Path, t: LinuxNamespaceType) -> Result<OwnedFd> {
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

fn ns_setup(spec: &Spec) -> Result<NsSetup> {
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

/// `path` as a C string (cgroup paths handed to the init).
fn path_cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config(format!("{}: path contains a NUL byte", path.display())))
}

/// Builds argv/envp C strings for a process.
fn c_strings(process: &Process, extra_env: &[String]) -> Result<(Vec<CString>, Vec<CString>)> {
    let to_c = |s: &str, what: &str| {
        CString::new(s)
            .map_err(|_| Error::Config(format!("config.json: {what} contains a NUL byte")))
    };
    let argv = process
        .args()
        .iter()
        .flatten()
        .map(|a| to_c(a, "process.args"))
        .collect::<Result<Vec<_>>>()?;
    let mut envp = process
        .env()
        .iter()
        .flatten()
        .map(|a| to_c(a, "process.env"))
        .collect::<Result<Vec<_>>>()?;
    for e in extra_env {
        envp.push(to_c(e, "env")?);
    }
    if argv.is_empty() {
        return Err(Error::Config(
            "config.json: process.args must name a program (it is empty)".into(),
        ));
    }
    Ok((argv, envp))
}

/// Default device cgroup rules (runc's): the devices every container gets.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule =
        |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| -> LinuxDeviceCgroup {
            serde_json::from_value(serde_json::json!({
                "allow": true, "type": typ, "major": major, "minor": minor, "access": access
            }))
            .expect("static device rule")
        };
    vec![
        rule("c", None, None, "m"),
        rule("b", None, None, "m"),
        rule("c", Some(1), Some(3), "rwm"),
        rule("c", Some(1), Some(5), "rwm"),
        rule("c", Some(1), Some(7), "rwm"),
        rule("c", Some(1), Some(8), "rwm"),
        rule("c", Some(1), Some(9), "rwm"),
        rule("c", Some(5), Some(0), "rwm"),
        rule("c", Some(5), Some(1), "rwm"),
        rule("c", Some(5), Some(2), "rwm"),
        rule("c", Some(136), None, "rwm"),
        rule("c", Some(10), Some(200), "rwm"),
    ]
}

/// The resources to apply: the config's, with device rules completed as runc
/// does (config rules first, then the default devices and linux.devices).
/// A `linux.devices` entry that a config rule names explicitly (same type,
/// major and minor) keeps that rule's access: a deny rule wins.
fn effective_resources(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    if rules.is_empty() {
        rules.push(
            serde_json::from_value(serde_json::json!({"allow": false, "access": "rwm"}))
                .expect("static"),
        );
    }
    let named = |d: &oci_spec::runtime::LinuxDevice| {
        rules.iter().any(|r| {
            r.major() == Some(d.major())
                && r.minor() == Some(d.minor())
                && r.typ().is_some_and(|t| {
                    (t == oci_spec::runtime::LinuxDeviceType::B)
                        == (d.typ() == oci_spec::runtime::LinuxDeviceType::B)
                })
        })
    };
    let explicit: Vec<bool> = linux
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(named)
        .collect();
    rules.extend(default_device_rules());
    let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    for (d, _) in devs.iter().zip(explicit).filter(|(_, e)| !e) {
        let typ = serde_json::to_value(d.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or("c".into());
        if let Ok(r) = serde_json::from_value(serde_json::json!({
            "allow": true, "type": typ, "major": d.major(), "minor": d.minor(), "access": "rwm"
        })) {
            rules.push(r);
        }
    }
    res.set_devices(Some(rules));
    res
}

fn write_id_maps(pid: i32, spec: &Spec, rootless: bool) -> Result<()> {
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

/// Rootless without cgroup delegation: `create` skipped the cgroup
/// directories it was not allowed to make, so joining them fails with
/// ENOENT; the container then runs without a cgroup of its own (as runc).
fn rootless_join(rootless: bool, r: Result<(), skiff_cgroups::Error>) -> Result<()> {
    match r {
        Err(skiff_cgroups::Error::Write { source, .. })
            if rootless && source.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        r => Ok(r?),
    }
}

/// Rootless: a cgroup limit that cannot be written says what is missing.
fn rootless_cgroup_hint(rootless: bool, e: skiff_cgroups::Error) -> Error {
    if !rootless {
        return e.into();
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    Error::Other(format!(
        "cgroups: {e} (rootless: linux.resources limits need a cgroup delegated to uid {euid}; \
         none is, so remove linux.resources or run as root)"
    ))
}

/// Builds the detached idmapped trees for mounts with `idmap`/`ridmap`,
/// with the mount's own uidMappings/gidMappings (read from the raw
/// config.json: oci-spec does not model them) or else the container's.
fn idmap_trees(spec: &Spec, bundle: &Path) -> Result<Vec<(usize, OwnedFd)>> {
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
fn host_root_ids(spec: &Spec) -> (u32, u32) {
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

fn write_time_offsets(spec: &Spec) -> Result<()> {
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

fn connect_console(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .ctx(|| format!("connecting to console socket {}", path.display()))?;
    Ok(OwnedFd::from(s))
}

/// Extra fds from systemd socket activation (LISTEN_FDS), as runc passes them.
fn listen_fds() -> (u32, Vec<String>) {
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 => (n, vec![format!("LISTEN_FDS={n}"), "LISTEN_PID=1".into()]),
        _ => (0, Vec::new()),
    }
}

/// Drives the setup conversation with a spawned child until it is READY.
/// Returns the pid of the process that will exec (differs from the cloned
/// pid after an extra fork).
fn converse(
    chan: &sync::Chan,
    mut pid: i32,
    spec: &Spec,
    rootless: bool,
    mut on_hooks: impl FnMut(i32) -> Result<Vec<u8>>,
    seccomp_state: impl Fn(i32) -> serde_json::Value,
) -> Result<i32> {
    loop {
        // An init exiting with unread messages resets the socket; its ERROR
        // is still queued behind the reset.
        let (tag, payload, fd) = match chan.recv() {
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => chan.recv(),
            r => r,
        }
        .ctx(|| "reading from the container init")?;
        match tag {
            sync::READY => return Ok(pid),
            sync::ERROR => return Err(Error::Init(String::from_utf8_lossy(&payload).into_owned())),
            sync::MAPS => {
                write_id_maps(pid, spec, rootless)?;
                tell_init(chan, sync::MAPS_DONE, &[])?;
            }
            sync::PID => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&payload[..4]);
                let child = pid;
                pid = i32::from_ne_bytes(b);
                // Reap the intermediate process.
                // SAFETY: waitpid on our own child.
                unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            }
            sync::HOOKS => {
                let st = on_hooks(pid)?;
                tell_init(chan, sync::HOOKS_DONE, &st)?;
            }
            sync::SECCOMP_FD => {
                let fd = fd.ok_or_else(|| Error::Init("seccomp fd missing".into()))?;
                if let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
                    if let Some(path) = s.listener_path() {
                        skiff_seccomp::send_to_listener(
                            path,
                            fd.as_fd(),
                            pid,
                            s.listener_metadata().as_deref().unwrap_or(""),
                            &seccomp_state(pid),
                        )?;
                    }
                }
                tell_init(chan, sync::SECCOMP_DONE, &[])?;
            }
            0 => return Err(Error::Init("container init exited during setup".into())),
            t => {
                return Err(Error::Init(format!(
                    "unexpected message {t} from the container init"
                )))
            }
        }
    }
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

    /// `create` with an already loaded config.
    pub fn create_with(&self, o: &CreateOptions, bundle: PathBuf, spec: Spec) -> Result<Container> {
        config::validate_id(o.id)?;
        let rootfs = config::rootfs_path(&spec, &bundle)?;
        #[cfg(feature = "vm")]
        if skiff_vm::wants_vm(&spec, self.isolation.as_deref()) {
            return self.create_vm(o, bundle, spec, rootfs);
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Config("config.json: process is missing".into()))?;
        let linux = spec.linux().as_ref();
        let host_mntns = !has_mount_ns(&spec);
        if host_mntns {
            check_host_mntns(&spec)?;
        }
        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(skiff_seccomp::compile_cached(s, &self.seccomp_cache())?),
            None => None,
        };
        crate::linux::lsm::check(&spec).map_err(|e| Error::Config(e.to_string()))?;
        let caps = CapSets::from_spec(process.capabilities().as_ref())?;
        let (lfds, lenv) = listen_fds();
        linux::check_preserved_fds(o.preserve_fds + lfds)?;
        let (argv, envp) = c_strings(process, &lenv)?;
        let ns = ns_setup(&spec)?;
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if (self.rootless || euid != 0)
            && ns.new_ns & libc::CLONE_NEWUSER == 0
            && !ns.join.iter().any(|j| j.flag == libc::CLONE_NEWUSER)
        {
            return Err(Error::Config(format!(
                "config.json: linux.namespaces: a rootless container (uid {euid}) needs a user \
                 namespace: add {{\"type\": \"user\"}} with linux.uidMappings and \
                 linux.gidMappings (`skiff --rootless spec` writes such a config)"
            )));
        }
        if process.terminal().unwrap_or(false)
            && o.console_socket.is_none()
            && o.console_conn.is_none()
        {
            return Err(Error::Config(
                "config.json: process.terminal is true but no --console-socket was given".into(),
            ));
        }

        let (dir, lock) = self.root.create_dir(o.id)?;
        let mut guard = Guard {
            vm: false,
            host_mounts: host_mntns.then(|| rootfs.clone()),
            dir: Some(dir.clone()),
            cgroup: None,
            pid: 0,
        };
        let cgroups_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        let mut saved = Saved {
            id: o.id.to_string(),
            pid: 0,
            pid_start: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: state::now_rfc3339(),
            owner: state::owner_uid(),
            creating: true,
            cgroups_path: cgroups_path.clone(),
            systemd_cgroup: self.systemd_cgroup,
            rootless: self.rootless,
            isolation: "namespace".into(),
            no_new_keyring: o.no_new_keyring,
            spec: spec.clone(),
        };
        state::write_saved(&dir, &saved)?;
        let fifo_path = dir.join(state::EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
            .ctx(|| "creating exec fifo")?;
        // mkfifo honours the umask; the container's root (maybe an
        // unprivileged host uid in a user namespace) must be able to write.
        std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o622),
        )
        .ctx(|| "chmod exec fifo")?;
        let (ruid, rgid) = host_root_ids(&spec);
        if let Err(e) = std::os::unix::fs::chown(&fifo_path, Some(ruid), Some(rgid)) {
            // Unprivileged, the fifo stays ours; its 0622 mode lets the
            // container's root (another host id) open it for writing.
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                return Err(e).ctx(|| "chown exec fifo");
            }
        }
        let fifo = nix::fcntl::open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| "opening exec fifo")?;

        let new_user = ns.new_ns & libc::CLONE_NEWUSER != 0;
        let joins_user = ns.join.iter().any(|j| j.flag == libc::CLONE_NEWUSER);
        let fork_again = joins_user || (new_user && !ns.join.is_empty());
        let cg = self.cgroup(cgroups_path.as_deref(), o.id)?;
        let layout = cg.layout();
        // On cgroup v1 a privileged init outside a user namespace joins its
        // cgroups itself, writing 0 to each hierarchy's `tasks` file: moving
        // the calling thread needs no threadgroup lock, while writing a pid
        // to `cgroup.procs` takes it for writing and waits for an RCU grace
        // period (5-30 ms here, more than the rest of `run`). On a hybrid
        // host the init is cloned into its cgroup2 directory
        // (CLONE_INTO_CGROUP), as on a pure cgroup2 host.
        let self_join: Vec<CString> = if !fork_again
            && !self.rootless
            && euid == 0
            && !new_user
            && !joins_user
            && layout != skiff_cgroups::Layout::V2
        {
            cg.hierarchies()
                .iter()
                .filter(|h| h.version == 1)
                .map(|h| path_cstring(&h.path.join("tasks")))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let joins_itself = !self_join.is_empty();
        let clone_into_v2 = match layout {
            skiff_cgroups::Layout::V2 => !fork_again,
            skiff_cgroups::Layout::Hybrid => joins_itself,
            skiff_cgroups::Layout::V1 => false,
        };
        // On cgroup v1 the cgroups are created and configured after GO,
        // while the init sets up its namespaces and mounts, when the init
        // joins them itself (`self_join`) or has a cgroup namespace: the
        // init then waits for JOINED before its first cgroup mount (and
        // before joining). Otherwise the init may bind-mount the cgroup
        // directories before JOINED (init.rs, "early"), so they must exist
        // first. A cgroup2 init is cloned into its cgroup, an extra fork
        // happens inside it, and rootless filters the hierarchies by what
        // exists: those create first too.
        let late_cgroup = !fork_again
            && !self.rootless
            && (ns.new_ns & libc::CLONE_NEWCGROUP != 0 || joins_itself)
            && !clone_into_v2;
        guard.cgroup = Some(cg);
        let cg = guard.cgroup.as_ref().expect("set above");
        let resources = effective_resources(&spec);
        if !late_cgroup {
            cg.create()?;
            cg.apply(&resources)
                .map_err(|e| rootless_cgroup_hint(self.rootless, e))?;
        }

        let idmap_trees = idmap_trees(&spec, &bundle)?;
        let console_socket = match &o.console_conn {
            Some(fd) => Some(fd.try_clone().ctx(|| "console socket")?),
            None => o.console_socket.map(connect_console).transpose()?,
        };
        let plan = Plan {
            kind: Kind::Init,
            id: o.id,
            spec: &spec,
            process,
            rootfs: rootfs.clone(),
            new_ns: ns.new_ns,
            join: ns.join,
            console_socket,
            fifo: Some(fifo),
            no_pivot: o.no_pivot,
            host_mntns,
            no_new_keyring: o.no_new_keyring,
            extra_fds: o.preserve_fds + lfds,
            seccomp,
            caps,
            // Rootless without delegation: only the cgroups that exist.
            cgroups: cg
                .hierarchies()
                .into_iter()
                .filter(|h| !self.rootless || h.path.is_dir())
                .collect(),
            argv,
            envp,
            idmap_trees,
            close_fds: vec![lock.raw_fd()],
            fork_again,
            self_join,
            late_cgroup,
        };
        std::env::set_current_dir(&bundle)
            .ctx(|| format!("chdir to bundle {}", bundle.display()))?;
        // cgroup2 (pure or the unified part of a hybrid host): the init is
        // cloned straight into its cgroup.
        let into_cgroup = if clone_into_v2 {
            cg.hierarchies()
                .iter()
                .find(|h| h.version == 2)
                .and_then(|h| linux::fs::open_path(&h.path).ok())
        } else {
            None
        };
        let spawned = with_parent_ns(
            &ns.parent_join,
            ns.new_ns & libc::CLONE_NEWTIME != 0,
            &spec,
            || linux::spawn(plan, into_cgroup.as_ref().map(|f| f.as_fd())),
        )?;
        drop(into_cgroup);
        guard.pid = spawned.pid;
        // Moving a task between v1 cgroups costs a full RCU grace period
        // (~13 ms here) the first time. The init only needs to be in its
        // cgroup before it reports HOOKS (it waits for HOOKS_DONE, which this
        // process sends after joining), so let it set up its namespaces and
        // mounts meanwhile. After an extra fork the grandchild must be forked
        // inside the cgroup, so join first there.
        if fork_again {
            rootless_join(self.rootless, cg.add_task(spawned.pid))?;
        } else if new_user {
            write_id_maps(spawned.pid, &spec, self.rootless)?;
        }
        tell_init(&spawned.chan, sync::GO, &[])?;
        if late_cgroup {
            cg.create()?;
            cg.apply(&resources)
                .map_err(|e| rootless_cgroup_hint(self.rootless, e))?;
        }
        if !fork_again {
            // The v1 hierarchies are joined by the init itself; only a
            // missed CLONE_INTO_CGROUP (old kernel) needs a migration here.
            let migrate =
                !spawned.in_cgroup && (!joins_itself || layout == skiff_cgroups::Layout::Hybrid);
            if migrate {
                rootless_join(self.rootless, cg.add_task(spawned.pid))?;
            }
            tell_init(&spawned.chan, sync::JOINED, &[])?;
        }
        if let Some(adj) = process.oom_score_adj() {
            std::fs::write(
                format!("/proc/{}/oom_score_adj", spawned.pid),
                adj.to_string(),
            )
            .ctx(|| format!("config.json: process.oomScoreAdj {adj}"))?;
        }
        let hooks = spec.hooks().clone();
        let for_seccomp = saved.clone();
        let pid = converse(
            &spawned.chan,
            spawned.pid,
            &spec,
            self.rootless,
            |pid| {
                saved.pid = pid;
                saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
                state::write_saved(&dir, &saved)?;
                let st =
                    serde_json::to_vec(&state_json(&saved, Status::Creating)).unwrap_or_default();
                if let Some(h) = &hooks {
                    hooks::run_all("prestart", h.prestart().as_ref(), &st)?;
                    hooks::run_all("createRuntime", h.create_runtime().as_ref(), &st)?;
                }
                Ok(serde_json::to_vec(&state_json(&saved, Status::Created)).unwrap_or_default())
            },
            |pid| {
                let mut s = for_seccomp.clone();
                s.pid = pid;
                state_json(&s, Status::Creating)
            },
        )?;
        if pid != guard.pid {
            guard.pid = pid;
        }
        saved.pid = pid;
        saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
        saved.creating = false;
        state::write_saved(&dir, &saved)?;
        if let Some(p) = o.pid_file {
            write_pid_file(p, pid)?;
        }
        // The init keeps its parent-death signal until now: a `create`
        // killed earlier takes its init with it.
        handover(&spawned.chan)?;
        guard.disarm();
        Ok(Container {
            saved,
            dir,
            lock: Some(lock),
        })
    }

    /// `create` for VM isolation: the VM boots and the container is created
    /// inside it by the guest agent; the recorded pid is the host-side shim
    /// that lives exactly as long as the container.
    #[cfg(feature = "vm")]
    fn create_vm(
        &self,
        o: &CreateOptions,
        bundle: PathBuf,
        spec: Spec,
        rootfs: PathBuf,
    ) -> Result<Container> {
        let (dir, lock) = self.root.create_dir(o.id)?;
        let mut guard = Guard {
            vm: true,
            host_mounts: None,
            dir: Some(dir.clone()),
            cgroup: None,
            pid: 0,
        };
        let mut saved = Saved {
            id: o.id.to_string(),
            pid: 0,
            pid_start: 0,
            bundle: bundle.clone(),
            rootfs,
            created: state::now_rfc3339(),
            owner: state::owner_uid(),
            creating: true,
            cgroups_path: None,
            systemd_cgroup: false,
            rootless: self.rootless,
            isolation: "vm".into(),
            no_new_keyring: o.no_new_keyring,
            spec: spec.clone(),
        };
        state::write_saved(&dir, &saved)?;
        let pid = skiff_vm::create(&skiff_vm::CreateOptions {
            id: o.id,
            bundle: &bundle,
            spec: &spec,
            state_dir: &dir,
            console_socket: o.console_socket,
            debug: self.debug,
        })?;
        guard.pid = pid;
        // The exec fifo's presence marks `created` for VM containers too.
        std::fs::write(dir.join(state::EXEC_FIFO), b"").ctx(|| "writing created marker")?;
        saved.pid = pid;
        saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
        saved.creating = false;
        state::write_saved(&dir, &saved)?;
        if let Some(p) = o.pid_file {
            write_pid_file(p, pid)?;
        }
        guard.disarm();
        Ok(Container {
            saved,
            dir,
            lock: Some(lock),
        })
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

/// Runs `f` (the clone) with the runtime's pid/time namespace for children
/// switched as the config asks, and restores them afterwards.
fn with_parent_ns<T>(
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

impl Container {
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

    fn cgroup(&self, rt: &Runtime) -> Result<Box<dyn skiff_cgroups::Manager>> {
        Ok(skiff_cgroups::new_manager(&skiff_cgroups::Config {
            cgroups_path: self.saved.cgroups_path.as_deref(),
            id: &self.saved.id,
            systemd: self.saved.systemd_cgroup,
            rootless: self.saved.rootless || rt.rootless,
        })?)
    }

    /// Current status (including `paused` from the freezer). A container
    /// still marked creating whose `create` is gone (it held the lock
    /// throughout: we hold it now, or nobody does) is stopped.
    pub fn status(&self, rt: &Runtime) -> Status {
        let s = self.saved.base_status(&self.dir, self.creator_gone());
        if s != Status::Running {
            return s;
        }
        #[cfg(feature = "vm")]
        if self.is_vm() {
            return match self.vm_stats().ok().and_then(|v| v["frozen"].as_bool()) {
                Some(true) => Status::Paused,
                _ => s,
            };
        }
        if self.cgroup(rt).ok().and_then(|c| c.is_frozen().ok()) == Some(true) {
            return Status::Paused;
        }
        s
    }

    /// True when the state says creating but its `create` is gone (see
    /// [`Container::status`]).
    fn creator_gone(&self) -> bool {
        self.saved.creating && (self.lock.is_some() || state::Lock::is_free(&self.dir))
    }

    /// The guest agent's stats of a VM container (`memory`, `pids` in the
    /// guest, `frozen`).
    #[cfg(feature = "vm")]
    fn vm_stats(&self) -> Result<serde_json::Value> {
        Ok(skiff_vm::stats(&self.dir)?)
    }

    /// runtime-spec state JSON.
    pub fn state(&self, rt: &Runtime) -> serde_json::Value {
        state_json(&self.saved, self.status(rt))
    }

    fn bad_state(&self, status: Status, msg: &str) -> Error {
        Error::BadState {
            id: self.saved.id.clone(),
            status: status.to_string(),
            msg: msg.into(),
        }
    }

    /// `start`: lets the created container's process exec the user program,
    /// then runs poststart hooks.
    pub fn start(&mut self, rt: &Runtime) -> Result<()> {
        let status = self.status(rt);
        if status != Status::Created {
            return Err(self.bad_state(status, "cannot start a container that is not created"));
        }
        let fifo_path = self.dir.join(state::EXEC_FIFO);
        #[cfg(feature = "vm")]
        if self.is_vm() {
            skiff_vm::start(&self.dir)?;
            let _ = std::fs::remove_file(&fifo_path);
            return self.poststart(rt);
        }
        let fifo = nix::fcntl::open(
            &fifo_path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "opening exec fifo")?;
        let mut b = [0u8; 1];
        loop {
            let mut pfd = [nix::poll::PollFd::new(
                fifo.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16));
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                    if !self.saved.init_alive() {
                        let _ = std::fs::remove_file(&fifo_path);
                        return Err(Error::Init("container init exited before start".into()));
                    }
                }
                Err(e) => return Err(e).ctx(|| "reading exec fifo"),
            }
        }
        let _ = std::fs::remove_file(&fifo_path);
        self.poststart(rt)
    }

    /// True for VM-isolated containers.
    pub fn is_vm(&self) -> bool {
        self.saved.isolation == "vm"
    }

    /// Lifecycle step 9 as the config's ociVersion states it: from
    /// runtime-spec 1.3 a failing poststart hook is an error, the container
    /// is stopped and `start` fails with [`Error::Poststart`], on which the
    /// caller destroys it (step 12, `delete --force`, which runs the
    /// poststop hooks); up to 1.2 it is a warning and the lifecycle
    /// continues.
    fn poststart(&self, rt: &Runtime) -> Result<()> {
        let Some(h) = self.saved.spec.hooks() else {
            return Ok(());
        };
        let st = serde_json::to_vec(&state_json(&self.saved, Status::Running)).unwrap_or_default();
        let fatal =
            crate::config::parse_version(self.saved.spec.version()).is_some_and(|v| v >= (1, 3, 0));
        if !fatal {
            hooks::run_all_warn("poststart", h.poststart().as_ref(), &st);
            return Ok(());
        }
        let Err(e) = hooks::run_all("poststart", h.poststart().as_ref(), &st) else {
            return Ok(());
        };
        // Stopped here; destroyed by the caller, which holds no lock then
        // (`Error::Poststart`).
        if let Ok(cg) = self.cgroup(rt) {
            let _ = cg.kill_all(libc::SIGKILL);
        }
        // SAFETY: kill of the verified init pid (alive: we just started it).
        unsafe { libc::kill(self.saved.pid, libc::SIGKILL) };
        Err(Error::Poststart(e.to_string()))
    }

    /// `kill`: sends `sig` to the init (or every process with `all`).
    pub fn kill(&self, rt: &Runtime, sig: i32, all: bool) -> Result<()> {
        let status = self.status(rt);
        if all && !self.is_vm() {
            if status == Status::Stopped && sig != libc::SIGKILL {
                return Err(self.bad_state(status, "container not running"));
            }
            let cg = self.cgroup(rt)?;
            if (self.saved.rootless || rt.rootless) && cg.pids().is_err() {
                // No cgroup (rootless): signal the init's pid namespace.
                let pids = self.pidns_pids().ok_or_else(|| {
                    Error::Other("kill --all: the container has neither a cgroup nor a pid namespace of its own".into())
                })?;
                for p in pids {
                    // SAFETY: kill of a process in the container's pid namespace.
                    unsafe { libc::kill(p, sig) };
                }
                return Ok(());
            }
            return Ok(cg.kill_all(sig)?);
        }
        if matches!(status, Status::Stopped | Status::Creating) || self.saved.pid <= 0 {
            return Err(self.bad_state(status, "container not running"));
        }
        // SAFETY: kill with a pid we verified (start time) to be the init
        // (never 0 or negative: those name process groups).
        if unsafe { libc::kill(self.saved.pid, sig) } != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("kill {} {sig}", self.saved.pid));
        }
        Ok(())
    }

    /// `delete`: removes a stopped container (or, with `force`, kills it first).
    pub fn delete(self, rt: &Runtime, force: bool) -> Result<()> {
        let status = self.status(rt);
        let cg = self.cgroup(rt).ok();
        if self.creator_gone() && self.saved.init_alive() {
            // An init whose `create` was killed (after an extra fork it has
            // no parent-death signal).
            // SAFETY: kill of the verified (start time) init pid, > 0.
            unsafe { libc::kill(self.saved.pid, libc::SIGKILL) };
        }
        if status != Status::Stopped {
            if !force {
                return Err(self.bad_state(
                    status,
                    "cannot delete a container that is not stopped (use --force)",
                ));
            }
            if let Some(cg) = &cg {
                let _ = cg.thaw();
                let _ = cg.kill_all(libc::SIGKILL);
            }
            if self.saved.pid > 0 && self.saved.init_alive() {
                // SAFETY: kill of the verified init pid (positive: 0 and
                // negative pids name process groups).
                unsafe { libc::kill(self.saved.pid, libc::SIGKILL) };
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.saved.init_alive() && Instant::now() < deadline {
                // SAFETY: reaps the init if it happens to be our child
                // (init_alive is false for pids <= 0).
                unsafe { libc::waitpid(self.saved.pid, std::ptr::null_mut(), libc::WNOHANG) };
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        #[cfg(feature = "vm")]
        if self.is_vm() {
            skiff_vm::delete(&self.dir)?;
        }
        if let Some(cg) = cg.as_ref().filter(|_| !self.is_vm()) {
            destroy_cgroup(cg.as_ref(), Duration::from_secs(20))?;
        }
        if !self.is_vm() && !has_mount_ns(&self.saved.spec) {
            unmount_under(&self.saved.rootfs);
        }
        if let Some(h) = self.saved.spec.hooks() {
            let st =
                serde_json::to_vec(&state_json(&self.saved, Status::Stopped)).unwrap_or_default();
            hooks::run_all_warn("poststop", h.poststop().as_ref(), &st);
        }
        std::fs::remove_dir_all(&self.dir).ctx(|| format!("removing {}", self.dir.display()))
    }

    /// `pause`: freezes every process of the container.
    pub fn pause(&self, rt: &Runtime) -> Result<()> {
        let status = self.status(rt);
        if status != Status::Running && status != Status::Created {
            return Err(self.bad_state(status, "cannot pause a container that is not running"));
        }
        #[cfg(feature = "vm")]
        if self.is_vm() {
            return Ok(skiff_vm::pause(&self.dir)?);
        }
        Ok(self.cgroup(rt)?.freeze()?)
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, rt: &Runtime) -> Result<()> {
        let status = self.status(rt);
        if status != Status::Paused {
            return Err(self.bad_state(status, "cannot resume a container that is not paused"));
        }
        #[cfg(feature = "vm")]
        if self.is_vm() {
            return Ok(skiff_vm::resume(&self.dir)?);
        }
        Ok(self.cgroup(rt)?.thaw()?)
    }

    /// Pids of every process in the container's cgroup.
    pub fn pids(&self, rt: &Runtime) -> Result<Vec<i32>> {
        // A VM container's processes live in the guest: its pids are the
        // guest's (as Kata reports them).
        #[cfg(feature = "vm")]
        if self.is_vm() {
            if self.saved.base_status(&self.dir, self.creator_gone()) == Status::Stopped {
                return Ok(Vec::new());
            }
            let v = self.vm_stats()?;
            return Ok(v["pids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_i64())
                        .map(|p| p as i32)
                        .collect()
                })
                .unwrap_or_default());
        }
        match self.cgroup(rt)?.pids() {
            Err(e) if self.saved.rootless || rt.rootless => self.pidns_pids().ok_or(e.into()),
            r => Ok(r?),
        }
    }

    /// Rootless without a cgroup of its own: the processes in the init's pid
    /// namespace (None when the container shares this process's).
    fn pidns_pids(&self) -> Option<Vec<i32>> {
        if !self.saved.init_alive() {
            return Some(Vec::new());
        }
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.saved.pid)).ok()?;
        if std::fs::read_link("/proc/self/ns/pid").ok()? == ns {
            return None;
        }
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            })
            .collect();
        pids.sort_unstable();
        Some(pids)
    }

    /// Resource usage (runc `events --stats` data).
    pub fn stats(&self, rt: &Runtime) -> Result<skiff_cgroups::Stats> {
        #[cfg(feature = "vm")]
        if self.is_vm() {
            let v = self.vm_stats()?;
            let mut st = skiff_cgroups::Stats::default();
            st.memory.usage.usage = v["memory"]["usage"].as_u64().unwrap_or(0);
            st.memory.usage.limit = v["memory"]["limit"].as_u64().unwrap_or(u64::MAX);
            st.pids.current = v["pids"].as_array().map_or(0, |a| a.len() as u64);
            return Ok(st);
        }
        Ok(self.cgroup(rt)?.stats()?)
    }

    /// OOM kills so far in the container's cgroup.
    pub fn oom_kills(&self, rt: &Runtime) -> Result<u64> {
        Ok(self.cgroup(rt)?.oom_kill_count()?)
    }

    /// `update`: applies new resources and records them in the state.
    pub fn update(&mut self, rt: &Runtime, res: &LinuxResources) -> Result<()> {
        skiff_cgroups::validate(res).map_err(|e| Error::Config(format!("resources: {e}")))?;
        let status = self.status(rt);
        if status == Status::Stopped {
            return Err(self.bad_state(status, "cannot update a stopped container"));
        }
        self.cgroup(rt)?.apply(res)?;
        Ok(())
    }

    /// `exec` into a VM container: the guest agent runs the process; returns
    /// its exit code (0 when detached).
    #[cfg(feature = "vm")]
    pub fn exec_vm(
        &self,
        process: &Process,
        console_socket: Option<&Path>,
        detach: bool,
    ) -> Result<i32> {
        Ok(skiff_vm::exec(&self.dir, process, console_socket, detach)?)
    }

    /// `exec`: starts `process` inside the running container. Returns the pid
    /// (our child) once it is about to exec.
    pub fn exec(&self, rt: &Runtime, process: &Process, o: &ExecOptions) -> Result<i32> {
        let status = self.status(rt);
        // Paused: the caller decides (runc's --ignore-paused); the process
        // joins the frozen cgroup and runs once the container is resumed.
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(self.bad_state(status, "cannot exec in a container that is not running"));
        }
        let spec = &self.saved.spec;
        let linux = spec.linux().as_ref();
        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(skiff_seccomp::compile_cached(s, &rt.seccomp_cache())?),
            None => None,
        };
        crate::linux::lsm::check_exec(process).map_err(|e| Error::Config(e.to_string()))?;
        let caps = CapSets::from_spec(process.capabilities().as_ref())?;
        let (argv, envp) = c_strings(process, &[])?;
        linux::check_preserved_fds(o.preserve_fds)?;
        let mut join = Vec::new();
        let mut parent_join = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
        {
            let path = PathBuf::from(format!(
                "/proc/{}/ns/{}",
                self.saved.pid,
                proc_ns_name(ns.typ())
            ));
            let flag = ns_flag(ns.typ());
            let j = Join {
                flag,
                name: config::ns_name(ns.typ()),
                fd: open_ns(&path, ns.typ())?,
            };
            match flag {
                libc::CLONE_NEWPID | libc::CLONE_NEWTIME => parent_join.push(j),
                libc::CLONE_NEWUSER => join.insert(0, j),
                _ => join.push(j),
            }
        }
        let in_userns = join.iter().any(|j| j.flag == libc::CLONE_NEWUSER);
        // SAFETY: geteuid cannot fail.
        let unprivileged = unsafe { libc::geteuid() } != 0;
        // Unprivileged, this process may not join the container's pid (or
        // time) namespace: the child joins the user namespace first, then
        // those, and forks once more so that they apply (runc's nsexec).
        let fork_again = in_userns && unprivileged && !parent_join.is_empty();
        if fork_again {
            join.append(&mut parent_join);
        }
        if process.terminal().unwrap_or(false)
            && o.console_socket.is_none()
            && o.console_conn.is_none()
        {
            return Err(Error::Config(
                "process.terminal is true but no --console-socket was given".into(),
            ));
        }
        let console_socket = match o.console_conn {
            Some(fd) => Some(fd.try_clone_to_owned().ctx(|| "console socket")?),
            None => o.console_socket.map(connect_console).transpose()?,
        };
        let cg = self.cgroup(rt)?;
        // The cgroup of every hierarchy the process goes to: the container's,
        // or with `--cgroup` runc's [<controller>[,<controller>...]:]<path>
        // below it (hierarchies not named stay in the container's cgroup;
        // "unified" names cgroup2).
        let mut dirs: Vec<(u8, PathBuf)> = cg
            .hierarchies()
            .into_iter()
            .map(|h| (h.version, h.path))
            .collect();
        if let Some(sub) = o.cgroup {
            let (ctrls, rel) = match sub.split_once(':') {
                Some((c, p)) => (Some(c), p),
                None => (None, sub),
            };
            let rel = rel.trim_start_matches('/');
            if rel.split('/').any(|c| c == "..") {
                return Err(Error::Config(format!(
                    "--cgroup {sub}: the path must stay inside the container's cgroup"
                )));
            }
            for (h, d) in cg.hierarchies().iter().zip(dirs.iter_mut()) {
                let named = ctrls.is_none_or(|c| {
                    c.split(',').any(|x| {
                        if h.version == 2 {
                            x.is_empty() || x == "unified"
                        } else {
                            h.controllers.split(',').any(|y| y == x)
                        }
                    })
                });
                if named {
                    d.1 = h.path.join(rel);
                    if !d.1.is_dir() {
                        return Err(Error::Config(format!(
                            "--cgroup {sub}: {} does not exist",
                            d.1.display()
                        )));
                    }
                }
            }
        }
        // As for the init (see `create_with`): a privileged exec'd process
        // joins its v1 cgroups itself (no RCU grace period) and is cloned
        // into its cgroup2 directory.
        let self_join: Vec<CString> = if !unprivileged
            && !fork_again
            && !rt.rootless
            && !self.saved.rootless
            && cg.layout() != skiff_cgroups::Layout::V2
        {
            dirs.iter()
                .filter(|d| d.0 == 1)
                .map(|d| path_cstring(&d.1.join("tasks")))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let joins_itself = !self_join.is_empty();
        let into_cgroup =
            if !fork_again && (joins_itself || cg.layout() == skiff_cgroups::Layout::V2) {
                dirs.iter()
                    .find(|d| d.0 == 2)
                    .and_then(|d| linux::fs::open_path(&d.1).ok())
            } else {
                None
            };
        let plan = Plan {
            kind: Kind::Exec,
            id: &self.saved.id,
            spec,
            process,
            rootfs: self.saved.rootfs.clone(),
            new_ns: 0,
            join,
            console_socket,
            fifo: None,
            no_pivot: false,
            host_mntns: false,
            // The container's session keyring (`_ses.<id>`), as runc
            // joins it for exec too, never the caller's.
            no_new_keyring: self.saved.no_new_keyring,
            extra_fds: o.preserve_fds,
            seccomp,
            caps,
            cgroups: Vec::new(),
            argv,
            envp,
            idmap_trees: Vec::new(),
            close_fds: self.lock.iter().map(Lock::raw_fd).collect(),
            fork_again,
            self_join,
            late_cgroup: false,
        };
        let spawned = with_parent_ns(&parent_join, false, spec, || {
            linux::spawn(plan, into_cgroup.as_ref().map(|f| f.as_fd()))
        })?;
        drop(into_cgroup);
        let pid = spawned.pid;
        let fail = |e: Error| {
            // SAFETY: kill + reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            e
        };
        let add = if spawned.in_cgroup {
            // Born in its cgroup2 directory, joins the v1 ones itself.
            Ok(())
        } else if joins_itself {
            // clone3 failed (old kernel): only cgroup2 is left to join.
            dirs.iter()
                .filter(|d| d.0 == 2)
                .try_for_each(|d| std::fs::write(d.1.join("cgroup.procs"), pid.to_string()))
                .ctx(|| format!("joining cgroup of container {}", self.saved.id))
        } else if o.cgroup.is_some() {
            dirs.iter()
                .try_for_each(|d| std::fs::write(d.1.join("cgroup.procs"), pid.to_string()))
                .ctx(|| format!("--cgroup {}", o.cgroup.unwrap_or("")))
        } else {
            rootless_join(rt.rootless || self.saved.rootless, cg.add_task(pid))
        };
        add.map_err(fail)?;
        if let Some(adj) = process.oom_score_adj() {
            let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string());
        }
        spawned
            .chan
            .send(sync::GO, &[])
            .ctx(|| "setup channel")
            .map_err(fail)?;
        let saved = &self.saved;
        let pid = converse(
            &spawned.chan,
            pid,
            spec,
            rt.rootless,
            |_| Ok(Vec::new()),
            |p| {
                let mut s = saved.clone();
                s.pid = p;
                state_json(&s, Status::Running)
            },
        )
        .map_err(fail)?;
        if let Some(p) = o.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok(pid)
    }
}

/// The signals `run`/`exec` forward to the container (all but those that
/// cannot be caught or that report a fault of the runtime itself).
pub fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTSTP
                | Signal::SIGTTIN
                | Signal::SIGTTOU
        ) {
            mask.add(s);
        }
    }
    mask
}

/// Waits for `pid` (a child of this process) while forwarding signals to it;
/// returns its exit code (128+signal when killed), as `run` reports it.
pub fn wait_forwarding(pid: i32, console: Option<OwnedFd>) -> Result<i32> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mask = forwarded_signals();
    mask.thread_block().ctx(|| "blocking signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "signalfd")?;
    let mut proxy = console.map(crate::tty::Proxy::new).transpose()?;
    let code = loop {
        // Reap everything (we may be a subreaper); stop when the init is gone.
        let mut st = 0;
        let mut done = None;
        loop {
            // SAFETY: waitpid with a valid status pointer.
            let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                done = Some(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                });
            }
        }
        if let Some(c) = done {
            break c;
        }
        let mut fds = vec![nix::poll::PollFd::new(
            sfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(p) = &proxy {
            fds.extend(p.poll_fds());
        }
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        while let Ok(Some(si)) = sfd.read_signal() {
            let sig = si.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                continue;
            }
            if sig == libc::SIGWINCH {
                if let Some(p) = &proxy {
                    p.resize();
                }
            }
            // SAFETY: forwarding a signal to our child.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(p) = &mut proxy {
            p.pump(&ready[1..]);
        }
    };
    if let Some(p) = &mut proxy {
        p.drain();
    }
    let _ = mask.thread_unblock();
    Ok(code)
}

/// Becomes a child subreaper, so that a container init forked twice (joined
/// namespaces) is still reaped by `run`.
pub fn set_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

//! `create` for namespace isolation: everything is checked before the host
//! changes, then the state directory, exec fifo, cgroups and the init
//! (cloned into its namespaces) are built; any failure tears all of it down
//! again (see [`Guard`]), so a failed `create` leaves nothing behind.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};

use super::ns::{host_root_ids, idmap_trees, ns_setup, with_parent_ns, write_id_maps, NsSetup};
use super::{state_json, write_pid_file, Container, CreateOptions, Runtime};
use crate::cgroup_join::{self, CgroupJoin};
use crate::error::Context;
use crate::linux::{self, caps::CapSets, sync, Kind, Plan};
use crate::state::{self, Isolation, Saved, Status};
use crate::{hooks, Error, Result};

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

/// Tears down a half-created container unless disarmed.
struct Guard {
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
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// True when the config gives the container a mount namespace (new or
/// joined by path).
pub(crate) fn has_mount_ns(spec: &Spec) -> bool {
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

/// `path` as a C string (cgroup paths handed to the init).
pub(super) fn path_cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config(format!("{}: path contains a NUL byte", path.display())))
}

/// Builds argv/envp C strings for a process.
pub(super) fn c_strings(
    process: &Process,
    extra_env: &[String],
) -> Result<(Vec<CString>, Vec<CString>)> {
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
        rules.push(skiff_cgroups::deny_all_rule());
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
    rules.extend(skiff_cgroups::default_device_rules());
    let devs = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    for (d, _) in devs.iter().zip(explicit).filter(|(_, e)| !e) {
        rules.push(skiff_cgroups::device_rule(
            true,
            Some(d.typ()),
            Some(d.major()),
            Some(d.minor()),
            "rwm",
        ));
    }
    res.set_devices(Some(rules));
    res
}

/// Rootless without cgroup delegation: `create` skipped the cgroup
/// directories it was not allowed to make, so joining them fails with
/// ENOENT; the container then runs without a cgroup of its own (as runc).
pub(super) fn rootless_join(rootless: bool, r: Result<(), skiff_cgroups::Error>) -> Result<()> {
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

pub(super) fn connect_console(path: &Path) -> Result<OwnedFd> {
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
pub(super) fn converse(
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

/// What `create` checks and compiles before touching the host.
struct Prepared<'s> {
    process: &'s Process,
    host_mntns: bool,
    seccomp: Option<skiff_seccomp::Filter>,
    caps: CapSets,
    listen_fds: u32,
    argv: Vec<CString>,
    envp: Vec<CString>,
    ns: NsSetup,
    euid: u32,
}

/// Validates and compiles everything `create` needs from the config
/// (nothing on the host changes yet).
fn prepare<'s>(rt: &Runtime, o: &CreateOptions, spec: &'s Spec) -> Result<Prepared<'s>> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("config.json: process is missing".into()))?;
    let linux = spec.linux().as_ref();
    let host_mntns = !has_mount_ns(spec);
    if host_mntns {
        check_host_mntns(spec)?;
    }
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(skiff_seccomp::compile_cached(s, &rt.seccomp_cache())?),
        None => None,
    };
    crate::linux::lsm::check(spec).map_err(|e| Error::Config(e.to_string()))?;
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    let (listen_fds, lenv) = listen_fds();
    linux::check_preserved_fds(o.preserve_fds + listen_fds)?;
    let (argv, envp) = c_strings(process, &lenv)?;
    let ns = ns_setup(spec)?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if (rt.rootless || euid != 0)
        && ns.new_ns & libc::CLONE_NEWUSER == 0
        && !ns.join.iter().any(|j| j.flag == libc::CLONE_NEWUSER)
    {
        return Err(Error::Config(format!(
            "config.json: linux.namespaces: a rootless container (uid {euid}) needs a user \
             namespace: add {{\"type\": \"user\"}} with linux.uidMappings and \
             linux.gidMappings (`skiff --rootless spec` writes such a config)"
        )));
    }
    if process.terminal().unwrap_or(false) && o.console_socket.is_none() && o.console_conn.is_none()
    {
        return Err(Error::Config(
            "config.json: process.terminal is true but no --console-socket was given".into(),
        ));
    }
    Ok(Prepared {
        process,
        host_mntns,
        seccomp,
        caps,
        listen_fds,
        argv,
        envp,
        ns,
        euid,
    })
}

/// Creates the exec fifo the init blocks on until `start`; returns an
/// O_PATH fd of it for the init.
fn make_exec_fifo(dir: &Path, spec: &Spec) -> Result<OwnedFd> {
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
    let (ruid, rgid) = host_root_ids(spec);
    if let Err(e) = std::os::unix::fs::chown(&fifo_path, Some(ruid), Some(rgid)) {
        // Unprivileged, the fifo stays ours; its 0622 mode lets the
        // container's root (another host id) open it for writing.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return Err(e).ctx(|| "chown exec fifo");
        }
    }
    nix::fcntl::open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| "opening exec fifo")
}

/// How the init joins `cg` ([`cgroup_join::decide`]) and the v1 `tasks`
/// files it writes itself.
fn plan_cgroup_join(
    rt: &Runtime,
    cg: &dyn skiff_cgroups::Manager,
    ns: &NsSetup,
    euid: u32,
) -> Result<(CgroupJoin, Vec<CString>)> {
    let join = cgroup_join::decide(&cgroup_join::Inputs {
        layout: cg.layout(),
        spawn: cgroup_join::Spawn::Create,
        euid_root: euid == 0,
        rootless: rt.rootless,
        new_user_ns: ns.new_ns & libc::CLONE_NEWUSER != 0,
        joins_user_ns: ns.join.iter().any(|j| j.flag == libc::CLONE_NEWUSER),
        joins_other_ns: !ns.join.is_empty(),
        joins_pid_or_time_ns: !ns.parent_join.is_empty(),
        new_cgroup_ns: ns.new_ns & libc::CLONE_NEWCGROUP != 0,
    });
    let self_join: Vec<CString> = if join.self_join() {
        cg.hierarchies()
            .iter()
            .filter(|h| h.version == 1)
            .map(|h| path_cstring(&h.path.join("tasks")))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    Ok((join, self_join))
}

/// Creates and configures the container's cgroups.
fn make_cgroup(rt: &Runtime, cg: &dyn skiff_cgroups::Manager, res: &LinuxResources) -> Result<()> {
    cg.create()?;
    cg.apply(res)
        .map_err(|e| rootless_cgroup_hint(rt.rootless, e))
}

/// After the clone: moves the init into its cgroups as `join` says, writes
/// its id maps, and lets it go on (GO, then JOINED).
fn join_after_spawn(
    rt: &Runtime,
    cg: &dyn skiff_cgroups::Manager,
    join: CgroupJoin,
    spawned: &linux::Spawned,
    spec: &Spec,
    new_user: bool,
) -> Result<()> {
    // Moving a task between v1 cgroups costs a full RCU grace period
    // (~13 ms here) the first time. The init only needs to be in its
    // cgroup before it reports HOOKS (it waits for HOOKS_DONE, which this
    // process sends after joining), so let it set up its namespaces and
    // mounts meanwhile. After an extra fork the grandchild must be forked
    // inside the cgroup, so join first there.
    if join.extra_fork() {
        rootless_join(rt.rootless, cg.add_task(spawned.pid))?;
    } else if new_user {
        write_id_maps(spawned.pid, spec, rt.rootless)?;
    }
    tell_init(&spawned.chan, sync::GO, &[])?;
    if join.late() {
        make_cgroup(rt, cg, &effective_resources(spec))?;
    }
    if !join.extra_fork() {
        // The v1 hierarchies are joined by the init itself; only a
        // missed CLONE_INTO_CGROUP (old kernel) needs a migration here.
        if join.runtime_migrates(spawned.in_cgroup) {
            rootless_join(rt.rootless, cg.add_task(spawned.pid))?;
        }
        tell_init(&spawned.chan, sync::JOINED, &[])?;
    }
    Ok(())
}

/// The state `create` records first (`creating`, no pid yet).
fn new_saved(rt: &Runtime, o: &CreateOptions, bundle: &Path, rootfs: &Path, spec: &Spec) -> Saved {
    Saved {
        id: o.id.to_string(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        created: state::now_rfc3339(),
        owner: state::owner_uid(),
        creating: true,
        cgroups_path: spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned()),
        systemd_cgroup: rt.systemd_cgroup,
        rootless: rt.rootless,
        isolation: Isolation::Namespace,
        no_new_keyring: o.no_new_keyring,
        spec: spec.clone(),
    }
}

/// Talks the init through its setup (see [`converse`]), running the
/// prestart and createRuntime hooks when it asks; returns the container's
/// pid (the grandchild after an extra fork).
fn setup_dialogue(
    rt: &Runtime,
    spawned: &linux::Spawned,
    spec: &Spec,
    dir: &Path,
    saved: &mut Saved,
) -> Result<i32> {
    let hooks = spec.hooks().clone();
    let for_seccomp = saved.clone();
    converse(
        &spawned.chan,
        spawned.pid,
        spec,
        rt.rootless,
        |pid| {
            saved.pid = pid;
            saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
            state::write_saved(dir, saved)?;
            // Prestart and createRuntime are lifecycle steps 3-4, after the
            // environment was created (step 2): "created", as crun and
            // runtime-tools' hooks_stdin have it.
            let st = serde_json::to_vec(&state_json(saved, Status::Created)).unwrap_or_default();
            if let Some(h) = &hooks {
                hooks::run_all("prestart", h.prestart().as_ref(), &st)?;
                hooks::run_all("createRuntime", h.create_runtime().as_ref(), &st)?;
            }
            Ok(serde_json::to_vec(&state_json(saved, Status::Created)).unwrap_or_default())
        },
        |pid| {
            let mut s = for_seccomp.clone();
            s.pid = pid;
            state_json(&s, Status::Creating)
        },
    )
}

/// `create` for namespace isolation: state directory, exec fifo, cgroups,
/// and the init cloned into its namespaces, blocked on the fifo until
/// `start`. Any failure tears down what was built ([`Guard`]).
pub(crate) fn create(
    rt: &Runtime,
    o: &CreateOptions,
    bundle: PathBuf,
    spec: Spec,
    rootfs: PathBuf,
) -> Result<Container> {
    let p = prepare(rt, o, &spec)?;
    let (dir, lock) = rt.root().create_dir(o.id)?;
    let mut guard = Guard {
        host_mounts: p.host_mntns.then(|| rootfs.clone()),
        dir: Some(dir.clone()),
        cgroup: None,
        pid: 0,
    };
    let mut saved = new_saved(rt, o, &bundle, &rootfs, &spec);
    state::write_saved(&dir, &saved)?;
    let fifo = make_exec_fifo(&dir, &spec)?;
    let new_user = p.ns.new_ns & libc::CLONE_NEWUSER != 0;
    let cg = rt.cgroup(saved.cgroups_path.as_deref(), o.id)?;
    let (join, self_join) = plan_cgroup_join(rt, cg.as_ref(), &p.ns, p.euid)?;
    let cg = &**guard.cgroup.insert(cg);
    if !join.late() {
        make_cgroup(rt, cg, &effective_resources(&spec))?;
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
        process: p.process,
        rootfs: rootfs.clone(),
        new_ns: p.ns.new_ns,
        join: p.ns.join,
        console_socket,
        fifo: Some(fifo),
        no_pivot: o.no_pivot,
        host_mntns: p.host_mntns,
        no_new_keyring: o.no_new_keyring,
        extra_fds: o.preserve_fds + p.listen_fds,
        seccomp: p.seccomp,
        caps: p.caps,
        // Rootless without delegation: only the cgroups that exist.
        cgroups: cg
            .hierarchies()
            .into_iter()
            .filter(|h| !rt.rootless || h.path.is_dir())
            .collect(),
        argv: p.argv,
        envp: p.envp,
        idmap_trees,
        close_fds: vec![lock.raw_fd()],
        cgroup_join: join,
        self_join,
    };
    std::env::set_current_dir(&bundle).ctx(|| format!("chdir to bundle {}", bundle.display()))?;
    // cgroup2 (pure or the unified part of a hybrid host): the init is
    // cloned straight into its cgroup.
    let into_cgroup = if join.clone_into_v2() {
        cg.hierarchies()
            .iter()
            .find(|h| h.version == 2)
            .and_then(|h| linux::fs::open_path(&h.path).ok())
    } else {
        None
    };
    let spawned = with_parent_ns(
        &p.ns.parent_join,
        p.ns.new_ns & libc::CLONE_NEWTIME != 0,
        &spec,
        || linux::spawn(plan, into_cgroup.as_ref().map(|f| f.as_fd())),
    )?;
    drop(into_cgroup);
    guard.pid = spawned.pid;
    join_after_spawn(rt, cg, join, &spawned, &spec, new_user)?;
    if let Some(adj) = p.process.oom_score_adj() {
        std::fs::write(
            format!("/proc/{}/oom_score_adj", spawned.pid),
            adj.to_string(),
        )
        .ctx(|| format!("config.json: process.oomScoreAdj {adj}"))?;
    }
    let pid = setup_dialogue(rt, &spawned, &spec, &dir, &mut saved)?;
    guard.pid = pid;
    saved.pid = pid;
    saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
    saved.creating = false;
    state::write_saved(&dir, &saved)?;
    if let Some(path) = o.pid_file {
        write_pid_file(path, pid)?;
    }
    // The init keeps its parent-death signal until now: a `create`
    // killed earlier takes its init with it.
    handover(&spawned.chan)?;
    guard.disarm();
    Ok(Container::from_parts(saved, dir, lock))
}

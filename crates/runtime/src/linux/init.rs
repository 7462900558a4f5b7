//! The child side: runs in the freshly cloned process, turns it into the
//! container process step by step (namespaces, rootfs, console, limits,
//! identity, capabilities, seccomp) and finally `execve`s the user program.
//!
//! Order follows runc: everything privileged first, seccomp last (or before
//! dropping capabilities when `noNewPrivileges` is false). Errors before the
//! init reports READY go to the runtime over the setup channel; later ones to
//! the container's stderr.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::process::{join_session_keyring, set_affinity, set_process_attributes};
use super::sync::{self, Chan};
use super::{console, fs, rootfs, Kind, Plan};

pub(super) type R<T> = std::result::Result<T, String>;

fn os(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

pub(super) fn last_err(what: impl std::fmt::Display) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Set once READY is sent: the runtime no longer reads the channel, so
/// later errors go to the container's stderr.
static READY_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the runtime that spawns the init runs without root (set by
/// [`super::spawn`] before the clone; the child inherits the value).
pub static SPAWNER_UNPRIVILEGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Entry point of the cloned child. Never returns.
pub fn main(plan: Plan, chan: Chan) -> ! {
    let Err(msg) = run(&plan, &chan);
    if READY_SENT.load(std::sync::atomic::Ordering::Relaxed)
        || chan.send(sync::ERROR, msg.as_bytes()).is_err()
    {
        let _ = writeln!(std::io::stderr(), "skiff: {msg}");
    }
    // Closing a socket with unread messages (e.g. JOINED, sent while we
    // were failing) resets the peer, which then loses our ERROR: drain.
    let mut buf = [0u8; 512];
    // SAFETY: non-blocking recv into a valid buffer on our channel fd.
    while unsafe {
        libc::recv(
            chan.raw(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    // SAFETY: _exit never returns and skips atexit handlers of the runtime.
    unsafe { libc::_exit(127) }
}

/// Moves this (single-threaded) process into its v1 cgroups by writing 0
/// to each `tasks` file (see [`Plan::self_join`]).
fn join_cgroups(tasks: &[CString]) -> R<()> {
    for t in tasks {
        // SAFETY: open of a NUL-terminated path; the result is checked.
        let fd = unsafe { libc::open(t.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        // SAFETY: a one-byte write from a static buffer to our fd.
        let ok = fd >= 0 && unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1;
        let err = std::io::Error::last_os_error();
        if fd >= 0 {
            // SAFETY: closing the fd opened above.
            unsafe { libc::close(fd) };
        }
        if !ok {
            return Err(format!("joining cgroup {}: {err}", t.to_string_lossy()));
        }
    }
    Ok(())
}

fn expect(chan: &Chan, tag: u8) -> R<Vec<u8>> {
    match chan.recv() {
        Ok((t, payload, _)) if t == tag => Ok(payload),
        Ok((0, ..)) => Err("runtime went away during setup".into()),
        Ok((t, ..)) => Err(format!("unexpected setup message {t}")),
        Err(e) => Err(format!("setup channel: {e}")),
    }
}

fn prctl(op: libc::c_int, a: libc::c_ulong) -> R<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(op, a, 0, 0, 0) } != 0 {
        return Err(last_err(format_args!("prctl({op})")));
    }
    Ok(())
}

fn run(plan: &Plan, chan: &Chan) -> R<Infallible> {
    let maps_pending = reset_process(plan)?;
    let process = plan.process;
    if let Some(aff) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().clone())
    {
        set_affinity(&aff)?;
    }
    expect(chan, sync::GO)?;
    let in_userns = enter_namespaces(plan, chan, maps_pending)?;
    if plan.kind == Kind::Init && plan.new_ns & libc::CLONE_NEWNET != 0 {
        loopback_up()?;
    }
    let spec = plan.spec;
    if plan.kind == Kind::Init {
        set_session_and_hostname(plan)?;
    }
    let mut hook_state = Vec::new();
    let terminal = process.terminal().unwrap_or(false);
    if plan.kind == Kind::Init {
        hook_state = setup_root(plan, chan, in_userns, terminal)?;
    } else if terminal {
        // The pty becomes the controlling terminal: that needs a new session.
        // SAFETY: setsid has no memory effects.
        if unsafe { libc::setsid() } < 0 {
            return Err(last_err("setsid"));
        }
        setup_console(plan, false)?;
    }
    set_process_attributes(plan)?;
    if !plan.no_new_keyring {
        join_session_keyring(plan)?;
    }
    let exe = resolve_exe(plan)?;
    // The exec trampoline (CVE-2019-5736, see exe.rs), made before any
    // seccomp filter is loaded. Not with an LSM exec label: the label
    // applies to the next exec only, which would be the trampoline's.
    let trampoline = if super::lsm::process_wants_lsm(process) {
        None
    } else {
        super::exe::trampoline(3 + plan.extra_fds as i32)
    };
    finish_setup(plan, chan, in_userns)?;
    chan.send(sync::READY, &[]).map_err(os("setup channel"))?;
    if plan.kind == Kind::Init {
        // Until `create` has recorded the container, the init dies with it
        // (parent-death signal, or EOF here after an extra fork) rather
        // than wait on the exec fifo forever.
        expect(chan, sync::HANDOVER)?;
        prctl(libc::PR_SET_PDEATHSIG, 0)?;
        chan.send(sync::HANDED_OVER, &[])
            .map_err(os("setup channel"))?;
    }
    READY_SENT.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(fifo) = &plan.fifo {
        let w = wait_start(fifo.as_fd(), in_userns)?;
        // Lifecycle steps 7 to 9: startContainer hooks, the program, then
        // (once the byte arrives) poststart: the byte goes after the hooks.
        if let Some(h) = spec.hooks() {
            crate::hooks::run_all("startContainer", h.start_container().as_ref(), &hook_state)
                .map_err(|e| e.to_string())?;
        }
        // `start` returns (and runs poststart) once this byte arrives.
        nix::unistd::write(&w, b"0").map_err(|e| format!("writing exec fifo: {e}"))?;
    }
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that
    // outlive the call (it only returns on failure).
    unsafe { super::exe::exec(trampoline.as_ref(), &exe, &argv, &envp) };
    Err(last_err(format_args!("exec {:?}", plan.argv[0])))
}

/// First thing in the child: close the runtime's fds, die with the runtime,
/// not dumpable (unless the runtime must still write our id maps: returned
/// true), umask 0, default signal dispositions and an empty mask.
fn reset_process(plan: &Plan) -> R<bool> {
    // Die with the runtime during setup; not dumpable until execve, so the
    // container cannot ptrace us or open /proc/<pid>/exe, mem, fds.
    for &fd in &plan.close_fds {
        // SAFETY: closing our copy of a runtime fd the child must not keep.
        unsafe { libc::close(fd) };
    }
    prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)?;
    // Unprivileged (rootless), the runtime writes our uid_map/gid_map as the
    // same host user, but a non-dumpable process's /proc files belong to
    // root: stay dumpable until the maps are written (no container process
    // exists yet; only the runtime's own user could ptrace us).
    let maps_pending = SPAWNER_UNPRIVILEGED.load(std::sync::atomic::Ordering::Relaxed)
        && plan.new_ns & libc::CLONE_NEWUSER != 0;
    if !maps_pending {
        prctl(libc::PR_SET_DUMPABLE, 0)?;
    }
    // SAFETY: umask cannot fail; signal/sigprocmask reset what the runtime
    // changed (Rust ignores SIGPIPE; `run` blocks signals) so the container
    // process starts with default dispositions and an empty mask.
    unsafe {
        libc::umask(0);
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    Ok(maps_pending)
}

/// After GO: joins the cgroups (unless late), the namespaces to join, the
/// network namespace to create, and with an extra fork the rest; becomes
/// root of a user namespace. Returns whether we are in one.
fn enter_namespaces(plan: &Plan, chan: &Chan, maps_pending: bool) -> R<bool> {
    if !plan.cgroup_join.late() {
        join_cgroups(&plan.self_join)?;
    }
    if maps_pending && !plan.cgroup_join.extra_fork() {
        prctl(libc::PR_SET_DUMPABLE, 0)?;
    }
    let mut in_userns = plan.new_ns & libc::CLONE_NEWUSER != 0;
    for j in &plan.join {
        nix::sched::setns(
            j.fd.as_fd(),
            nix::sched::CloneFlags::from_bits_retain(j.flag),
        )
        .map_err(|e| format!("joining {} namespace: {e}", j.name))?;
        if j.flag == libc::CLONE_NEWUSER {
            in_userns = true;
        }
    }
    for j in &plan.join {
        // SAFETY: the namespace files are joined; no host namespace fd
        // stays open in the container process. The plan is never dropped
        // (this function execs or the process _exits), so no double close.
        unsafe { libc::close(j.fd.as_raw_fd()) };
    }
    if !plan.cgroup_join.extra_fork() && plan.new_ns & libc::CLONE_NEWNET != 0 {
        // Left out of the clone flags (see `spawn`); in a new user namespace
        // we are already in it, so it owns the network namespace, as with
        // clone.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("creating network namespace: {e}"))?;
    }
    if plan.cgroup_join.extra_fork() {
        fork_again(plan, chan, maps_pending)?;
    }
    if in_userns {
        // Become root of the new user namespace (if 0 is mapped).
        // SAFETY: plain id syscalls.
        unsafe {
            libc::setresgid(0, 0, 0);
            libc::setresuid(0, 0, 0);
        }
    }
    Ok(in_userns)
}

/// The extra fork (see [`crate::cgroup_join::CgroupJoin::extra_fork`]):
/// creates the user namespace (the runtime writes its maps) and the other
/// namespaces, forks, and goes on in the grandchild once the runtime has
/// its pid.
fn fork_again(plan: &Plan, chan: &Chan, maps_pending: bool) -> R<()> {
    if plan.new_ns & libc::CLONE_NEWUSER != 0 {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("creating user namespace: {e}"))?;
        chan.send(sync::MAPS, &[]).map_err(os("setup channel"))?;
        expect(chan, sync::MAPS_DONE)?;
        if maps_pending {
            prctl(libc::PR_SET_DUMPABLE, 0)?;
        }
    }
    let rest = plan.new_ns & !(libc::CLONE_NEWUSER | libc::CLONE_NEWTIME);
    if rest != 0 {
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(rest))
            .map_err(|e| format!("creating namespaces: {e}"))?;
    }
    // The grandchild must not talk to the runtime before PID was sent
    // (an exec'd process reaches READY fast, and the runtime would
    // then wait for the intermediate): it waits for EOF on a pipe whose
    // write end dies with the intermediate.
    let mut gate = [0i32; 2];
    // SAFETY: pipe2 with a valid two-int array.
    if unsafe { libc::pipe2(gate.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_err("pipe2"));
    }
    // SAFETY: fork in a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_err("fork"));
    }
    if pid > 0 {
        let _ = chan.send(sync::PID, &pid.to_ne_bytes());
        // SAFETY: the intermediate process is done.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing our copy of the write end, then reading from the
    // read end into a valid one-byte buffer until EOF; both fds are ours.
    unsafe {
        libc::close(gate[1]);
        let mut b = 0u8;
        while libc::read(gate[0], (&mut b as *mut u8).cast(), 1) < 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
        libc::close(gate[0]);
    }
    prctl(libc::PR_SET_DUMPABLE, 0)?;
    Ok(())
}

/// The init's session, hostname and domainname.
fn set_session_and_hostname(plan: &Plan) -> R<()> {
    let spec = plan.spec;
    // SAFETY: setsid has no memory effects.
    if unsafe { libc::setsid() } < 0 {
        return Err(last_err("setsid"));
    }
    // In a new uts namespace or one joined by path (as runc does).
    if plan.new_ns & libc::CLONE_NEWUTS != 0
        || plan.join.iter().any(|j| j.flag == libc::CLONE_NEWUTS)
    {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(|e| format!("setting hostname: {e}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
            let c = CString::new(d).map_err(|_| "domainname contains NUL")?;
            // SAFETY: setdomainname with a valid buffer and length.
            if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
                return Err(last_err("setting domainname"));
            }
        }
    }
    Ok(())
}

/// The init's root filesystem: mounts, JOINED (cgroups), hooks round trip,
/// pivot_root, masks, sysctls, console; returns the state for the
/// createContainer/startContainer hooks.
///
/// One unit on purpose: the closures share the JOINED state and the order
/// between the cgroup wait, the hooks and entering the root is the point.
fn setup_root(plan: &Plan, chan: &Chan, in_userns: bool, terminal: bool) -> R<Vec<u8>> {
    let spec = plan.spec;
    let linux = spec.linux().as_ref();
    let process = plan.process;
    let mut hook_state = Vec::new();
    let empty = Vec::new();
    let rplan = rootfs::RootfsPlan {
        rootfs: &plan.rootfs,
        mounts: spec.mounts().as_deref().unwrap_or(&empty),
        devices: linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
        propagation: linux.and_then(|l| l.rootfs_propagation().as_deref()),
        cgroups: &plan.cgroups,
        cgroupns: plan.new_ns & libc::CLONE_NEWCGROUP != 0,
        userns: in_userns,
        terminal,
        cwd: process.cwd(),
        idmap_trees: &plan.idmap_trees,
        host_mntns: plan.host_mntns,
        mount_label: super::lsm::mount_label(spec),
    };
    // JOINED: the runtime has moved us into our cgroups, or (late
    // cgroups) created them for us to join. Waited for lazily, right
    // before the first cgroup mount, so that the runtime's cgroup work
    // overlaps with the other mounts; the cgroup namespace is created
    // then (its root is the cgroup at unshare time).
    // Without prestart/createRuntime/createContainer hooks nothing can
    // observe the order, so the init enters its root (pivot_root,
    // masks, sysctls) before waiting for JOINED, unless it needs the
    // cgroups for a mount first (a cgroup namespace, late cgroups).
    let setup_hooks = spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container()]
            .iter()
            .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    });
    let early = !setup_hooks && plan.new_ns & libc::CLONE_NEWCGROUP == 0;
    let joined = std::cell::Cell::new(false);
    let wait_joined = || -> R<()> {
        // After an extra fork the cgroup was joined (and the namespace
        // created) before the fork.
        if plan.cgroup_join.extra_fork() || joined.replace(true) {
            return Ok(());
        }
        expect(chan, sync::JOINED)?;
        if plan.cgroup_join.late() {
            join_cgroups(&plan.self_join)?;
        }
        if plan.new_ns & libc::CLONE_NEWCGROUP != 0 {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("creating cgroup namespace: {e}"))?;
        }
        Ok(())
    };
    let on_cgroup = || -> R<()> {
        if early && !plan.cgroup_join.late() {
            return Ok(());
        }
        wait_joined()
    };
    let enter_root = || -> R<()> {
        rootfs::enter(&plan.rootfs, plan.no_pivot, plan.host_mntns)?;
        let masked = linux
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default();
        let ro = linux
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default();
        let root_ro = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
            write_sysctls(sysctl)?;
        }
        if terminal {
            setup_console(plan, true)?;
        }
        rootfs::finish(&masked, &ro, rplan.propagation, root_ro, rplan.mount_label)
    };
    let _root = rootfs::prepare(&rplan, &on_cgroup)?;
    if early {
        // Late cgroups are joined through host paths: before the pivot.
        if plan.cgroup_join.late() {
            wait_joined()?;
        }
        enter_root()?;
    }
    wait_joined()?;
    // The state for createContainer/startContainer hooks; the round trip
    // also lets the runtime run prestart/createRuntime hooks now.
    let any_hooks = spec.hooks().as_ref().is_some_and(|h| {
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    });
    if any_hooks {
        chan.send(sync::HOOKS, &[]).map_err(os("setup channel"))?;
        hook_state = expect(chan, sync::HOOKS_DONE)?;
    }
    if !early {
        if let Some(h) = spec.hooks() {
            crate::hooks::run_all(
                "createContainer",
                h.create_container().as_ref(),
                &hook_state,
            )
            .map_err(|e| e.to_string())?;
        }
        enter_root()?;
    }
    Ok(hook_state)
}

/// The last steps before READY, in runc's order: a seccomp filter that
/// needs privilege (no `noNewPrivileges`, or a notify filter whose fd goes
/// to the runtime) first, then the bounding set, the user, the
/// capabilities, no_new_privs, umask, cwd, the final affinity, the fds, and
/// a `noNewPrivileges` filter last. Anything that fails here fails `create`
/// (or `exec`) with the error; after READY only the fifo wait, the
/// startContainer hooks and the exec remain.
fn finish_setup(plan: &Plan, chan: &Chan, in_userns: bool) -> R<()> {
    let process = plan.process;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let filter = plan.seccomp.as_ref();
    let notify = filter.is_some_and(|f| f.uses_notify());
    let load = |f: &skiff_seccomp::Filter| -> R<()> {
        let fd = f
            .load()
            .map_err(|e| format!("loading seccomp filter: {e}"))?;
        if let Some(fd) = fd {
            chan.send_fd(sync::SECCOMP_FD, fd.as_raw_fd())
                .map_err(os("sending seccomp fd"))?;
            expect(chan, sync::SECCOMP_DONE)?;
        }
        Ok(())
    };
    // As runc: the cwd is entered as root first, before any seccomp filter
    // (older profiles refuse openat2 with EPERM), and again as the user
    // when root was refused (a volume only the container user can enter).
    let cwd_pending = match try_enter_cwd(process.cwd()) {
        Ok(()) => false,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => true,
        Err(e) => {
            return Err(format!(
                "chdir to process.cwd {}: {e}",
                process.cwd().display()
            ))
        }
    };
    let early = filter.filter(|_| notify || !nnp);
    if let Some(f) = early {
        if nnp {
            prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
        }
        load(f)?;
    }
    plan.caps
        .drop_bounding()
        .map_err(os("dropping bounding capabilities"))?;
    set_user(process.user(), in_userns)?;
    plan.caps.apply().map_err(os("setting capabilities"))?;
    if nnp {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    }
    let umask = process.user().umask().unwrap_or(0o022);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(umask as libc::mode_t) };
    if cwd_pending {
        enter_cwd(process.cwd())?;
    }
    if let Some(aff) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().clone())
    {
        set_affinity(&aff)?;
    }
    prepare_fds(plan.extra_fds)?;
    if plan.kind == Kind::Exec {
        prctl(libc::PR_SET_PDEATHSIG, 0)?;
    } else if !plan.cgroup_join.extra_fork() {
        // A credential change (root of a user namespace, the process's
        // user) clears the parent-death signal: set it again (a runtime
        // that died meanwhile is noticed as EOF on the channel).
        prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)?;
    }
    match (filter, early) {
        (Some(f), None) => load(f),
        _ => Ok(()),
    }
}

/// Blocks until `start` opens the exec fifo; returns its write end.
fn wait_start(fifo: BorrowedFd, in_userns: bool) -> R<std::os::fd::OwnedFd> {
    // In a user namespace, /proc/self/fd of a non-dumpable process is owned
    // by the host's root and cannot be searched: reopening the fifo needs
    // the process dumpable for the duration of the open.
    if in_userns {
        prctl(libc::PR_SET_DUMPABLE, 1)?;
    }
    let w = open_fifo(fifo);
    if in_userns {
        prctl(libc::PR_SET_DUMPABLE, 0)?;
    }
    w
}

/// Brings `lo` up in the network namespace the runtime just created, as
/// runc and crun do (an ioctl: no netlink on the start path).
fn loopback_up() -> R<()> {
    // SAFETY: socket with constant arguments; the result is checked and
    // owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_err("bringing lo up: socket"));
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass;
    // ifru_flags is the union member these requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            return Err(last_err("bringing lo up: SIOCGIFFLAGS"));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
            return Err(last_err("bringing lo up: SIOCSIFFLAGS"));
        }
    }
    Ok(())
}

fn setup_console(plan: &Plan, bind_console: bool) -> R<()> {
    let (rows, cols) = plan
        .process
        .console_size()
        .map(|b| (b.height() as u16, b.width() as u16))
        .unwrap_or((0, 0));
    let (master, slave, slave_path) = console::open_pty(rows, cols).map_err(os("creating pty"))?;
    if bind_console {
        nix::mount::mount(
            Some(slave_path.as_str()),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind-mounting {slave_path} on /dev/console: {e}"))?;
    }
    let sock = plan
        .console_socket
        .as_ref()
        .ok_or("process.terminal is set but no --console-socket was given")?;
    console::send_fd(sock.as_raw_fd(), master.as_raw_fd(), &slave_path)
        .map_err(os("sending pty master to the console socket"))?;
    drop(master);
    console::make_stdio(&slave).map_err(os("making the pty the process's terminal"))
}

fn write_sysctls(sysctl: &std::collections::HashMap<String, String>) -> R<()> {
    let proc = fs::open_path(Path::new("/proc/sys")).map_err(os("opening /proc/sys"))?;
    fs::check_fs_magic(proc.as_fd(), fs::PROC_SUPER_MAGIC, "/proc/sys")
        .map_err(os("checking /proc/sys"))?;
    for (k, v) in sysctl {
        let rel = k.replace('.', "/");
        let fd = fs::open_in_root(
            proc.as_fd(),
            Path::new(&rel),
            OFlag::O_WRONLY | OFlag::O_TRUNC,
        )
        .map_err(|e| format!("linux.sysctl \"{k}\": {e}"))?;
        fs::check_fs_magic(fd.as_fd(), fs::PROC_SUPER_MAGIC, k).map_err(os(k))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(v.as_bytes())
            .map_err(|e| format!("linux.sysctl \"{k}\" = \"{v}\": {e}"))?;
    }
    Ok(())
}

fn set_user(user: &oci_spec::runtime::User, in_userns: bool) -> R<()> {
    prctl(libc::PR_SET_KEEPCAPS, 1)?;
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: setgroups with a valid array and its length.
    let rc = unsafe { libc::setgroups(gids.len(), gids.as_ptr()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // setgroups is denied in user namespaces set up without privilege.
        if !(in_userns && e.raw_os_error() == Some(libc::EPERM) && gids.is_empty()) {
            return Err(format!("setting additionalGids {gids:?}: {e}"));
        }
    }
    // SAFETY: plain id syscalls.
    if unsafe { libc::setresgid(user.gid(), user.gid(), user.gid()) } != 0 {
        return Err(last_err(format_args!("setting gid {}", user.gid())));
    }
    // SAFETY: plain id syscalls.
    if unsafe { libc::setresuid(user.uid(), user.uid(), user.uid()) } != 0 {
        return Err(last_err(format_args!("setting uid {}", user.uid())));
    }
    prctl(libc::PR_SET_KEEPCAPS, 0)
}

/// Blocks until `start` opens the exec fifo for reading; returns the write end.
fn open_fifo(fifo: BorrowedFd) -> R<std::os::fd::OwnedFd> {
    let path = CString::new(fs::fd_path(fifo)).map_err(|_| "bad fifo path")?;
    // SAFETY: open of /proc/self/fd/N (our own O_PATH fifo fd).
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_err(
            "opening exec fifo (is /proc mounted in the container?)",
        ));
    }
    // SAFETY: fd is a fresh fd we own.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Resolves `process.cwd` inside the container's root (`..` and symlinks
/// stay inside it, magic links such as `/proc/self/fd/N` are refused) and
/// enters it by fd: a path-based chdir would follow a link the container
/// planted to one of the runtime's descriptors, out into the host.
fn enter_cwd(cwd: &Path) -> R<()> {
    let fail = |e: std::io::Error| format!("chdir to process.cwd {}: {e}", cwd.display());
    let root = fs::open_path(Path::new("/")).map_err(fail)?;
    let dir =
        fs::open_in_root(root.as_fd(), cwd, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(fail)?;
    nix::unistd::fchdir(&dir).map_err(|e| fail(e.into()))
}

/// [`enter_cwd`] with the I/O error, for the first attempt as root.
fn try_enter_cwd(cwd: &Path) -> std::io::Result<()> {
    let root = fs::open_path(Path::new("/"))?;
    let dir = fs::open_in_root(root.as_fd(), cwd, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    nix::unistd::fchdir(&dir)?;
    Ok(())
}

/// Marks every fd above the preserved ones close-on-exec and clears it on
/// the preserved ones (3..3+extra). A preserved fd must be one the caller
/// passed (open, not close-on-exec): the runtime's own fds are all
/// close-on-exec and are never handed over (see `check_preserved_fds`).
fn prepare_fds(extra: u32) -> R<()> {
    let first = 3 + extra;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Older kernels: every open fd, from /proc/self/fd.
        let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map_err(os("listing /proc/self/fd"))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        for fd in open.into_iter().filter(|&fd| fd >= first as i32) {
            // SAFETY: fcntl on an fd number; EBADF is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    for fd in 3..first as i32 {
        // SAFETY: fcntl on an fd number only reads or sets its flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            return Err(format!(
                "preserved fd {fd} is not a descriptor the caller passed"
            ));
        }
    }
    Ok(())
}

/// Finds the program of args[0] inside the container (PATH of the
/// process's env), refusing paths through magic links like /proc/self/exe.
/// The errors are Go's `exec.LookPath` ones, which runc prints and which
/// docker, podman and containerd classify (127 for "not found" and "no such
/// file", 126 for "permission denied").
fn resolve_exe(plan: &Plan) -> R<CString> {
    let arg0 = plan.argv[0].as_bytes();
    let name = std::ffi::OsStr::from_bytes(arg0);
    let root = fs::open_path(Path::new("/")).map_err(os("opening /"))?;
    let check = |p: &Path| -> Result<CString, std::io::Error> {
        let fd = fs::open_in_root(root.as_fd(), p, OFlag::O_PATH)?;
        let st = nix::sys::stat::fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR && st.st_mode & 0o111 != 0 {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EACCES))
        }
    };
    let quoted = String::from_utf8_lossy(arg0);
    if arg0.contains(&b'/') {
        let p = if arg0.starts_with(b"/") {
            PathBuf::from(name)
        } else {
            plan.process.cwd().join(name)
        };
        return check(&p).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) => format!("exec: \"{quoted}\": permission denied"),
            _ => format!("exec: \"{quoted}\": stat {quoted}: {}", errno_text(&e)),
        });
    }
    let path_env = plan
        .envp
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_env.split(|&b| b == b':') {
        let dir = if dir.is_empty() { b".".as_slice() } else { dir };
        let p = Path::new(std::ffi::OsStr::from_bytes(dir)).join(name);
        let p = if p.is_absolute() {
            p
        } else {
            plan.process.cwd().join(p)
        };
        if let Ok(c) = check(&p) {
            return Ok(c);
        }
    }
    Err(format!(
        "exec: \"{quoted}\": executable file not found in $PATH"
    ))
}

/// An errno's text as Go prints it ("no such file or directory"), without
/// Rust's " (os error N)".
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

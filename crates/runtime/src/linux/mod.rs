//! Linux process creation for containers: the runtime side ([`spawn`]) and
//! the init side ([`init`]) of building a container process.
//!
//! One `clone` creates the init directly in its new namespaces (no re-exec of
//! the runtime binary). The init and the runtime talk over a socketpair
//! ([`sync`]) until the init is set up and blocks on the exec fifo.

pub mod caps;
pub mod console;
pub mod exe;
pub mod fs;
pub mod idmap;
pub mod init;
pub mod lsm;
pub mod mount_opts;
pub mod rootfs;
pub mod sync;

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

pub use skiff_cgroups::Hierarchy;

use crate::error::Context;
use crate::Result;

/// A namespace to join by path, opened by the runtime.
#[derive(Debug)]
pub struct Join {
    /// CLONE_NEW* flag of the namespace.
    pub flag: libc::c_int,
    /// Its name for error messages.
    pub name: &'static str,
    /// Open fd of the namespace file.
    pub fd: OwnedFd,
}

/// What kind of process is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container's init: sets up the rootfs, waits on the exec fifo.
    Init,
    /// `exec` into an existing container: joins everything, no rootfs work.
    Exec,
}

/// Everything the child needs, prepared by the runtime before cloning so the
/// child does little more than syscalls.
pub struct Plan<'a> {
    /// Init or exec.
    pub kind: Kind,
    /// Container id (keyring name).
    pub id: &'a str,
    /// The config.
    pub spec: &'a oci_spec::runtime::Spec,
    /// The process to run (the spec's, or exec's).
    pub process: &'a oci_spec::runtime::Process,
    /// Absolute host rootfs path.
    pub rootfs: PathBuf,
    /// CLONE_NEW* flags to create.
    pub new_ns: libc::c_int,
    /// Namespaces to join, user first.
    pub join: Vec<Join>,
    /// Connected console socket (terminal).
    pub console_socket: Option<OwnedFd>,
    /// O_PATH fd of the exec fifo (init only).
    pub fifo: Option<OwnedFd>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// No mount namespace: mounts go under the rootfs in the runtime's
    /// namespace and the root is entered with chroot.
    pub host_mntns: bool,
    /// Do not create a session keyring.
    pub no_new_keyring: bool,
    /// Fds 3..3+extra_fds are passed to the process.
    pub extra_fds: u32,
    /// Compiled seccomp filter.
    pub seccomp: Option<skiff_seccomp::Filter>,
    /// Capability sets.
    pub caps: caps::CapSets,
    /// cgroup hierarchies for `cgroup` mounts.
    pub cgroups: Vec<Hierarchy>,
    /// argv as C strings.
    pub argv: Vec<CString>,
    /// envp as C strings.
    pub envp: Vec<CString>,
    /// Detached idmapped trees for `idmap`/`ridmap` mounts, by mount index.
    pub idmap_trees: Vec<(usize, OwnedFd)>,
    /// Fds of the runtime the child must close first (e.g. the state lock,
    /// whose flock would otherwise be held by the init).
    pub close_fds: Vec<std::os::fd::RawFd>,
    /// Fork once more after joining/creating namespaces (so that a joined or
    /// new pid namespace applies to the process).
    pub fork_again: bool,
    /// cgroup v1 `tasks` files the child writes `0` to, joining its cgroups
    /// itself (a thread moving itself takes no threadgroup lock, so no RCU
    /// grace period); empty when the runtime migrates it.
    pub self_join: Vec<CString>,
    /// The runtime creates the cgroups after GO: join them (`self_join`) on
    /// JOINED instead of right after GO.
    pub late_cgroup: bool,
}

/// The spawned child and the runtime's end of the setup channel.
pub struct Spawned {
    /// Pid of the (first) child in the runtime's pid namespace.
    pub pid: i32,
    /// Runtime's end of the setup channel.
    pub chan: sync::Chan,
    /// Born in its cgroup (clone3 CLONE_INTO_CGROUP): no migration needed.
    pub in_cgroup: bool,
}

/// Checks that fds 3..3+`n` (`--preserve-fds`, LISTEN_FDS) are descriptors
/// the caller passed: open and not close-on-exec. Every descriptor the
/// runtime opens itself is close-on-exec, so none of them can be handed to
/// the container through that range (runc refuses missing ones the same
/// way).
pub fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3 + n as i32 {
        // SAFETY: F_GETFD on an fd number only reads its flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(crate::Error::Config(format!(
                "unable to stat preserved-fd {} (of {n}): {}",
                fd - 3,
                std::io::Error::last_os_error()
            )));
        }
        if flags & libc::FD_CLOEXEC != 0 {
            return Err(crate::Error::Config(format!(
                "preserved-fd {} (of {n}) is fd {fd}, which the caller did not pass \
                 (it is the runtime's own)",
                fd - 3
            )));
        }
    }
    Ok(())
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Clones the child with `plan.new_ns` (unless namespaces are joined first,
/// see [`Plan::fork_again`]) and runs [`init::main`] in it.
pub fn spawn(plan: Plan, into_cgroup: Option<BorrowedFd>) -> Result<Spawned> {
    let (parent, child) = sync::Chan::pair().ctx(|| "creating setup socketpair")?;
    // The cgroup namespace is created by the init once it is in its cgroup
    // (see sync::JOINED), so that the namespace's root is that cgroup. The
    // network namespace is created by the init too (`init::run`, right
    // after GO): creating one costs 1-3 ms (loopback, sysctl tables), which
    // inside clone() would hold up this process; in the init it overlaps
    // with this process moving the init into its cgroups (an RCU grace
    // period on cgroup v1).
    let flags = if plan.fork_again {
        0
    } else {
        plan.new_ns & !(libc::CLONE_NEWCGROUP | libc::CLONE_NEWNET)
    } as libc::c_ulong;
    // The child cannot tell afterwards: in its new user namespace geteuid()
    // turns 0 as soon as its uid_map is written.
    // SAFETY: geteuid cannot fail.
    let unprivileged = unsafe { libc::geteuid() } != 0;
    init::SPAWNER_UNPRIVILEGED.store(unprivileged, std::sync::atomic::Ordering::Relaxed);
    let mut in_cgroup = false;
    let mut pid = -1;
    if let Some(cg) = into_cgroup {
        // cgroup2: born in its cgroup (clone3 CLONE_INTO_CGROUP), so the
        // runtime never migrates it. A migration takes the cgroup
        // threadgroup lock for writing, which costs an RCU grace period.
        let args = CloneArgs {
            flags: flags as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: cg.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: a fork-like clone3 (no CLONE_VM, no stack), as below.
        pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid == 0 {
            drop(parent);
            init::main(plan, child);
        }
        // Older kernels (ENOSYS, E2BIG) or a cgroup we may not write to:
        // fall back to clone + migration.
        in_cgroup = pid > 0;
    }
    if pid < 0 {
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child
        // gets a copy of this single-threaded process and runs init::main,
        // which never returns (it execs or _exits).
        pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_int>(),
                std::ptr::null_mut::<libc::c_int>(),
                0usize,
            )
        };
    }
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "clone of the container init");
    }
    if pid == 0 {
        drop(parent);
        init::main(plan, child);
    }
    drop(child);
    Ok(Spawned {
        pid: pid as i32,
        chan: parent,
        in_cgroup,
    })
}

//! Isolations: what differs, verb by verb, between a container in Linux
//! namespaces on the host and one in its own VM.
//!
//! [`Container`] checks the lifecycle state, runs the spec's hooks and
//! writes the state; for the isolation-specific step of each verb it calls
//! [`Isolator`] once, through [`of`] (crun keeps each isolation behind one
//! handler table, youki behind an `Executor`). Adding an isolation means one
//! implementation of this trait and one [`Isolation`] variant; nothing in
//! the lifecycle code branches on the isolation.
//!
//! A [`Sandbox`] is the group of containers sharing one isolation boundary
//! (a pod). Today every container is its own sandbox; VM pods extend
//! [`Isolator::sandbox`] so that several containers share one VM, without
//! touching the namespace implementation.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::state::{Isolation, Status};
use crate::{Container, CreateOptions, ExecOptions, Result, Runtime};

mod namespace;
#[cfg(feature = "vm")]
mod vm;

/// Annotation naming the sandbox (pod) a container belongs to, as CRI
/// runtimes set it.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// The result of [`Isolator::exec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// The process was spawned on the host as this pid (a child of the
    /// caller, about to exec); the caller waits for it.
    Spawned(i32),
    /// The isolation ran the process to completion (or detached it itself):
    /// the exit code to report.
    Done(i32),
}

impl Exec {
    /// The pid of a spawned host process.
    pub fn pid(self) -> Option<i32> {
        match self {
            Exec::Spawned(pid) => Some(pid),
            Exec::Done(_) => None,
        }
    }
}

/// The containers sharing one isolation boundary (a pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Sandbox id: the CRI sandbox id, or the container's own id.
    pub id: String,
    /// The isolation of the sandbox (all its containers share it).
    pub isolation: Isolation,
}

/// The isolation-specific step of each lifecycle verb. State checks, hooks
/// and the state file are [`Container`]'s.
pub trait Isolator: Sync {
    /// Creates container `o.id` from its parsed config: state directory,
    /// processes, resources. A failure leaves nothing behind.
    fn create(
        &self,
        rt: &Runtime,
        o: &CreateOptions,
        bundle: PathBuf,
        spec: Spec,
        rootfs: PathBuf,
    ) -> Result<Container>;

    /// Refines the status of a container whose init runs (`paused`).
    fn status(&self, rt: &Runtime, c: &Container, running: Status) -> Status;

    /// Lets the created container's process exec the user program.
    fn start(&self, rt: &Runtime, c: &Container) -> Result<()>;

    /// Sends `sig` to the init, or with `all` to every process.
    fn kill(&self, rt: &Runtime, c: &Container, sig: i32, all: bool) -> Result<()>;

    /// Kills whatever still runs (a forced delete): `status` is not stopped.
    fn stop(&self, rt: &Runtime, c: &Container);

    /// Frees what the isolation holds once nothing runs (cgroups, mounts,
    /// the VM); idempotent.
    fn delete(&self, rt: &Runtime, c: &Container) -> Result<()>;

    /// Freezes every process of the container.
    fn pause(&self, rt: &Runtime, c: &Container) -> Result<()>;

    /// Thaws a paused container.
    fn resume(&self, rt: &Runtime, c: &Container) -> Result<()>;

    /// Pids of the container's processes (see [`Isolator::host_pids`]).
    fn pids(&self, rt: &Runtime, c: &Container) -> Result<Vec<i32>>;

    /// Whether [`Isolator::pids`] are host pids (a VM reports the guest's).
    fn host_pids(&self) -> bool {
        true
    }

    /// Whether [`Isolator::exec`] runs the process to completion itself,
    /// relaying the caller's stdio and terminal (a VM's agent does),
    /// instead of spawning a host process for the caller to wait for.
    fn exec_relays_stdio(&self) -> bool {
        false
    }

    /// Resource usage (runc `events --stats` data).
    fn stats(&self, rt: &Runtime, c: &Container) -> Result<skiff_cgroups::Stats>;

    /// Applies new resources (already validated).
    fn update(&self, rt: &Runtime, c: &Container, res: &LinuxResources) -> Result<()>;

    /// Starts `process` in the running container.
    fn exec(&self, rt: &Runtime, c: &Container, process: &Process, o: &ExecOptions)
        -> Result<Exec>;

    /// The sandbox the container belongs to.
    fn sandbox(&self, c: &Container) -> Sandbox {
        let id = c
            .saved
            .spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(SANDBOX_ID_ANNOTATION).cloned())
            .unwrap_or_else(|| c.saved.id.clone());
        Sandbox {
            id,
            isolation: c.saved.isolation,
        }
    }
}

/// The implementation of isolation `i`.
pub fn of(i: Isolation) -> &'static dyn Isolator {
    match i {
        Isolation::Namespace => &namespace::Namespace,
        #[cfg(feature = "vm")]
        Isolation::Vm => &vm::Vm,
        // Built without skiff-vm (the guest agent): such a container
        // cannot exist here; every verb says so.
        #[cfg(not(feature = "vm"))]
        Isolation::Vm => &NoVm,
    }
}

/// The isolation a new container gets: the config's `run.skiff.isolation`
/// annotation or `vm` object, else the runtime's default.
pub fn choose(spec: &Spec, default: Option<&str>) -> Isolation {
    #[cfg(feature = "vm")]
    if skiff_vm::wants_vm(spec, default) {
        return Isolation::Vm;
    }
    let _ = (spec, default);
    Isolation::Namespace
}

#[cfg(not(feature = "vm"))]
struct NoVm;

#[cfg(not(feature = "vm"))]
impl NoVm {
    fn err<T>(&self) -> Result<T> {
        Err(crate::Error::Config(
            "VM isolation is not built into this skiff (feature `vm`)".into(),
        ))
    }
}

#[cfg(not(feature = "vm"))]
impl Isolator for NoVm {
    fn create(
        &self,
        _: &Runtime,
        _: &CreateOptions,
        _: PathBuf,
        _: Spec,
        _: PathBuf,
    ) -> Result<Container> {
        self.err()
    }
    fn status(&self, _: &Runtime, _: &Container, running: Status) -> Status {
        running
    }
    fn start(&self, _: &Runtime, _: &Container) -> Result<()> {
        self.err()
    }
    fn kill(&self, _: &Runtime, _: &Container, _: i32, _: bool) -> Result<()> {
        self.err()
    }
    fn stop(&self, _: &Runtime, _: &Container) {}
    fn delete(&self, _: &Runtime, _: &Container) -> Result<()> {
        Ok(())
    }
    fn pause(&self, _: &Runtime, _: &Container) -> Result<()> {
        self.err()
    }
    fn resume(&self, _: &Runtime, _: &Container) -> Result<()> {
        self.err()
    }
    fn pids(&self, _: &Runtime, _: &Container) -> Result<Vec<i32>> {
        self.err()
    }
    fn stats(&self, _: &Runtime, _: &Container) -> Result<skiff_cgroups::Stats> {
        self.err()
    }
    fn update(&self, _: &Runtime, _: &Container, _: &LinuxResources) -> Result<()> {
        self.err()
    }
    fn exec(&self, _: &Runtime, _: &Container, _: &Process, _: &ExecOptions) -> Result<Exec> {
        self.err()
    }
}

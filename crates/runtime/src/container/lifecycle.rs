//! The lifecycle verbs of a [`Container`]: each checks the state, calls the
//! container's isolation once (see [`crate::isolation`]) and runs the
//! spec's hooks around it.

use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Process};

use super::{state_json, Container, ExecOptions, Runtime};
use crate::error::Context;
use crate::hooks;
use crate::isolation::{self, Exec, Isolator};
use crate::state::{self, Status};
use crate::{Error, Result};

/// Signals the container's init (its pid was checked against its start
/// time when the state was loaded): what `kill` does without `--all`.
pub fn kill_init(rt: &Runtime, c: &Container, sig: i32) -> Result<()> {
    let status = c.status(rt);
    if matches!(status, Status::Stopped | Status::Creating) || c.saved.pid <= 0 {
        return Err(c.bad_state(status, "container not running"));
    }
    // SAFETY: kill with a pid we verified (start time) to be the init
    // (never 0 or negative: those name process groups).
    if unsafe { libc::kill(c.saved.pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("kill {} {sig}", c.saved.pid));
    }
    Ok(())
}

/// SIGKILLs the init and waits (up to 10 s) for it to be gone, reaping it
/// if it is our child: the common part of a forced delete.
pub fn kill_init_and_wait(c: &Container) {
    if c.saved.pid > 0 && c.saved.init_alive() {
        // SAFETY: kill of the verified init pid (positive: 0 and
        // negative pids name process groups).
        unsafe { libc::kill(c.saved.pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.saved.init_alive() && Instant::now() < deadline {
        // SAFETY: reaps the init if it happens to be our child
        // (init_alive is false for pids <= 0).
        unsafe { libc::waitpid(c.saved.pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Container {
    /// The container's isolation.
    fn isolator(&self) -> &'static dyn Isolator {
        isolation::of(self.saved.isolation)
    }

    /// The sandbox (pod) the container belongs to.
    pub fn sandbox(&self) -> isolation::Sandbox {
        self.isolator().sandbox(self)
    }

    /// Whether [`Container::pids`] are host pids (a VM container reports
    /// the guest's).
    pub fn host_pids(&self) -> bool {
        self.isolator().host_pids()
    }

    /// Whether [`Container::exec`] runs the process to completion itself,
    /// relaying stdio (VM isolation), rather than spawning it on the host.
    pub fn exec_relays_stdio(&self) -> bool {
        self.isolator().exec_relays_stdio()
    }

    /// Current status (including `paused`). A container still marked
    /// creating whose `create` is gone (it held the lock throughout: we
    /// hold it now, or nobody does) is stopped.
    pub fn status(&self, rt: &Runtime) -> Status {
        let s = self.saved.base_status(&self.dir, self.creator_gone());
        if s != Status::Running {
            return s;
        }
        self.isolator().status(rt, self, s)
    }

    /// `start`: lets the created container's process exec the user program,
    /// then runs poststart hooks.
    pub fn start(&mut self, rt: &Runtime) -> Result<()> {
        let status = self.status(rt);
        if status != Status::Created {
            return Err(self.bad_state(status, "cannot start a container that is not created"));
        }
        self.isolator().start(rt, self)?;
        let _ = std::fs::remove_file(self.dir.join(state::EXEC_FIFO));
        self.poststart(rt)
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
        self.isolator().kill(rt, self, sig, all)
    }

    /// `delete`: removes a stopped container (or, with `force`, kills it first).
    pub fn delete(self, rt: &Runtime, force: bool) -> Result<()> {
        let status = self.status(rt);
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
            self.isolator().stop(rt, &self);
        }
        self.isolator().delete(rt, &self)?;
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
        self.isolator().pause(rt, self)
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, rt: &Runtime) -> Result<()> {
        let status = self.status(rt);
        if status != Status::Paused {
            return Err(self.bad_state(status, "cannot resume a container that is not paused"));
        }
        self.isolator().resume(rt, self)
    }

    /// Pids of every process in the container (see [`Container::host_pids`]).
    pub fn pids(&self, rt: &Runtime) -> Result<Vec<i32>> {
        self.isolator().pids(rt, self)
    }

    /// Resource usage (runc `events --stats` data).
    pub fn stats(&self, rt: &Runtime) -> Result<skiff_cgroups::Stats> {
        self.isolator().stats(rt, self)
    }

    /// OOM kills so far in the container's cgroup.
    pub fn oom_kills(&self, rt: &Runtime) -> Result<u64> {
        Ok(self.cgroup(rt)?.oom_kill_count()?)
    }

    /// `update`: applies new resources.
    pub fn update(&mut self, rt: &Runtime, res: &LinuxResources) -> Result<()> {
        skiff_cgroups::validate(res).map_err(|e| Error::Config(format!("resources: {e}")))?;
        let status = self.status(rt);
        if status == Status::Stopped {
            return Err(self.bad_state(status, "cannot update a stopped container"));
        }
        self.isolator().update(rt, self, res)
    }

    /// `exec`: starts `process` inside the running container: a host
    /// process about to exec ([`Exec::Spawned`], namespace isolation), or
    /// run by the isolation itself ([`Exec::Done`], a VM).
    pub fn exec(&self, rt: &Runtime, process: &Process, o: &ExecOptions) -> Result<Exec> {
        let status = self.status(rt);
        // Paused: the caller decides (runc's --ignore-paused); the process
        // joins the frozen cgroup and runs once the container is resumed.
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(self.bad_state(status, "cannot exec in a container that is not running"));
        }
        self.isolator().exec(rt, self, process, o)
    }
}

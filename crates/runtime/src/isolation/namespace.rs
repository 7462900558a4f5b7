//! Namespace isolation (runc's model): the container's processes run on the
//! host in their own Linux namespaces and cgroups. Creation and exec are
//! `container::create` and `container::exec`; the other verbs act on the
//! init process, the exec fifo and the cgroup here.

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use super::{Exec, Isolator};
use crate::container::{self, create, kill_init, kill_init_and_wait, unmount_under};
use crate::error::Context;
use crate::state::{self, Status};
use crate::{Container, CreateOptions, Error, ExecOptions, Result, Runtime};

/// The namespace isolation.
pub(super) struct Namespace;

/// Rootless without a cgroup of its own: the processes in the init's pid
/// namespace (None when the container shares this process's).
fn pidns_pids(c: &Container) -> Option<Vec<i32>> {
    if !c.saved.init_alive() {
        return Some(Vec::new());
    }
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.saved.pid)).ok()?;
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

impl Isolator for Namespace {
    fn create(
        &self,
        rt: &Runtime,
        o: &CreateOptions,
        bundle: PathBuf,
        spec: Spec,
        rootfs: PathBuf,
    ) -> Result<Container> {
        create::create(rt, o, bundle, spec, rootfs)
    }

    fn status(&self, rt: &Runtime, c: &Container, running: Status) -> Status {
        if c.cgroup(rt).ok().and_then(|cg| cg.is_frozen().ok()) == Some(true) {
            return Status::Paused;
        }
        running
    }

    /// Reads the byte the init writes to the exec fifo once `start` opened
    /// it: from then on the init execs the user program.
    fn start(&self, _: &Runtime, c: &Container) -> Result<()> {
        let fifo_path = c.dir().join(state::EXEC_FIFO);
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
                Ok(1) => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                    if !c.saved.init_alive() {
                        let _ = std::fs::remove_file(&fifo_path);
                        return Err(Error::Init("container init exited before start".into()));
                    }
                }
                Err(e) => return Err(e).ctx(|| "reading exec fifo"),
            }
        }
    }

    fn kill(&self, rt: &Runtime, c: &Container, sig: i32, all: bool) -> Result<()> {
        if !all {
            return kill_init(rt, c, sig);
        }
        let status = c.status(rt);
        if status == Status::Stopped && sig != libc::SIGKILL {
            return Err(c.bad_state(status, "container not running"));
        }
        let cg = c.cgroup(rt)?;
        if (c.saved.rootless || rt.rootless) && cg.pids().is_err() {
            // No cgroup (rootless): signal the init's pid namespace.
            let pids = pidns_pids(c).ok_or_else(|| {
                Error::Other(
                    "kill --all: the container has neither a cgroup nor a pid namespace of its own"
                        .into(),
                )
            })?;
            for p in pids {
                // SAFETY: kill of a process in the container's pid namespace.
                unsafe { libc::kill(p, sig) };
            }
            return Ok(());
        }
        Ok(cg.kill_all(sig)?)
    }

    fn stop(&self, rt: &Runtime, c: &Container) {
        if let Ok(cg) = c.cgroup(rt) {
            let _ = cg.thaw();
            let _ = cg.kill_all(libc::SIGKILL);
        }
        kill_init_and_wait(c);
    }

    fn delete(&self, rt: &Runtime, c: &Container) -> Result<()> {
        if let Ok(cg) = c.cgroup(rt) {
            destroy_cgroup(cg.as_ref(), std::time::Duration::from_secs(20))?;
        }
        if !create::has_mount_ns(&c.saved.spec) {
            unmount_under(&c.saved.rootfs);
        }
        Ok(())
    }

    fn pause(&self, rt: &Runtime, c: &Container) -> Result<()> {
        Ok(c.cgroup(rt)?.freeze()?)
    }

    fn resume(&self, rt: &Runtime, c: &Container) -> Result<()> {
        Ok(c.cgroup(rt)?.thaw()?)
    }

    fn pids(&self, rt: &Runtime, c: &Container) -> Result<Vec<i32>> {
        match c.cgroup(rt)?.pids() {
            Err(e) if c.saved.rootless || rt.rootless => pidns_pids(c).ok_or(e.into()),
            r => Ok(r?),
        }
    }

    fn stats(&self, rt: &Runtime, c: &Container) -> Result<skiff_cgroups::Stats> {
        Ok(c.cgroup(rt)?.stats()?)
    }

    fn update(&self, rt: &Runtime, c: &Container, res: &LinuxResources) -> Result<()> {
        Ok(c.cgroup(rt)?.apply(res)?)
    }

    fn exec(
        &self,
        rt: &Runtime,
        c: &Container,
        process: &Process,
        o: &ExecOptions,
    ) -> Result<Exec> {
        container::exec::exec(c, rt, process, o).map(Exec::Spawned)
    }
}

/// Kills what is left in the container's cgroups and removes them. A
/// killed process stays in its cgroup until its exit is done, which can
/// take seconds under load (tearing down a mount namespace waits for an
/// RCU grace period): busy cgroups are retried for up to `limit`.
fn destroy_cgroup(cg: &dyn skiff_cgroups::Manager, limit: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cg.pids().is_ok_and(|p| !p.is_empty()) {
            let _ = cg.kill_all(libc::SIGKILL);
        }
        match cg.destroy() {
            Err(skiff_cgroups::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return Ok(r?),
        }
    }
}

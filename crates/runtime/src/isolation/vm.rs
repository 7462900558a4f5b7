//! VM isolation: a thin adapter over skiff-vm. The VM boots with the
//! container's bundle and the guest agent builds the container inside it
//! (with this same library); the recorded pid is the host-side shim, which
//! lives exactly as long as the container.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxResources, Process, Spec};

use super::{Exec, Isolator};
use crate::error::Context;
use crate::state::{self, Isolation, Saved, Status};
use crate::{Container, CreateOptions, ExecOptions, Result, Runtime};

/// The VM isolation.
pub(super) struct Vm;

/// Removes a half-created VM container (its VM, then its state directory)
/// unless disarmed.
struct Guard {
    dir: Option<PathBuf>,
    pid: i32,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill + waitpid on our own child (the shim).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = skiff_vm::delete(&dir);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The guest agent's stats of a VM container (`memory`, `pids` in the
/// guest, `frozen`).
fn vm_stats(c: &Container) -> Result<serde_json::Value> {
    Ok(skiff_vm::stats(c.dir())?)
}

impl Isolator for Vm {
    fn create(
        &self,
        rt: &Runtime,
        o: &CreateOptions,
        bundle: PathBuf,
        spec: Spec,
        rootfs: PathBuf,
    ) -> Result<Container> {
        let (dir, lock) = rt.root().create_dir(o.id)?;
        let mut guard = Guard {
            dir: Some(dir.clone()),
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
            rootless: rt.rootless,
            isolation: Isolation::Vm,
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
            debug: rt.debug,
        })?;
        guard.pid = pid;
        // The exec fifo's presence marks `created` for VM containers too.
        std::fs::write(dir.join(state::EXEC_FIFO), b"").ctx(|| "writing created marker")?;
        saved.pid = pid;
        saved.pid_start = state::proc_start(pid).map(|s| s.0).unwrap_or(0);
        saved.creating = false;
        state::write_saved(&dir, &saved)?;
        if let Some(p) = o.pid_file {
            crate::container::write_pid_file(p, pid)?;
        }
        guard.dir = None;
        guard.pid = 0;
        Ok(Container::from_parts(saved, dir, lock))
    }

    fn status(&self, _: &Runtime, c: &Container, running: Status) -> Status {
        match vm_stats(c).ok().and_then(|v| v["frozen"].as_bool()) {
            Some(true) => Status::Paused,
            _ => running,
        }
    }

    fn start(&self, _: &Runtime, c: &Container) -> Result<()> {
        skiff_vm::start(c.dir())?;
        Ok(())
    }

    fn kill(&self, rt: &Runtime, c: &Container, sig: i32, _all: bool) -> Result<()> {
        // Every process of the container dies with the VM: `--all` signals
        // the shim, as without it.
        crate::container::kill_init(rt, c, sig)
    }

    fn stop(&self, _: &Runtime, c: &Container) {
        crate::container::kill_init_and_wait(c);
    }

    fn delete(&self, _: &Runtime, c: &Container) -> Result<()> {
        Ok(skiff_vm::delete(c.dir())?)
    }

    fn pause(&self, _: &Runtime, c: &Container) -> Result<()> {
        Ok(skiff_vm::pause(c.dir())?)
    }

    fn resume(&self, _: &Runtime, c: &Container) -> Result<()> {
        Ok(skiff_vm::resume(c.dir())?)
    }

    /// A VM container's processes live in the guest: its pids are the
    /// guest's (as Kata reports them).
    fn pids(&self, _: &Runtime, c: &Container) -> Result<Vec<i32>> {
        if c.saved.base_status(c.dir(), c.creator_gone()) == Status::Stopped {
            return Ok(Vec::new());
        }
        let v = vm_stats(c)?;
        Ok(v["pids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_i64())
                    .map(|p| p as i32)
                    .collect()
            })
            .unwrap_or_default())
    }

    fn host_pids(&self) -> bool {
        false
    }

    fn exec_relays_stdio(&self) -> bool {
        true
    }

    fn stats(&self, _: &Runtime, c: &Container) -> Result<skiff_cgroups::Stats> {
        let v = vm_stats(c)?;
        let mut st = skiff_cgroups::Stats::default();
        st.memory.usage.usage = v["memory"]["usage"].as_u64().unwrap_or(0);
        st.memory.usage.limit = v["memory"]["limit"].as_u64().unwrap_or(u64::MAX);
        st.pids.current = v["pids"].as_array().map_or(0, |a| a.len() as u64);
        Ok(st)
    }

    fn update(&self, rt: &Runtime, c: &Container, res: &LinuxResources) -> Result<()> {
        // The host cgroup named by the container's config (the guest's
        // resources are fixed at boot).
        Ok(c.cgroup(rt)?.apply(res)?)
    }

    fn exec(&self, _: &Runtime, c: &Container, process: &Process, o: &ExecOptions) -> Result<Exec> {
        let code = skiff_vm::exec(c.dir(), process, o.console_socket, o.detach)?;
        Ok(Exec::Done(code))
    }
}

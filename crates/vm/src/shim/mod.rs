//! The shim: the host process that stands for a VM container.
//!
//! [`launch`] forks it from the caller of `create`. The shim `setsid`s,
//! closes every inherited descriptor but stdio (so it never holds the
//! runtime's locks or a test harness's pipes), blocks signals, starts QEMU
//! in its own process group with `PR_SET_PDEATHSIG=SIGKILL` (the VMM dies
//! with the shim), connects to the agent, waits for its hello (boot
//! deadline, console log in the error), sends `create`, and reports the
//! outcome to the caller through a pipe. Then it serves:
//!
//! * a reader thread decodes agent frames: container output goes to the
//!   shim's stdout/stderr (or the terminal), responses wake their waiters,
//!   exec output is routed to the client that asked for the exec;
//! * a signal thread (`sigwait`) forwards every catchable signal to the
//!   container's process and turns SIGWINCH into a resize;
//! * a stdin thread relays the shim's stdin;
//! * a control socket (`shim.sock`) serves `start`, `exec`, `stats`.
//!
//! The shim exits with the container's exit status (128 + signal for a
//! signal death), or 255 after killing QEMU's group when the VMM dies
//! under it. Nothing in the forked child uses `std`'s stdout/stderr locks
//! (another thread of the caller may have held them at fork time).
//!
//! Modules by role: [`launch`] runs in the caller of `create`; [`server`]
//! is the shim process, [`boot`] brings its VM up (template restore or cold
//! boot) with the daemons of [`vmm`], and [`link`] is its connection to the
//! agent; [`client`] is what `start`, `exec`, `delete` and friends call;
//! [`tty`] holds the terminal and stdio relays; [`state_dir`] names the
//! files a VM container keeps.

mod boot;
mod client;
mod launch;
mod link;
mod server;
mod state_dir;
mod tty;
mod vmm;

pub(crate) use client::{control, delete, exec};
pub(crate) use launch::launch;
pub(crate) use state_dir::StateDir;

use crate::qemu::VmConfig;
use serde_json::Value;
use std::fs::{self, File};
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// Everything the shim needs.
pub(crate) struct Plan {
    pub vm: VmConfig,
    pub container_id: String,
    pub spec: Value,
    pub state_dir: StateDir,
    pub boot_timeout: Duration,
    pub request_timeout: Duration,
    pub console_socket: Option<PathBuf>,
    pub terminal: bool,
    pub debug: bool,
    /// Template key when the VM may be restored from a template.
    pub template_key: Option<String>,
    /// virtiofsd binary, when the rootfs is shared with virtio-fs.
    pub virtiofsd: Option<PathBuf>,
}

/// Raw write to a descriptor, safe to use after fork.
fn raw_write(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: the fd is borrowed for the call only; ManuallyDrop prevents closing it.
    let mut f = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    f.write_all(data)
}

fn log(msg: &str) {
    // stderr is the only place to report to.
    let _ = raw_write(2, format!("skiff-vm: {msg}\n").as_bytes());
}

fn tail(path: &Path, max: usize) -> String {
    let data = fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

fn kill_group(q: &mut Child) {
    // SAFETY: QEMU leads its own process group (setpgid in pre_exec).
    unsafe { libc::kill(-(q.id() as i32), libc::SIGKILL) };
    // The group kill above usually got it already (then kill fails
    // harmlessly); wait reaps it either way.
    let _ = q.kill();
    let _ = q.wait();
}

/// Writes one of the state directory's files (a pid, the timings); a
/// failure is logged: `delete` and the benchmarks then miss it, the
/// container itself does not.
fn write_state_file(path: &Path, data: &str) {
    if let Err(e) = crate::write_state(path, data) {
        log(&format!("write {}: {e}", path.display()));
    }
}

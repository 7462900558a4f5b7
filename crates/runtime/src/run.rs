//! `run` of a bundle: create, start, wait (forwarding signals), delete.
//!
//! What `skiff run -b BUNDLE ID` does, as a library call, so that every
//! caller (the runtime CLI, `skiff run --image` once its bundle is prepared,
//! a containerd shim in-process) runs a container the same way.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::error::Context;
use oci_spec::runtime::Process;

use crate::{container, Container, CreateOptions, Exec, ExecOptions, Result, Runtime};

/// Options of [`run`] beyond those of `create`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunOptions {
    /// Return once the container is started (exit code 0).
    pub detach: bool,
    /// A foreground container stays (stopped) until `delete`.
    pub keep: bool,
}

/// A socketpair whose far end receives the pty master: used when a terminal
/// is wanted in the foreground without a console socket.
fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair().ctx(|| "console socketpair")?;
    Ok((OwnedFd::from(a), OwnedFd::from(b)))
}

/// A foreground `run` of a `terminal: true` process relays the caller's
/// terminal: without one (no tty on stdio, no controlling terminal) fail
/// before creating anything, with runc's words, instead of starting an
/// interactive process no one can reach.
fn host_terminal() -> Result<()> {
    // SAFETY: isatty on the standard fds only reads their state.
    if [2, 1, 0].iter().any(|&fd| unsafe { libc::isatty(fd) } == 1) {
        return Ok(());
    }
    std::fs::File::open("/dev/tty").ctx(|| {
        "open /dev/tty (process.terminal is true but there is no terminal: \
         give --console-socket or set terminal to false)"
    })?;
    Ok(())
}

/// Blocks the signals `wait_forwarding` forwards (it blocks the same set
/// again), so that one arriving between start and the wait stays pending
/// and is forwarded instead of killing the runtime with the container left
/// running. The container's processes reset their mask.
pub fn block_forwarded_signals() {
    let mask = container::forwarded_signals();
    let _ = mask.thread_block();
}

/// Creates and starts container `o.id` from `o.bundle`; in the foreground,
/// waits for it (forwarding signals, proxying a terminal when the config
/// asks for one and no console socket is given) and deletes it unless
/// `r.keep`. Returns the container's exit code (0 when detached).
pub fn run(rt: &Runtime, mut o: CreateOptions, r: RunOptions) -> Result<i32> {
    // config.json is read and parsed once: `create_with` takes the result.
    let (bundle, spec) = Runtime::load_bundle(o.bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let proxy = !r.detach && o.console_socket.is_none() && o.console_conn.is_none() && terminal;
    if proxy {
        host_terminal()?;
    }
    let ours = if proxy {
        let (a, b) = console_pair()?;
        o.console_conn = Some(b);
        Some(a)
    } else {
        None
    };
    if !r.detach {
        container::set_subreaper();
    }
    let id = o.id;
    let mut c = rt.create_with(&o, bundle, spec)?;
    let master = match &ours {
        Some(sock) => {
            Some(crate::linux::console::recv_fd(sock.as_raw_fd()).ctx(|| "receiving the pty")?)
        }
        None => None,
    };
    if !r.detach {
        block_forwarded_signals();
    }
    if let Err(e) = c.start(rt) {
        let _ = c.delete(rt, true);
        return Err(e);
    }
    if r.detach {
        return Ok(0);
    }
    let pid = c.pid();
    drop(c);
    let code = container::wait_forwarding(pid, master)?;
    if !r.keep {
        if let Ok(c) = rt.load(id) {
            c.delete(rt, true)?;
        }
    }
    Ok(code)
}

/// Runs `process` in container `c` as `skiff exec` does: in the foreground
/// (unless `o.detach`) it waits for the process, forwarding signals and
/// proxying a terminal when `process.terminal` is set and no console socket
/// is given. Returns the process's exit code (0 when detached).
pub fn exec(rt: &Runtime, c: Container, process: &Process, o: &ExecOptions) -> Result<i32> {
    if c.exec_relays_stdio() {
        return match c.exec(rt, process, o)? {
            Exec::Done(code) | Exec::Spawned(code) => Ok(code),
        };
    }
    let proxy = !o.detach
        && o.console_socket.is_none()
        && o.console_conn.is_none()
        && process.terminal().unwrap_or(false);
    // The pty master comes back over a socketpair: no path on disk that
    // another user could create first or swap, nothing left behind.
    let (ours, theirs) = if proxy {
        let (a, b) = console_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    if !o.detach {
        container::set_subreaper();
        block_forwarded_signals();
    }
    let opts = ExecOptions {
        console_conn: theirs.as_ref().map(|t| t.as_fd()).or(o.console_conn),
        ..o.clone()
    };
    let res = c.exec(rt, process, &opts);
    drop(theirs);
    let res = res?;
    let master = match &ours {
        Some(sock) => {
            Some(crate::linux::console::recv_fd(sock.as_raw_fd()).ctx(|| "receiving the pty")?)
        }
        None => None,
    };
    let pid = match res {
        Exec::Spawned(pid) => pid,
        Exec::Done(code) => return Ok(code),
    };
    drop(c);
    if o.detach {
        return Ok(0);
    }
    container::wait_forwarding(pid, master)
}

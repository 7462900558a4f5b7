//! The clients of a running shim: one request over its control socket
//! (`start`, `stats`, `pause`, `resume`), `exec` (which then relays the
//! process's stdio), and `delete` (stops whatever is left of the VM and
//! removes the state files).

use super::state_dir::StateDir;
use super::tty::{raw_pty, relay, send_fd};
use crate::proto::{self, Msg, Request};
use crate::{io_err, Error};
use serde_json::Value;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

pub(super) fn connect_control(state_dir: &Path) -> Result<UnixStream, Error> {
    let path = StateDir::new(state_dir).control_socket();
    UnixStream::connect(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::NotFound(format!(
            "VM container shim socket {} (container stopped?)",
            path.display()
        )),
        _ => io_err(&format!("connect {}", path.display()), e),
    })
}

/// One request to the shim's control socket.
pub(crate) fn control(state_dir: &Path, req: Request) -> Result<Value, Error> {
    let mut conn = connect_control(state_dir)?;
    conn.set_read_timeout(Some(Duration::from_secs(90))).ok();
    proto::write_frame(&mut conn, &Msg::Request { id: 1, req }, &[])
        .map_err(|e| io_err("send to shim", e))?;
    match proto::read_frame(&mut conn).map_err(|e| io_err("read from shim", e))? {
        Some(proto::Frame {
            msg: Msg::Response { err: Some(e), .. },
            ..
        }) => Err(Error::Agent(e)),
        Some(proto::Frame {
            msg: Msg::Response { ok, .. },
            ..
        }) => Ok(ok.unwrap_or(Value::Null)),
        _ => Err(Error::Agent("shim closed the control connection".into())),
    }
}

/// Runs an exec; see [`crate::exec`].
pub(crate) fn exec(
    state_dir: &Path,
    process: Value,
    console_socket: Option<&Path>,
    detach: bool,
) -> Result<i32, Error> {
    let terminal = process["terminal"].as_bool().unwrap_or(false);
    if terminal && console_socket.is_none() {
        return Err(Error::Spec {
            field: "process.terminal".into(),
            message: "set, but no console socket given".into(),
        });
    }
    let mut conn = connect_control(state_dir)?;
    proto::write_frame(
        &mut conn,
        &Msg::Request {
            id: 1,
            req: Request::Exec { process },
        },
        &[],
    )
    .map_err(|e| io_err("send to shim", e))?;
    match proto::read_frame(&mut conn).map_err(|e| io_err("read from shim", e))? {
        Some(proto::Frame {
            msg: Msg::Response { err: Some(e), .. },
            ..
        }) => return Err(Error::Agent(e)),
        Some(proto::Frame {
            msg: Msg::Response { .. },
            ..
        }) => {}
        _ => return Err(Error::Agent("shim closed the control connection".into())),
    }
    let tty = match (terminal, console_socket) {
        (true, Some(sock)) => {
            let (master, slave) = raw_pty().map_err(|e| io_err("openpty", e))?;
            send_fd(sock, master.as_raw_fd(), "/dev/ptmx")
                .map_err(|e| io_err(&format!("console socket {}", sock.display()), e))?;
            Some(slave)
        }
        _ => None,
    };
    if !detach {
        return Ok(relay(conn, tty));
    }
    // SAFETY: fork a relay that lives as long as the exec'd process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io_err("fork exec relay", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: child: detach into its own session, relay, then _exit.
        unsafe {
            libc::setsid();
            let code = relay(conn, tty);
            libc::_exit(code);
        }
    }
    Ok(pid)
}

pub(super) fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub(super) fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// See [`crate::delete`].
pub(crate) fn delete(state_dir: &Path) -> Result<(), Error> {
    let sd = StateDir::new(state_dir);
    let channel = sd.agent_socket();
    if let Some(vmm) = read_pid(&sd.vmm_pid()) {
        // Only kill the pid if it is still our QEMU (pids get reused).
        if cmdline_mentions(vmm, &channel) {
            kill_group_of(vmm);
        }
    }
    if let Some(shim) = read_pid(&sd.shim_pid()) {
        if is_session_leader(shim) {
            // SAFETY: plain kill of the shim we started.
            unsafe { libc::kill(shim, libc::SIGKILL) };
            wait_gone(shim);
        }
    }
    // virtiofsd and vhost-device-vsock: killed (with their process group)
    // only if the recorded pid still names this container's socket.
    for (pid_file, sock) in [
        (sd.virtiofsd_pid(), sd.virtiofs_socket()),
        (sd.vsock_pid(), sd.vsock_vhost_socket()),
    ] {
        if let Some(v) = read_pid(&pid_file).filter(|v| cmdline_mentions(*v, &sock)) {
            kill_group_of(v);
        }
    }
    // QEMU is gone: the host bind mounts of file sources can go too.
    crate::unshare_files(state_dir);
    sd.remove_all();
    Ok(())
}

/// Whether the command line of `pid` mentions `path` (a pid we recorded
/// may have been reused by another process since).
fn cmdline_mentions(pid: i32, path: &Path) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&*path.to_string_lossy())
}

/// SIGKILLs the process group led by `pid` (and `pid`), then waits until
/// it is gone (at most 5 s).
fn kill_group_of(pid: i32) {
    // SAFETY: plain kill(2) of a group (and its leader) this container
    // started; the callers checked that the pid is still ours.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    wait_gone(pid);
}

/// Whether `pid` is alive and leads its own session: the shim `setsid`s,
/// so its session id is its pid.
fn is_session_leader(pid: i32) -> bool {
    if !pid_alive(pid) || fs::read_link(format!("/proc/{pid}/cwd")).is_err() {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    fields.get(4).and_then(|s| s.parse::<i32>().ok()) == Some(pid)
}

pub(super) fn wait_gone(pid: i32) {
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(10));
    }
}

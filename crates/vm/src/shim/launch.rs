//! The caller's side of `create`: forks the shim and waits for its report
//! (the container created, or why not).

use super::server::shim_main;
use super::state_dir::remove_stale;
use super::vmm::channel_plan;
use super::{tail, write_state_file, Plan};
use crate::{io_err, Error};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

/// Forks the shim and waits until the container is created (or failed).
pub(crate) fn launch(plan: Plan) -> Result<i32, Error> {
    let mut fds = [0; 2];
    // SAFETY: valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io_err("pipe", io::Error::last_os_error()));
    }
    // SAFETY: fresh fds owned by us.
    let (mut report_r, report_w) =
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let chan = channel_plan(&plan)?;
    if plan.debug {
        eprintln!("skiff-vm: channel={}", chan.describe);
    }
    remove_stale(&plan.vm.channel);
    remove_stale(&plan.state_dir.control_socket());
    // SAFETY: fork; the child runs the shim and never returns into the caller's code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io_err("fork shim", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(report_r);
        let code = shim_main(&plan, &chan, report_w);
        // SAFETY: leave without running the caller's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    drop(report_w);
    write_state_file(&plan.state_dir.shim_pid(), &pid.to_string());
    // A failed template restore falls back to a cold boot: two boot deadlines.
    let deadline = 2 * plan.boot_timeout + plan.request_timeout + Duration::from_secs(15);
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let mut pfd = libc::pollfd {
            fd: report_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r == 0 {
            kill_and_reap(pid);
            return Err(Error::Timeout(format!(
                "shim did not report within {deadline:?}"
            )));
        }
        match report_r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read shim report", e)),
        }
    }
    let report: Value = serde_json::from_slice(&buf)
        .unwrap_or(json!({"error": "shim died without a report", "kind": "boot"}));
    if report["ok"].as_bool() == Some(true) {
        return Ok(pid);
    }
    kill_and_reap(pid);
    let msg = report["error"]
        .as_str()
        .unwrap_or("unknown error")
        .to_owned();
    Err(match report["kind"].as_str() {
        Some("boot") => Error::Boot {
            reason: msg,
            console_path: plan.vm.console_log.clone(),
            console: tail(&plan.vm.console_log, 4096),
        },
        _ => Error::Agent(msg),
    })
}

pub(super) fn kill_and_reap(pid: i32) {
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

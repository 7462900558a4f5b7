//! Shared helpers for the seccomp integration tests: fork a child, load a filter in
//! it, run an async-signal-safe body, and observe the result from the outside.
#![allow(dead_code)]

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use skiff_seccomp::Filter;

/// Exit code of a child whose filter failed to load.
pub const LOAD_FAILED: i32 = 120;

/// Parses a `linux.seccomp` JSON value into the typed oci-spec form.
pub fn typed(v: serde_json::Value) -> oci_spec::runtime::LinuxSeccomp {
    serde_json::from_value(v).expect("valid LinuxSeccomp JSON")
}

/// Compiles a `linux.seccomp` JSON value through the typed API, as the runtime does.
pub fn compile(v: serde_json::Value) -> Filter {
    skiff_seccomp::compile(&typed(v)).expect("profile compiles")
}

/// Current errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

/// Result of a raw libc call as "0 on success, errno on failure".
pub fn rc(r: libc::c_long) -> i32 {
    if r < 0 {
        errno()
    } else {
        0
    }
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// Forks; the child disables core dumps, sets no_new_privs, loads `filter`, runs
/// `body` (which must be async-signal-safe: raw libc calls only, no allocation) and
/// `_exit`s with its return value. Returns the child's pid, not yet reaped.
pub fn spawn(filter: &Filter, body: impl FnOnce(Option<std::os::fd::OwnedFd>) -> i32) -> Pid {
    // SAFETY: the child only performs async-signal-safe operations (raw syscalls via
    // libc and Filter::load, which makes one seccomp(2) call) and ends in _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: plain syscalls with valid arguments.
                unsafe {
                    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                }
                match filter.load() {
                    Ok(fd) => body(fd),
                    Err(_) => LOAD_FAILED,
                }
            };
            // SAFETY: terminating the child without running the parent's atexit hooks.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    }
}

/// Waits for `pid` for at most `limit`, killing it when it takes longer.
pub fn wait(pid: Pid, limit: Duration) -> WaitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::StillAlive => {
                if Instant::now() > deadline {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    panic!("child {pid} did not finish within {limit:?}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            s => return s,
        }
    }
}

/// Runs `body` in a filtered child and returns how it ended.
pub fn run(filter: &Filter, body: impl FnOnce() -> i32) -> WaitStatus {
    let pid = spawn(filter, |_| body());
    wait(pid, Duration::from_secs(20))
}

/// Runs `body` in a filtered child and returns its exit code (panics on a signal).
pub fn exit_code(filter: &Filter, body: impl FnOnce() -> i32) -> i32 {
    match run(filter, body) {
        WaitStatus::Exited(_, LOAD_FAILED) => panic!("filter failed to load in the child"),
        WaitStatus::Exited(_, c) => c,
        other => panic!("child ended with {other:?}"),
    }
}

//! The agent's log: lines on the guest console (the host keeps the console
//! log and prints its tail when a boot fails), debug lines stamped with the
//! guest's monotonic clock.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug lines on or off (`skiff.debug` on the kernel command line,
/// or the host's hello).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Writes `msg` to the console.
pub fn log(msg: &str) {
    // Nowhere to report a console write error: the console is the report.
    let _ = writeln!(io::stderr(), "skiff-agent: {msg}");
}

/// The guest's monotonic clock in ms.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Logs `msg` in debug mode, stamped with the guest's monotonic clock in ms
/// (continuous across a template save and restore).
pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        log(&format!("[{}] {msg}", monotonic_ms()));
    }
}

/// Time since the guest kernel booted, in ms (`/proc/uptime`).
pub fn uptime_ms() -> u64 {
    let s = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = s
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    (secs * 1000.0) as u64
}

//! The guest's clock and RNG, set from the host's hello. A guest restored
//! from a template wakes with the template's clock and RNG state; a cold
//! guest has no battery-backed clock worth trusting. So the hello brings
//! the wall clock and a fresh seed, and container code waits for the
//! reseed ([`reseeded`]) before its first `execve`.

use crate::log::{log, set_debug};
use crate::pool;
use crate::spec::unhex;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Applies the host facts of its hello: verbosity, wall clock, RNG seed.
pub fn apply_host_facts(host: &Value) {
    if host["debug"].as_bool() == Some(true) {
        set_debug(true);
    }
    if let Some(ns) = host["time_ns"].as_u64().filter(|n| *n > 0) {
        let ts = libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: clock_settime with a valid timespec; we are root in our VM.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } < 0 {
            log(&format!("set clock: {}", io::Error::last_os_error()));
        }
    }
    match host["seed"].as_str().and_then(unhex) {
        // Off the hello's path (~30 ms under emulation); `start` and `exec`,
        // the first execve of container code, wait for it.
        // At SCHED_IDLE: with one vCPU it runs while the create path waits
        // (rootfs mount, host round trips) instead of ahead of it.
        Some(seed) => pool::spawn(move || {
            let idle = set_sched_idle(true);
            if let Err(e) = reseed(&seed) {
                log(&format!("reseed RNG: {e}"));
            }
            reseeded().set();
            if idle {
                set_sched_idle(false);
            }
        }),
        None => reseeded().set(),
    }
}

/// Moves the calling thread to `SCHED_IDLE` (or back to `SCHED_OTHER`).
fn set_sched_idle(on: bool) -> bool {
    let p = libc::sched_param { sched_priority: 0 };
    let policy = if on {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_setscheduler(0: the calling thread) with a valid param.
    unsafe { libc::sched_setscheduler(0, policy, &p) == 0 }
}

/// A flag threads can wait for.
pub struct Flag {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Flag {
    fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_all();
    }

    /// Waits until the flag is set, at most `max` (then goes on: a late
    /// reseed must not hang the container).
    pub fn wait(&self, max: Duration) {
        let g = self.set.lock().unwrap();
        // Timing out is the intended outcome after `max`; the guard is
        // dropped either way.
        let _ = self.cv.wait_timeout_while(g, max, |s| !*s);
    }
}

/// Set once the RNG has been reseeded from the host's hello.
pub fn reseeded() -> &'static Flag {
    static F: OnceLock<Flag> = OnceLock::new();
    F.get_or_init(|| Flag {
        set: Mutex::new(false),
        cv: Condvar::new(),
    })
}

/// Credits `seed` to the kernel's input pool (RNDADDENTROPY) and forces a
/// reseed of the CRNG (RNDRESEEDCRNG), so clones of one template do not
/// share random streams.
fn reseed(seed: &[u8]) -> io::Result<()> {
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203; // _IOW('R', 3, int[2])
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207; // _IO('R', 7)
    let f = OpenOptions::new().write(true).open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; u32 buf[]; }
    let mut info = Vec::with_capacity(8 + seed.len());
    info.extend_from_slice(&((seed.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(seed.len() as i32).to_ne_bytes());
    info.extend_from_slice(seed);
    // SAFETY: the buffer holds a rand_pool_info header followed by buf_size bytes.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Helpers shared by the integration tests: root check, unique names, child
//! processes parked on a pipe until they have been put into a cgroup.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use skiff_cgroups::{Hierarchy, Manager};

/// True when running as root; otherwise prints the SKIP reason.
pub fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: {test}: needs root to create cgroups");
        return false;
    }
    true
}

/// A name unique to this process and call.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "skifftest-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `sh -c script` with `read _` prepended: the child blocks until
/// [`go`] writes a line, so the test can put it into a cgroup first.
pub fn parked(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read _; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh")
}

/// Lets a [`parked`] child go on.
pub fn go(c: &mut Child) {
    let mut stdin = c.stdin.take().expect("stdin");
    stdin.write_all(b"\n").expect("write to child");
}

/// The directory of `m` in the hierarchy carrying v1 controller `ctrl`, or
/// the cgroup2 directory when no v1 hierarchy has it.
pub fn dir_of(m: &dyn Manager, ctrl: &str) -> PathBuf {
    let hs = m.hierarchies();
    hs.iter()
        .find(|h| h.version == 1 && h.controllers.split(',').any(|c| c == ctrl))
        .or_else(|| hs.iter().find(|h| h.version == 2))
        .map(|h: &Hierarchy| h.path.clone())
        .expect("hierarchy")
}

pub fn read(p: impl Into<PathBuf>) -> String {
    let p = p.into();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// utime+stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = read(format!("/proc/{pid}/stat"));
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Waits until `cond` holds or `secs` pass.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

pub fn res(json: &str) -> skiff_cgroups::LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

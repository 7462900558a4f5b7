//! The driver harness of the skiff-vm integration tests (tests/vm.rs,
//! crates/vm/tests/vsock.rs): a VM's shim inherits the caller's stdio, so
//! each VM runs under a *driver*, the test binary re-executed with the
//! test's driver variable set, whose stdout/stderr go to files. Included
//! through `#[path]`.

use serde_json::{json, Value};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Deletes the VM of a test even when an assertion fails first.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = skiff_vm::delete(&self.0);
    }
}

/// Runs the driver test `driver` (its name for `--exact`) with `env` set to
/// the VM's configuration, for one VM of `bundle` with state in
/// `dir/state`, and returns the `result.json` it wrote; the VM is deleted
/// when the driver is done. A hung driver is killed after 5 minutes.
pub fn drive(dir: &Path, bundle: &Path, actions: Value, driver: &str, env: &str) -> Value {
    let state = dir.join("state");
    fs::create_dir_all(&state).unwrap();
    let cfg = json!({"bundle": bundle, "state": state, "dir": dir, "actions": actions});
    let _cleanup = Cleanup(state);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", driver, "--nocapture", "--test-threads=1"])
        .env(env, cfg.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let res = fs::read_to_string(dir.join("result.json")).unwrap_or_else(|_| {
        panic!(
            "driver wrote no result; its output:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(&res).unwrap()
}

/// Points `fd` at `path` (appending); returns the saved descriptor.
pub fn redirect(fd: i32, path: &Path) -> i32 {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // SAFETY: dup/dup2 on descriptors this driver process owns.
    unsafe {
        let saved = libc::dup(fd);
        libc::dup2(f.as_raw_fd(), fd);
        saved
    }
}

/// Undoes [`redirect`].
pub fn restore(fd: i32, saved: i32) {
    // SAFETY: restores a descriptor saved by `redirect`.
    unsafe {
        libc::dup2(saved, fd);
        libc::close(saved);
    }
}

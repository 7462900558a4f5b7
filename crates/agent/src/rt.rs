//! Container setup with `skiff-runtime` (cargo feature `runtime`).
//!
//! The guest builds the container with the same library as a namespace
//! container on the host, so spec semantics (caps, seccomp, rlimits,
//! namespaces, cgroups, devices) are written once. The rootfs shared by the
//! host is mounted by the agent; the bundle is a config.json written under
//! `/run/skiff/bundle` whose `root.path` points at it. `no_pivot` is set: an
//! initramfs root cannot be `pivot_root`ed.
//!
//! The runtime's processes inherit the caller's stdio, so [`with_stdio`]
//! swaps the agent's fds 0-2 for the container's pipes around the call
//! (requests are serialized by a mutex).

use crate::container::Pending;
use serde_json::Value;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;
use std::sync::Mutex;

const STATE_ROOT: &str = "/run/skiff/state";
const BUNDLE: &str = "/run/skiff/bundle";

static STDIO: Mutex<()> = Mutex::new(());

fn rt_err(e: skiff_runtime::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Runs `f` with the agent's stdio replaced by fresh pipes; returns the
/// host-facing ends (stdin writer, stdout reader, stderr reader).
fn with_stdio<T>(f: impl FnOnce() -> io::Result<T>) -> io::Result<(T, File, File, File)> {
    let _g = STDIO.lock().unwrap();
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let child_ends: [RawFd; 3] = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    let mut saved = [-1; 3];
    // SAFETY: fcntl/dup2 on descriptors we own; restored below.
    unsafe {
        for (i, s) in saved.iter_mut().enumerate() {
            *s = libc::fcntl(i as RawFd, libc::F_DUPFD_CLOEXEC, 10);
            libc::dup2(child_ends[i], i as RawFd);
        }
    }
    let r = f();
    // SAFETY: restore the saved descriptors.
    unsafe {
        for (i, s) in saved.iter().enumerate() {
            if *s >= 0 {
                libc::dup2(*s, i as RawFd);
                libc::close(*s);
            }
        }
    }
    drop((in_r, out_w, err_w));
    Ok((r?, in_w, out_r, err_r))
}

/// A container built by skiff-runtime.
pub struct RtContainer {
    rt: skiff_runtime::Runtime,
    id: String,
}

impl RtContainer {
    /// Creates the container (init blocked until [`RtContainer::start`]).
    pub fn create(id: &str, spec: &Value, rootfs: &str) -> io::Result<(Self, Pending)> {
        let mut spec = spec.clone();
        spec["root"]["path"] = Value::String(rootfs.to_owned());
        if let Some(o) = spec.as_object_mut() {
            o.remove("vm");
        }
        fs::create_dir_all(BUNDLE)?;
        fs::create_dir_all(STATE_ROOT)?;
        fs::write(Path::new(BUNDLE).join("config.json"), spec.to_string())?;
        let rt = skiff_runtime::Runtime::new(STATE_ROOT);
        let (pid, stdin, stdout, stderr) = with_stdio(|| {
            let c = rt
                .create(&skiff_runtime::CreateOptions {
                    id,
                    bundle: Path::new(BUNDLE),
                    console_socket: None,
                    pid_file: None,
                    no_pivot: true,
                    no_new_keyring: false,
                    preserve_fds: 0,
                    console_conn: None,
                })
                .map_err(rt_err)?;
            Ok(c.pid())
        })?;
        let pending = Pending::started(pid, stdin, stdout, stderr);
        Ok((
            Self {
                rt,
                id: id.to_owned(),
            },
            pending,
        ))
    }

    /// Lets the init exec the user program.
    pub fn start(&self) -> io::Result<()> {
        let mut c = self.rt.load(&self.id).map_err(rt_err)?;
        c.start(&self.rt).map_err(rt_err)
    }

    /// Starts `process` in the container.
    pub fn exec(&self, process: &Value) -> io::Result<Pending> {
        let p: oci_spec::runtime::Process = serde_json::from_value(process.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("process: {e}")))?;
        let c = self.rt.load(&self.id).map_err(rt_err)?;
        let (pid, stdin, stdout, stderr) = with_stdio(|| {
            c.exec(&self.rt, &p, &skiff_runtime::ExecOptions::default())
                .map_err(rt_err)
        })?;
        Ok(Pending::started(pid, stdin, stdout, stderr))
    }
}

//! Container setup with `skiff-runtime`.
//!
//! The guest builds the container with the same library as a namespace
//! container on the host, so spec semantics (caps, seccomp, rlimits,
//! namespaces, cgroups, devices) are written once. The rootfs shared by the
//! host is mounted by the agent; the bundle is a config.json written under
//! `/run/skiff/bundle` whose `root.path` points at it. `no_pivot` is set: an
//! initramfs root cannot be `pivot_root`ed.
//!
//! The runtime clones the container's processes without `fork(3)` and then
//! calls libc (`setgid`, `setuid`, `malloc`) in the clone. In the
//! multi-threaded agent that clone inherits glibc's view of the agent's
//! threads: `setuid` then broadcasts `SIGSETXID` to threads that do not
//! exist in the child and spins forever waiting for them (the `start` hang
//! measured earlier), and a malloc lock held by another thread at clone time
//! is never released. So every runtime call that clones (`create`, `exec`)
//! runs in a helper forked with `fork(3)` (single-threaded, glibc state
//! reset), with the container's stdio pipes as its fds 0-2. The helper
//! reports the pid and exits; the container process is reparented to the
//! agent (PID 1), whose reaper reports its exit like any other.

use crate::process::Pending;
use serde_json::Value;
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

const STATE_ROOT: &str = "/run/skiff/state";
const BUNDLE: &str = "/run/skiff/bundle";

/// The runtime's seccomp program cache in the guest.
pub fn seccomp_cache_dir() -> std::path::PathBuf {
    skiff_runtime::Runtime::new(STATE_ROOT).seccomp_cache()
}

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

/// A forked, single-threaded helper whose fds 0-2 are fresh pipes (the
/// agent keeps the other ends), reporting one line on `report`.
struct Helper {
    pid: i32,
    /// Write end of the helper's command pipe (a pre-forked helper waits
    /// for one line on it before it runs its job).
    cmd: Option<File>,
    report: File,
    stdin: File,
    stdout: File,
    stderr: File,
}

/// Forks a helper that runs `f` and reports the pid it returns. With
/// `wait_cmd`, the helper first waits for a command line (passed to `f`):
/// a helper forked ahead of time, off the critical path.
fn fork_helper(wait_cmd: bool, f: impl FnOnce(String) -> io::Result<i32>) -> io::Result<Helper> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (rep_r, mut rep_w) = pipe()?;
    let (cmd_r, cmd_w) = pipe()?;
    let t = std::time::Instant::now();
    // SAFETY: fork(3) (glibc resets its thread list and malloc locks in the
    // child); the child only runs `f` and _exits.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(io::Error::last_os_error());
    }
    if helper == 0 {
        let child_ends: [RawFd; 3] = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        for (i, fd) in child_ends.iter().enumerate() {
            // SAFETY: dup2 onto our own stdio (dup2 clears close-on-exec).
            unsafe { libc::dup2(*fd, i as RawFd) };
        }
        drop(cmd_w);
        let mut line = String::new();
        if wait_cmd {
            let _ = io::BufReader::new(cmd_r).read_line(&mut line);
        }
        let msg = match f(line.trim_end().to_owned()) {
            Ok(pid) => format!("ok {pid}\n"),
            Err(e) => format!("err {}\n", e.to_string().replace('\n', " ")),
        };
        let _ = rep_w.write_all(msg.as_bytes());
        // SAFETY: leave without running the agent's destructors or atexit.
        unsafe { libc::_exit(0) };
    }
    crate::log::debug(&format!("helper forked in {:?}", t.elapsed()));
    drop((in_r, out_w, err_w, rep_w, cmd_r));
    Ok(Helper {
        pid: helper,
        cmd: wait_cmd.then_some(cmd_w),
        report: rep_r,
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
    })
}

impl Helper {
    /// Waits for the report: the pid started and the agent's ends of the
    /// pipes (stdin writer, stdout reader, stderr reader).
    fn finish(mut self) -> io::Result<(i32, File, File, File)> {
        let t = std::time::Instant::now();
        // One line, not EOF: the container's process inherits the write end
        // and holds it until its execve.
        let mut msg = String::new();
        let read = io::BufReader::new(&mut self.report).read_line(&mut msg);
        let msg = msg.trim_end().to_owned();
        crate::log::debug(&format!("helper reported after {:?}", t.elapsed()));
        // The agent's reaper may collect the helper first; either way it is gone.
        // SAFETY: waitpid on our own child; ECHILD is fine.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
        read?;
        match msg.split_once(' ') {
            Some(("ok", pid)) => {
                let pid = pid
                    .parse()
                    .map_err(|_| io::Error::other(format!("bad helper report {msg:?}")))?;
                Ok((pid, self.stdin, self.stdout, self.stderr))
            }
            Some(("err", e)) => Err(io::Error::other(e.to_owned())),
            _ => Err(io::Error::other(format!(
                "runtime helper died without a report ({msg:?})"
            ))),
        }
    }
}

/// Runs `f` in a freshly forked helper; see [`Helper::finish`] for the result.
fn in_helper(f: impl FnOnce() -> io::Result<i32>) -> io::Result<(i32, File, File, File)> {
    fork_helper(false, |_| f())?.finish()
}

/// A helper forked ahead of time that creates the container named by its
/// command line (no terminal): the first container's `create` does not
/// pay for a fork of the agent (20-50 ms under emulation), and in a VM
/// template the fork happened before the save.
static ZYGOTE: Mutex<Option<Helper>> = Mutex::new(None);

/// Forks the create helper ahead of time (see [`ZYGOTE`]).
pub fn prefork_create_helper() -> io::Result<()> {
    let h = fork_helper(true, |id| {
        if id.is_empty() {
            return Err(io::Error::other("no container id"));
        }
        let rt = skiff_runtime::Runtime::new(STATE_ROOT);
        rt.create(&create_options(&id, None))
            .map(|c| c.pid())
            .map_err(rt_err)
    })?;
    *ZYGOTE.lock().unwrap() = Some(h);
    Ok(())
}

fn create_options(id: &str, console_conn: Option<OwnedFd>) -> skiff_runtime::CreateOptions<'_> {
    skiff_runtime::CreateOptions {
        id,
        bundle: Path::new(BUNDLE),
        console_socket: None,
        pid_file: None,
        no_pivot: true,
        no_new_keyring: false,
        preserve_fds: 0,
        console_conn,
    }
}

/// Without a mount on `/dev` the runtime would create device nodes in the
/// shared rootfs, that is in the host's bundle (and 9p refuses `mknod` of
/// devices): give the container a private tmpfs `/dev` instead.
fn add_dev_tmpfs(spec: &mut Value) {
    let has_dev = spec["mounts"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["destination"].as_str() == Some("/dev")));
    if has_dev {
        return;
    }
    let dev = serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]});
    match spec["mounts"].as_array_mut() {
        Some(m) => m.insert(0, dev),
        None => spec["mounts"] = Value::Array(vec![dev]),
    }
}

/// A container built by skiff-runtime.
pub struct RtContainer {
    rt: skiff_runtime::Runtime,
    id: String,
    /// The container loaded (state read, lock taken) ahead of `start`, see
    /// [`RtContainer::preload`].
    loaded: Mutex<Option<skiff_runtime::Container>>,
}

impl RtContainer {
    /// Creates the container (init blocked until [`RtContainer::start`]).
    /// With `process.terminal`, the runtime creates the pty in the
    /// container and sends its master over a socket pair (the runtime's
    /// `console_conn`, as `--console-socket` on the host); the pending
    /// process's stdio is then that master.
    pub fn create(id: &str, spec: &Value, rootfs: &str) -> io::Result<(Self, Pending)> {
        let mut spec = spec.clone();
        spec["root"]["path"] = Value::String(rootfs.to_owned());
        if let Some(o) = spec.as_object_mut() {
            o.remove("vm");
        }
        add_dev_tmpfs(&mut spec);
        add_devpts(&mut spec);
        let terminal = spec["process"]["terminal"].as_bool() == Some(true);
        fs::create_dir_all(BUNDLE)?;
        fs::create_dir_all(STATE_ROOT)?;
        fs::write(Path::new(BUNDLE).join("config.json"), spec.to_string())?;
        let rt = skiff_runtime::Runtime::new(STATE_ROOT);
        let console = if terminal {
            Some(UnixStream::pair()?)
        } else {
            None
        };
        let zygote = if console.is_none() && !id.contains(char::is_whitespace) {
            ZYGOTE.lock().unwrap().take()
        } else {
            None
        };
        let (pid, stdin, stdout, stderr) = match zygote {
            Some(mut z) => {
                if let Some(mut cmd) = z.cmd.take() {
                    cmd.write_all(format!("{id}\n").as_bytes())?;
                }
                z.finish()?
            }
            None => in_helper(|| {
                let conn = match &console {
                    Some((_, theirs)) => Some(OwnedFd::from(theirs.try_clone()?)),
                    None => None,
                };
                let c = rt.create(&create_options(id, conn)).map_err(rt_err)?;
                Ok(c.pid())
            })?,
        };
        let pending = match console {
            Some((mine, theirs)) => {
                drop(theirs);
                Pending::terminal(pid, recv_master(&mine)?)?
            }
            None => Pending::started(pid, stdin, stdout, stderr),
        };
        Ok((
            Self {
                rt,
                id: id.to_owned(),
                loaded: Mutex::new(None),
            },
            pending,
        ))
    }

    /// Loads the container for [`RtContainer::start`] while the guest
    /// would otherwise idle: between the create answer and the start
    /// request the host makes a round trip (the runtime's caller, the
    /// shim), and reading and parsing the state (the whole spec) under
    /// emulation is a good part of `start`.
    pub fn preload(&self) {
        let mut loaded = self.loaded.lock().unwrap();
        if loaded.is_none() {
            *loaded = self.rt.load(&self.id).ok();
        }
    }

    /// Lets the init exec the user program.
    pub fn start(&self) -> io::Result<()> {
        let preloaded = self.loaded.lock().unwrap().take();
        let mut c = match preloaded {
            Some(c) => c,
            None => self.rt.load(&self.id).map_err(rt_err)?,
        };
        c.start(&self.rt).map_err(rt_err)
    }

    /// Starts `process` in the container. With `terminal`, the runtime
    /// sends the pty master to a console socket the agent listens on.
    pub fn exec(&self, process: &Value) -> io::Result<Pending> {
        // The preloaded container holds the state lock, which the helper's
        // load would wait for.
        drop(self.loaded.lock().unwrap().take());
        let p: oci_spec::runtime::Process = serde_json::from_value(process.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("process: {e}")))?;
        let terminal = p.terminal().unwrap_or(false);
        let sock = terminal.then(|| {
            static N: AtomicU32 = AtomicU32::new(0);
            format!(
                "{STATE_ROOT}/console-{}.sock",
                N.fetch_add(1, Ordering::Relaxed)
            )
        });
        let listener = match &sock {
            Some(path) => {
                let _ = fs::remove_file(path);
                Some(UnixListener::bind(path)?)
            }
            None => None,
        };
        let r = in_helper(|| {
            let c = self.rt.load(&self.id).map_err(rt_err)?;
            c.exec(
                &self.rt,
                &p,
                &skiff_runtime::ExecOptions {
                    console_socket: sock.as_deref().map(Path::new),
                    ..Default::default()
                },
            )
            .map_err(rt_err)
        });
        if let Some(path) = &sock {
            let _ = fs::remove_file(path);
        }
        let (pid, stdin, stdout, stderr) = r?;
        match listener {
            Some(l) => {
                // The runtime connected and sent the master before the exec
                // reported: the connection waits in the backlog.
                l.set_nonblocking(true)?;
                let (conn, _) = l.accept().map_err(|e| {
                    io::Error::new(e.kind(), format!("console socket: no connection: {e}"))
                })?;
                conn.set_nonblocking(false)?;
                Pending::terminal(pid, recv_master(&conn)?)
            }
            None => Ok(Pending::started(pid, stdin, stdout, stderr)),
        }
    }
}

/// Receives the pty master the runtime sends over a console socket
/// (SCM_RIGHTS), waiting at most 10 s.
fn recv_master(sock: &UnixStream) -> io::Result<File> {
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let fd = skiff_sys::fdpass::recv_fd(sock.as_raw_fd()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("console socket: no pty master received: {e}"),
        )
    })?;
    Ok(File::from(fd))
}

/// A terminal needs the container's own devpts (`/dev/ptmx` is a link to
/// `pts/ptmx`): add one when the spec has none, so `exec -t` works in any
/// VM container.
fn add_devpts(spec: &mut Value) {
    let mounts = spec["mounts"].as_array();
    if mounts.is_some_and(|m| {
        m.iter()
            .any(|m| m["destination"].as_str() == Some("/dev/pts"))
    }) {
        return;
    }
    let pts = serde_json::json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]});
    if let Some(m) = spec["mounts"].as_array_mut() {
        // After the mount on /dev, whichever it is.
        let at = m
            .iter()
            .position(|m| m["destination"].as_str() == Some("/dev"))
            .map(|i| i + 1)
            .unwrap_or(m.len());
        m.insert(at, pts);
    }
}

/// Argument that makes the agent binary exit at once: the warm-up
/// container's program (the agent is the only binary in the initramfs).
pub const WARM_UP_ARG: &str = "--skiff-warm-up-noop";

/// Runs one throw-away container through create, start, exit and delete
/// (namespaces, cgroup limits, capabilities, a seccomp filter), so a VM
/// template is saved with the guest's one-time work done: cgroup
/// controllers enabled, slab caches and the runtime's lazy state
/// initialised. Its rootfs is a tmpfs holding the agent binary.
pub fn warm_up() -> io::Result<()> {
    let root = "/run/skiff/warm";
    let rootfs = format!("{root}/rootfs");
    for d in ["proc", "dev", "tmp"] {
        fs::create_dir_all(format!("{rootfs}/{d}"))?;
    }
    File::create(format!("{rootfs}/init"))?;
    crate::boot::mount("/init", &format!("{rootfs}/init"), "", libc::MS_BIND, "")?;
    let caps = serde_json::json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["/init", WARM_UP_ARG], "cwd": "/", "env": ["PATH=/"],
                    "user": {"uid": 0, "gid": 0},
                    "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
        "root": {"path": rootfs},
        "hostname": "warm-up",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}],
                  "resources": {"memory": {"limit": 67108864}, "pids": {"limit": 64}},
                  "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                              "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}}
    });
    let id = "skiff-warm-up";
    let (c, pending) = RtContainer::create(id, &spec, &rootfs)?;
    let pid = pending.pid;
    c.start()?;
    drop(pending);
    let t = std::time::Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        && t.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let r =
        c.rt.load(id)
            .and_then(|k| k.delete(&c.rt, true))
            .map_err(rt_err);
    let target = std::ffi::CString::new(format!("{rootfs}/init")).unwrap_or_default();
    // SAFETY: umount2 of the bind mount made above, with a valid C string.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    // The warm-up runs once, in the guest a template is saved from: a
    // scratch directory left behind only costs a little tmpfs space.
    let _ = fs::remove_dir_all(root);
    r
}

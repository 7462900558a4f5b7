//! skiff-agent: the `/init` of a skiff VM.
//!
//! Boot: mount `/proc`, `/sys`, `/dev`, load the kernel modules the host put
//! in `/lib/modules/skiff` (file names sort in `modprobe --show-depends`
//! order) with `finit_module`, open the virtio-serial port named `skiff.0`
//! and answer the host's protocol (crate `skiff-vm-proto`, shared with `skiff-vm`).
//!
//! The agent serves one container: `create` mounts the rootfs the host shared
//! (9p tag) and forks the container's init blocked before `execve`; `start`
//! releases it; `exec` forks more processes in the container's namespaces.
//! Process output is relayed as `Output` frames; when a process ends (the
//! agent is PID 1 and reaps everything) an `Exit` frame follows its last
//! output. When the host side goes away, or on `shutdown`, the guest powers
//! off.
//!
//! Containers are built with skiff-runtime (`rt.rs`, cargo feature
//! `runtime`, on by default): caps, seccomp, namespaces, cgroups as on the
//! host, terminals included (the pty master comes over the runtime's
//! console socket). Builds without the feature use the minimal built-in
//! setup of `container.rs`. In a VM template (`skiff.template` on the
//! kernel command line) the agent runs a warm-up container, pre-starts
//! worker threads and forks the create helper before announcing that it
//! can be saved; the host's hello then brings the clock and a fresh RNG
//! seed. Built static (`crt-static`), the agent avoids NSS functions.

use skiff_vm_proto as proto;

mod container;
mod pool;
#[cfg(feature = "runtime")]
mod rt;

use proto::{Msg, Request};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PORT_NAME: &str = "skiff.0";
const MODULE_DIR: &str = "/lib/modules/skiff";
const ROOTFS: &str = "/run/skiff/rootfs";
/// The 9p tag of the container's rootfs in a VM restored from a template.
const ROOTFS_TAG: &str = "rootfs";
const NINEP_OPTS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap";

/// The rootfs mount started as soon as the host's hello arrives in a guest
/// restored from a template (whose rootfs is always the 9p share
/// [`ROOTFS_TAG`]): the mount waits for QEMU's 9p server on the host
/// (several round trips), and meanwhile the guest answers the hello and
/// reads the create request.
static PREMOUNT: Mutex<Option<mpsc::Receiver<io::Result<()>>>> = Mutex::new(None);

fn premount_rootfs() {
    let (tx, rx) = mpsc::channel();
    *PREMOUNT.lock().unwrap() = Some(rx);
    pool::spawn(move || {
        let _ = tx.send(mount(ROOTFS_TAG, ROOTFS, "9p", 0, NINEP_OPTS));
    });
}

/// The result of [`premount_rootfs`] (waiting for it), if it was started.
fn premounted() -> Option<io::Result<()>> {
    let rx = PREMOUNT.lock().unwrap().take()?;
    Some(
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("rootfs pre-mount lost"))),
    )
}

static DEBUG: AtomicBool = AtomicBool::new(false);

fn log(msg: &str) {
    let _ = writeln!(io::stderr(), "skiff-agent: {msg}");
}

/// The guest's monotonic clock in ms.
fn monotonic_ms() -> u64 {
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
fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        log(&format!("[{}] {msg}", monotonic_ms()));
    }
}

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let _ = fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (src_c, target_c, fstype_c, data_c) = (c(src)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings alive for the call.
    let r = unsafe {
        libc::mount(
            src_c.as_ptr(),
            target_c.as_ptr(),
            fstype_c.as_ptr(),
            flags,
            data_c.as_ptr().cast(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount {fstype} on {target}: {e}"),
        ));
    }
    Ok(())
}

fn load_modules() -> io::Result<()> {
    let mut names: Vec<_> = match fs::read_dir(MODULE_DIR) {
        Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    names.sort();
    for path in names {
        let f = File::open(&path)?;
        let empty = CString::default();
        // SAFETY: f is an open module file; params is an empty C string.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("finit_module {}: {e}", path.display()),
                ));
            }
        }
        debug(&format!("loaded {}", path.display()));
    }
    Ok(())
}

/// Modules of the vsock channel (Debian's kernel), loaded only when the
/// channel is vsock (`skiff.vsock=<port>` on the command line).
const VSOCK_MODULE_DIR: &str = "/lib/modules/skiff-vsock";

/// The channel to the host: the virtio-serial port `skiff.0`, or with
/// `skiff.vsock=<port>` on the kernel command line the connection the host
/// makes to our AF_VSOCK listener on that port.
fn open_port(deadline: Duration) -> io::Result<File> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(port) = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("skiff.vsock="))
    {
        let port = port
            .parse()
            .map_err(|_| io::Error::other(format!("skiff.vsock={port}: not a port")))?;
        return vsock_accept(port);
    }
    let start = Instant::now();
    loop {
        if let Ok(dir) = fs::read_dir("/sys/class/virtio-ports") {
            for e in dir.flatten() {
                let name = fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
                    let dev = format!("/dev/{}", e.file_name().to_string_lossy());
                    if let Ok(f) = OpenOptions::new().read(true).write(true).open(&dev) {
                        return Ok(f);
                    }
                }
            }
        }
        if start.elapsed() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("virtio port {PORT_NAME} not found"),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Loads the vsock modules the host put in [`VSOCK_MODULE_DIR`] (file
/// names sort in dependency order), listens on AF_VSOCK `port` (any CID)
/// and returns the first connection: the host's (kernel vhost-vsock, or
/// vhost-device-vsock forwarding a hybrid `CONNECT`).
fn vsock_accept(port: u32) -> io::Result<File> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};
    let mut mods: Vec<_> = match fs::read_dir(VSOCK_MODULE_DIR) {
        Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    mods.sort();
    for path in mods {
        let f = File::open(&path)?;
        let empty = CString::default();
        // SAFETY: f is an open module file; params is an empty C string.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), 0) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("finit_module {}: {e}", path.display()),
            ));
        }
        debug(&format!("loaded {}", path.display()));
    }
    let ctx =
        |what: &str, e: nix::Error| io::Error::other(format!("vsock port {port}: {what}: {e}"));
    let l = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ctx("socket", e))?;
    socket::bind(l.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_ANY, port))
        .map_err(|e| ctx("bind", e))?;
    socket::listen(&l, Backlog::new(1).map_err(|e| ctx("backlog", e))?)
        .map_err(|e| ctx("listen", e))?;
    // The host's hybrid vsock channel connects when it sees this on the
    // console (skiff-vm `channel::vsock::LISTENING_MARKER`).
    log(&format!(
        "SKIFF-VSOCK-LISTENING port {port} at {} ms",
        monotonic_ms()
    ));
    let fd = loop {
        match socket::accept4(l.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => break fd,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ctx("accept", e)),
        }
    };
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Counts the output streams of a process still open.
struct Streams {
    open: Mutex<u32>,
    cv: Condvar,
}

impl Streams {
    fn done(&self) {
        *self.open.lock().unwrap() -= 1;
        self.cv.notify_all();
    }
    fn wait(&self, max: Duration) {
        let g = self.open.lock().unwrap();
        let _ = self.cv.wait_timeout_while(g, max, |n| *n > 0);
    }
}

struct Proc {
    pid: i32,
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    pty: Option<File>,
    /// Releases a created process (the init until `start`).
    pending: Option<Release>,
    streams: Arc<Streams>,
}

type Release = Box<dyn FnOnce() -> io::Result<()> + Send>;

struct Agent {
    out: Mutex<File>,
    procs: Mutex<HashMap<u32, Proc>>,
    container: Mutex<Option<container::ContainerSpec>>,
    init_pid: AtomicI32,
    next_proc: AtomicU32,
    cgroup: Mutex<Option<String>>,
    /// Exit statuses of children reaped before they were registered (a
    /// process started by the runtime runs at once and may end first).
    unclaimed: Mutex<HashMap<i32, i32>>,
    #[cfg(feature = "runtime")]
    rt: Mutex<Option<Arc<rt::RtContainer>>>,
}

impl Agent {
    fn send(&self, msg: &Msg, payload: &[u8]) {
        let mut out = self.out.lock().unwrap();
        if let Err(e) = proto::write_frame(&mut *out, msg, payload) {
            log(&format!("write to host: {e}"));
        }
    }

    /// Registers a pending process, starts relaying its output and hands
    /// back the (stdio-less) handle that releases it.
    fn register(self: &Arc<Self>, n: u32, mut p: container::Pending) -> container::Pending {
        let streams = Arc::new(Streams {
            open: Mutex::new(0),
            cv: Condvar::new(),
        });
        let is_tty = p.stderr.is_none();
        let mut readers = Vec::new();
        if let Some(o) = p.stdout.take() {
            readers.push((1u8, o));
        }
        if let Some(e) = p.stderr.take() {
            readers.push((2, e));
        }
        *streams.open.lock().unwrap() = readers.len() as u32;
        for (fd, mut file) in readers {
            let agent = Arc::clone(self);
            let streams = Arc::clone(&streams);
            pool::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => agent.send(&Msg::Output { proc: n, fd }, &buf[..k]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break, // EIO on a pty whose slave closed
                    }
                }
                streams.done();
            });
        }
        let pty = if is_tty {
            p.stdin.as_ref().and_then(|f| f.try_clone().ok())
        } else {
            None
        };
        let stdin = p.stdin.take().map(|mut w| {
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            pool::spawn(move || {
                while let Ok(data) = rx.recv() {
                    if data.is_empty() || w.write_all(&data).is_err() {
                        break;
                    }
                }
            });
            tx
        });
        let pid = p.pid;
        let mut procs = self.procs.lock().unwrap();
        procs.insert(
            n,
            Proc {
                pid,
                stdin,
                pty,
                pending: None,
                streams: Arc::clone(&streams),
            },
        );
        if let Some(status) = self.unclaimed.lock().unwrap().remove(&pid) {
            // A live pid means the entry is from an earlier process with a
            // recycled pid.
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                self.report_exit(n, streams, status);
            }
        }
        drop(procs);
        p
    }

    /// Sends the exit status of process `n` once its output is drained.
    fn report_exit(self: &Arc<Self>, n: u32, streams: Arc<Streams>, status: i32) {
        let agent = Arc::clone(self);
        pool::spawn(move || {
            // Output written just before exit must reach the host before the
            // exit status; background children holding the pipes open only
            // delay this by the grace period.
            streams.wait(Duration::from_secs(2));
            agent.send(&Msg::Exit { proc: n, status }, &[]);
        });
    }

    fn handle(self: &Arc<Self>, id: u64, req: Request) {
        let is_create = matches!(req, Request::Create { .. });
        let result = match req {
            Request::Create {
                id: cid,
                spec,
                rootfs_tag,
                rootfs_type,
            } => self.create(&cid, &spec, &rootfs_tag, rootfs_type.as_deref()),
            Request::Start => self.start(),
            Request::Exec { process } => match self.exec(&process) {
                Ok((n, pending)) => {
                    self.send(
                        &Msg::Response {
                            id,
                            ok: Some(json!({ "proc": n })),
                            err: None,
                        },
                        &[],
                    );
                    if let Err(e) = pending.release() {
                        self.send(
                            &Msg::Output { proc: n, fd: 2 },
                            format!("skiff-agent: exec: {e}\n").as_bytes(),
                        );
                    }
                    return;
                }
                Err(e) => Err(e),
            },
            Request::Signal { proc, signal, all } => self.signal(proc, signal, all),
            Request::Stats => Ok(self.stats()),
            Request::Pause => self.freeze(true),
            Request::Resume => self.freeze(false),
            Request::Shutdown => {
                self.send(
                    &Msg::Response {
                        id,
                        ok: Some(Value::Null),
                        err: None,
                    },
                    &[],
                );
                power_off();
            }
        };
        debug(&format!("request {id} done"));
        let created = is_create && result.is_ok();
        let msg = match result {
            Ok(v) => Msg::Response {
                id,
                ok: Some(v),
                err: None,
            },
            Err(e) => Msg::Response {
                id,
                ok: None,
                err: Some(e.to_string()),
            },
        };
        self.send(&msg, &[]);
        #[cfg(feature = "runtime")]
        if created {
            if let Some(c) = self.rt.lock().unwrap().clone() {
                c.preload();
            }
        }
        #[cfg(not(feature = "runtime"))]
        let _ = created;
    }

    fn create(
        self: &Arc<Self>,
        cid: &str,
        spec: &Value,
        tag: &str,
        fstype: Option<&str>,
    ) -> io::Result<Value> {
        if self.container.lock().unwrap().is_some() {
            return Err(io::Error::other("container already created in this VM"));
        }
        debug("create: started");
        let mut spec = spec.clone();
        prepare_binds(&mut spec)?;
        install_seccomp_program(&mut spec)?;
        let spec = &spec;
        let t = Instant::now();
        let kind = fstype.unwrap_or("9p");
        match premounted() {
            Some(Ok(())) if kind == "9p" && tag == ROOTFS_TAG => {}
            pre => {
                if let Some(Ok(())) = pre {
                    // Not the share the host wants after all.
                    let target = CString::new(ROOTFS).unwrap_or_default();
                    // SAFETY: umount2 of our own mount with a valid path.
                    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
                }
                match kind {
                    "virtiofs" => mount(tag, ROOTFS, "virtiofs", 0, "")?,
                    _ => mount(tag, ROOTFS, "9p", 0, NINEP_OPTS)?,
                }
            }
        }
        debug(&format!("rootfs mounted in {:?}", t.elapsed()));
        let cspec = container::parse_container(spec, ROOTFS)?;
        #[cfg(feature = "runtime")]
        {
            let t = Instant::now();
            let (c, pending) = rt::RtContainer::create(cid, spec, ROOTFS)?;
            debug(&format!("skiff-runtime create took {:?}", t.elapsed()));
            let c = Arc::new(c);
            *self.rt.lock().unwrap() = Some(Arc::clone(&c));
            let pid = pending.pid;
            self.init_pid.store(pid, Ordering::SeqCst);
            self.register(proto::INIT_PROC, pending);
            if let Some(p) = self.procs.lock().unwrap().get_mut(&proto::INIT_PROC) {
                p.pending = Some(Box::new(move || c.start()));
            }
            *self.container.lock().unwrap() = Some(cspec);
            debug(&format!("created with skiff-runtime, init pid {pid}"));
            Ok(json!({ "pid": pid }))
        }
        #[cfg(not(feature = "runtime"))]
        {
            let pspec = container::parse_process(&spec["process"])?;
            self.setup_cgroup(cid, spec)?;
            let pending = container::spawn(container::Target::Init(&cspec), &pspec)?;
            let pid = pending.pid;
            if let Some(cg) = self.cgroup.lock().unwrap().as_ref() {
                fs::write(format!("{cg}/cgroup.procs"), pid.to_string())?;
            }
            self.init_pid.store(pid, Ordering::SeqCst);
            let pending = self.register(proto::INIT_PROC, pending);
            if let Some(p) = self.procs.lock().unwrap().get_mut(&proto::INIT_PROC) {
                p.pending = Some(Box::new(move || pending.release()));
            }
            *self.container.lock().unwrap() = Some(cspec);
            Ok(json!({ "pid": pid }))
        }
    }

    /// Puts the container in a cgroup v2 with the spec's memory/pids limits.
    #[cfg_attr(feature = "runtime", allow(dead_code))]
    fn setup_cgroup(&self, cid: &str, spec: &Value) -> io::Result<()> {
        let res = &spec["linux"]["resources"];
        let mem = res["memory"]["limit"].as_i64().filter(|l| *l > 0);
        let pids = res["pids"]["limit"].as_i64().filter(|l| *l > 0);
        if mem.is_none() && pids.is_none() {
            return Ok(());
        }
        let root = "/sys/fs/cgroup";
        let ctl = fs::read_to_string(format!("{root}/cgroup.controllers")).unwrap_or_default();
        let want: Vec<&str> = ["memory", "pids"]
            .into_iter()
            .filter(|c| ctl.split_whitespace().any(|x| x == *c))
            .collect();
        for c in &want {
            let _ = fs::write(format!("{root}/cgroup.subtree_control"), format!("+{c}"));
        }
        let dir = format!("{root}/{}", cid.replace('/', "_"));
        fs::create_dir_all(&dir)?;
        if let Some(m) = mem {
            fs::write(format!("{dir}/memory.max"), m.to_string()).map_err(|e| {
                io::Error::new(e.kind(), format!("linux.resources.memory.limit: {e}"))
            })?;
            let _ = fs::write(format!("{dir}/memory.swap.max"), "0");
        }
        if let Some(p) = pids {
            fs::write(format!("{dir}/pids.max"), p.to_string()).map_err(|e| {
                io::Error::new(e.kind(), format!("linux.resources.pids.limit: {e}"))
            })?;
        }
        *self.cgroup.lock().unwrap() = Some(dir);
        Ok(())
    }

    fn start(&self) -> io::Result<Value> {
        reseeded().wait(Duration::from_secs(10));
        let pending = self
            .procs
            .lock()
            .unwrap()
            .get_mut(&proto::INIT_PROC)
            .and_then(|p| p.pending.take())
            .ok_or_else(|| io::Error::other("container not created or already started"))?;
        pending()?;
        Ok(Value::Null)
    }

    fn exec(self: &Arc<Self>, process: &Value) -> io::Result<(u32, container::Pending)> {
        reseeded().wait(Duration::from_secs(10));
        let init = self.init_pid.load(Ordering::SeqCst);
        if init <= 0 {
            return Err(io::Error::other("no container to exec into"));
        }
        let pspec = container::parse_process(process)?;
        #[cfg(feature = "runtime")]
        {
            if let Some(c) = self.rt.lock().unwrap().clone() {
                let pending = c.exec(process)?;
                let n = self.next_proc.fetch_add(1, Ordering::SeqCst);
                return Ok((n, self.register(n, pending)));
            }
        }
        let pending = container::spawn(container::Target::Join(init), &pspec)?;
        if let Some(cg) = self.cgroup.lock().unwrap().as_ref() {
            let _ = fs::write(format!("{cg}/cgroup.procs"), pending.pid.to_string());
        }
        let n = self.next_proc.fetch_add(1, Ordering::SeqCst);
        // The caller releases the process after answering, so output never
        // precedes the response carrying its number.
        Ok((n, self.register(n, pending)))
    }

    fn signal(&self, proc: u32, signal: i32, all: bool) -> io::Result<Value> {
        let pid = if all {
            -1
        } else {
            self.procs
                .lock()
                .unwrap()
                .get(&proc)
                .map(|p| p.pid)
                .ok_or_else(|| io::Error::other(format!("no process {proc}")))?
        };
        // SAFETY: plain kill(2); pid -1 signals every process but init (us).
        if unsafe { libc::kill(pid, signal) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Value::Null)
    }

    fn stats(&self) -> Value {
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |k: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|l| {
                    l.strip_prefix(k)
                        .map(|r| r.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
                })
                .unwrap_or(0)
                * 1024
        };
        let cg = self.container_cgroup();
        let read_cg = |f: &str| {
            cg.as_ref()
                .and_then(|d| fs::read_to_string(format!("{d}/{f}")).ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let pids: Vec<i32> = self.procs.lock().unwrap().values().map(|p| p.pid).collect();
        json!({
            "guest": { "mem_total": field("MemTotal:"), "mem_available": field("MemAvailable:"),
                       "loadavg": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim() },
            "memory": { "usage": read_cg("memory.current"), "limit": read_cg("memory.max") },
            "pids": pids,
            "frozen": cg.as_ref().map(|d| cgroup_frozen(d)),
        })
    }

    /// The container's cgroup directory: ours, or the one the runtime put
    /// the init in.
    fn container_cgroup(&self) -> Option<String> {
        self.cgroup.lock().unwrap().clone().or_else(|| {
            let pid = self.init_pid.load(Ordering::SeqCst);
            let line = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let path = line.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
            Some(format!("/sys/fs/cgroup{path}"))
        })
    }

    /// Freezes (or thaws) the container's cgroup and waits until the kernel
    /// reports it done.
    fn freeze(&self, frozen: bool) -> io::Result<Value> {
        let cg = self
            .container_cgroup()
            .filter(|d| d != "/sys/fs/cgroup" && d != "/sys/fs/cgroup/")
            .ok_or_else(|| io::Error::other("the container has no cgroup of its own to freeze"))?;
        fs::write(
            format!("{cg}/cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{cg}/cgroup.freeze: {e}")))?;
        let t = Instant::now();
        while cgroup_frozen(&cg) != frozen {
            if t.elapsed() > Duration::from_secs(5) {
                return Err(io::Error::other(format!(
                    "{cg}: still {} after 5 s",
                    if frozen { "thawed" } else { "frozen" }
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(Value::Null)
    }

    fn stdin(&self, proc: u32, data: Vec<u8>) {
        let mut procs = self.procs.lock().unwrap();
        if let Some(p) = procs.get_mut(&proc) {
            if data.is_empty() {
                p.stdin = None;
            } else if let Some(tx) = &p.stdin {
                let _ = tx.send(data);
            }
        }
    }

    fn resize(&self, proc: u32, rows: u16, cols: u16) {
        if let Some(pty) = self
            .procs
            .lock()
            .unwrap()
            .get(&proc)
            .and_then(|p| p.pty.as_ref())
        {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ with a valid winsize on a pty master we own.
            unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }

    /// Reaps every child (we are PID 1) and reports container processes' exits.
    fn reap(self: Arc<Self>) {
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, 0) };
            if pid < 0 {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            debug(&format!("reaped pid {pid} status {st:#x}"));
            let status = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                128 + libc::WTERMSIG(st)
            };
            let procs = self.procs.lock().unwrap();
            let found = procs
                .iter()
                .find(|(_, p)| p.pid == pid)
                .map(|(n, p)| (*n, Arc::clone(&p.streams)));
            match found {
                Some((n, streams)) => {
                    debug(&format!("process {n} (pid {pid}) exited with {status}"));
                    self.report_exit(n, streams, status);
                }
                None => {
                    let mut unclaimed = self.unclaimed.lock().unwrap();
                    // Helpers and strays are never claimed: keep the map small.
                    if unclaimed.len() > 256 {
                        unclaimed.clear();
                    }
                    unclaimed.insert(pid, status);
                }
            }
        }
    }
}

const BINDS: &str = "/run/skiff/binds";

/// Points the bind mounts the host made reachable at their guest paths:
/// `x-skiff-share` (a 9p tag holding the source directory, or with
/// `x-skiff-share-file` the directory holding the source file under that
/// name) is mounted under `/run/skiff/binds/<tag>`; `x-skiff-content` (a
/// file's content, hex, from older hosts) is written to
/// `/run/skiff/binds/file<N>`.
fn prepare_binds(spec: &mut Value) -> io::Result<()> {
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(());
    };
    let mut mounted: Vec<String> = Vec::new();
    for (i, m) in mounts.iter_mut().enumerate() {
        let Some(obj) = m.as_object_mut() else {
            continue;
        };
        if let Some(tag) = obj.remove("x-skiff-share") {
            let tag = tag.as_str().unwrap_or_default().to_owned();
            let target = format!("{BINDS}/{tag}");
            // The share of file sources serves several mounts: mounted once.
            if !mounted.contains(&tag) {
                mount(&tag, &target, "9p", 0, NINEP_OPTS).map_err(|e| {
                    io::Error::new(e.kind(), format!("mounts[{i}] (share {tag}): {e}"))
                })?;
                mounted.push(tag);
            }
            let source = match obj.remove("x-skiff-share-file") {
                Some(f) => format!("{target}/{}", f.as_str().unwrap_or_default()),
                None => target,
            };
            obj.insert("source".into(), Value::String(source));
        } else if let Some(content) = obj.remove("x-skiff-content") {
            let data = unhex(content.as_str().unwrap_or_default()).ok_or_else(|| {
                io::Error::other(format!("mounts[{i}]: bad file content from the host"))
            })?;
            fs::create_dir_all(BINDS)?;
            let path = format!("{BINDS}/file{i}");
            fs::write(&path, data)?;
            obj.insert("source".into(), Value::String(path));
        }
    }
    Ok(())
}

/// Top-level key of the create request's spec carrying the seccomp
/// program compiled by the host (`skiff_vm::SECCOMP_BPF_KEY`).
const SECCOMP_BPF_KEY: &str = "x-skiff-seccomp-bpf";

/// Takes the host-compiled seccomp program out of the spec and puts it into
/// the runtime's seccomp cache, where `Runtime::create` finds it instead of
/// running libseccomp under emulation (hundreds of ms for a docker-sized
/// profile). The entry is checksummed and keyed by the profile: a stale or
/// foreign one is recompiled by the runtime, never used.
fn install_seccomp_program(spec: &mut Value) -> io::Result<()> {
    let Some(entry) = spec.as_object_mut().and_then(|o| o.remove(SECCOMP_BPF_KEY)) else {
        return Ok(());
    };
    #[cfg(feature = "runtime")]
    {
        let file = entry["file"].as_str().unwrap_or_default();
        let hex_ok =
            |h: &str| !h.is_empty() && h.len() <= 128 && h.bytes().all(|c| c.is_ascii_hexdigit());
        if !file.strip_suffix(".bpf").is_some_and(hex_ok) {
            return Err(io::Error::other(format!(
                "{SECCOMP_BPF_KEY}: bad file name {file:?}"
            )));
        }
        let data = unhex(entry["data"].as_str().unwrap_or_default())
            .ok_or_else(|| io::Error::other(format!("{SECCOMP_BPF_KEY}: bad data")))?;
        let dir = rt::seccomp_cache_dir();
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        fs::write(dir.join(file), data)?;
    }
    #[cfg(not(feature = "runtime"))]
    let _ = entry;
    Ok(())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// `frozen 1` in the cgroup's `cgroup.events`.
fn cgroup_frozen(dir: &str) -> bool {
    fs::read_to_string(format!("{dir}/cgroup.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l == "frozen 1")
}

/// Ends the VM. A reboot, not a power-off: QEMU runs with `-no-reboot`
/// and the kernel with `reboot=t` (triple fault), which works with and
/// without ACPI (a power-off needs ACPI, and the minimal kernel has none).
fn power_off() -> ! {
    // SAFETY: sync and reboot(2) take no pointers; we are PID 1 in a VM we own.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

fn req_name(r: &Request) -> &'static str {
    match r {
        Request::Create { .. } => "create",
        Request::Start => "start",
        Request::Exec { .. } => "exec",
        Request::Signal { .. } => "signal",
        Request::Stats => "stats",
        Request::Pause => "pause",
        Request::Resume => "resume",
        Request::Shutdown => "shutdown",
    }
}

#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
fn cmdline_has(word: &str) -> bool {
    fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|a| a == word)
}

fn uptime_ms() -> u64 {
    let s = fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = s
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    (secs * 1000.0) as u64
}

/// Applies the host facts of its hello: verbosity, wall clock, RNG seed.
/// A guest restored from a template wakes with the template's clock and
/// RNG state; a cold guest has no battery-backed clock worth trusting.
fn apply_host_facts(host: &Value) {
    if host["debug"].as_bool() == Some(true) {
        DEBUG.store(true, Ordering::Relaxed);
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
struct Flag {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Flag {
    fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_all();
    }
    fn wait(&self, max: Duration) {
        let g = self.set.lock().unwrap();
        let _ = self.cv.wait_timeout_while(g, max, |s| !*s);
    }
}

/// Set once the RNG has been reseeded from the host's hello.
fn reseeded() -> &'static Flag {
    static F: std::sync::OnceLock<Flag> = std::sync::OnceLock::new();
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

fn serve(agent: Arc<Agent>, mut port: File, timings: (u64, u64), template: bool) -> io::Result<()> {
    if template {
        #[cfg(feature = "runtime")]
        if !cmdline_has("skiff.no_warm_up") {
            let t = Instant::now();
            match rt::warm_up() {
                Ok(()) => debug(&format!("warm-up container took {:?}", t.elapsed())),
                Err(e) => log(&format!("warm-up container: {e}")),
            }
            agent.unclaimed.lock().unwrap().clear();
        }
    }
    #[cfg(feature = "runtime")]
    if let Err(e) = rt::prefork_create_helper() {
        log(&format!("fork the create helper: {e}"));
    }
    if template {
        // The host saves the VM now (it watches the console for this line)
        // and restores it for each container: everything below runs in the
        // restored guests.
        log(&format!("SKIFF-TEMPLATE-READY at {} ms", monotonic_ms()));
    }
    // Until the host connects, reads return 0: wait for its Hello.
    let hello = loop {
        match proto::read_frame(&mut port)? {
            Some(f) => break f,
            // The host connects right after a restore: poll finely.
            None => thread::sleep(Duration::from_millis(1)),
        }
    };
    let hello_read = monotonic_ms();
    if template {
        premount_rootfs();
    }
    match hello.msg {
        Msg::Hello { version, host, .. } if version == proto::VERSION => {
            apply_host_facts(&host.unwrap_or(Value::Null));
            debug(&format!("hello read at {hello_read} ms"));
        }
        other => return Err(io::Error::other(format!("bad hello from host: {other:?}"))),
    }
    let boot = json!({ "kernel_ms": timings.0, "modules_ms": timings.1, "ready_ms": uptime_ms() });
    agent.send(
        &Msg::Hello {
            version: proto::VERSION,
            boot: Some(boot),
            host: None,
        },
        &[],
    );
    debug("host connected");
    loop {
        let Some(frame) = proto::read_frame(&mut port)? else {
            log("host went away");
            return Ok(());
        };
        match frame.msg {
            Msg::Request { id, req } => {
                debug(&format!("request {id}: {}", req_name(&req)));
                let agent = Arc::clone(&agent);
                // Requests may block (start waits for exec); stdin keeps flowing.
                pool::spawn(move || agent.handle(id, req));
            }
            Msg::Stdin { proc } => agent.stdin(proc, frame.payload),
            Msg::Resize { proc, rows, cols } => agent.resize(proc, rows, cols),
            other => log(&format!("unexpected message {other:?}")),
        }
    }
}

fn run() -> io::Result<()> {
    let t0 = Instant::now();
    let _ = mount(
        "proc",
        "/proc",
        "proc",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    );
    let _ = mount(
        "sysfs",
        "/sys",
        "sysfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    );
    let _ = mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755");
    let _ = mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    );
    let _ = mount(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    );
    let _ = mount(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    );
    let kernel_ms = uptime_ms();
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    DEBUG.store(
        cmdline.split_whitespace().any(|a| a == "skiff.debug"),
        Ordering::Relaxed,
    );
    load_modules()?;
    let modules_ms = uptime_ms();
    debug(&format!("modules loaded after {:?}", t0.elapsed()));
    if cmdline.split_whitespace().any(|a| a == "skiff.probe") {
        log("SKIFF-PROBE-OK");
        return Ok(());
    }
    let port = open_port(Duration::from_secs(20))?;
    let agent = Arc::new(Agent {
        out: Mutex::new(port.try_clone()?),
        procs: Mutex::new(HashMap::new()),
        container: Mutex::new(None),
        init_pid: AtomicI32::new(0),
        next_proc: AtomicU32::new(1),
        cgroup: Mutex::new(None),
        unclaimed: Mutex::new(HashMap::new()),
        #[cfg(feature = "runtime")]
        rt: Mutex::new(None),
    });
    let reaper = Arc::clone(&agent);
    thread::spawn(move || reaper.reap());
    // Request handlers, the RNG reseed, the rootfs pre-mount and the stdio
    // relays and exit report of the first container run on these (see
    // pool.rs): in a template they are saved already started.
    pool::prestart(7);
    let template = cmdline.split_whitespace().any(|a| a == "skiff.template");
    serve(agent, port, (kernel_ms, modules_ms), template)
}

fn main() {
    #[cfg(feature = "runtime")]
    if std::env::args().nth(1).as_deref() == Some(rt::WARM_UP_ARG) {
        return;
    }
    if std::process::id() != 1 {
        eprintln!(
            "skiff-agent: this is the /init of a skiff VM; it is not meant to be run by hand"
        );
        std::process::exit(2);
    }
    if let Err(e) = run() {
        log(&format!("fatal: {e}"));
    }
    power_off();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_round_trip() {
        assert_eq!(unhex("00ff7a41").unwrap(), vec![0, 255, 0x7a, b'A']);
        assert_eq!(unhex("").unwrap(), Vec::<u8>::new());
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}

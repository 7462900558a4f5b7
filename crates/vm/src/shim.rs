//! The shim: the host process that stands for a VM container.
//!
//! [`launch`] forks it from the caller of `create`. The shim `setsid`s,
//! closes every inherited descriptor but stdio (so it never holds the
//! runtime's locks or a test harness's pipes), blocks signals, starts QEMU
//! in its own process group with `PR_SET_PDEATHSIG=SIGKILL` (the VMM dies
//! with the shim), connects to the agent, waits for its hello (boot
//! deadline, console log in the error), sends `create`, and reports the
//! outcome to the caller through a pipe. Then it serves:
//!
//! * a reader thread decodes agent frames: container output goes to the
//!   shim's stdout/stderr (or the terminal), responses wake their waiters,
//!   exec output is routed to the client that asked for the exec;
//! * a signal thread (`sigwait`) forwards every catchable signal to the
//!   container's process and turns SIGWINCH into a resize;
//! * a stdin thread relays the shim's stdin;
//! * a control socket (`shim.sock`) serves `start`, `exec`, `stats`.
//!
//! The shim exits with the container's exit status (128 + signal for a
//! signal death), or 255 after killing QEMU's group when the VMM dies
//! under it. Nothing in the forked child uses `std`'s stdout/stderr locks
//! (another thread of the caller may have held them at fork time).

use crate::channel::vsock::{self, HybridVsock, KernelVsock};
use crate::channel::{Channel, VirtioSerial};
use crate::proto::{self, Msg, Request};
use crate::qemu::{ChannelDevice, VmConfig};
use crate::qmp::Qmp;
use crate::template;
use crate::{io_err, sock_path, Error};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Everything the shim needs.
pub(crate) struct Plan {
    pub vm: VmConfig,
    pub container_id: String,
    pub spec: Value,
    pub state_dir: PathBuf,
    pub boot_timeout: Duration,
    pub request_timeout: Duration,
    pub console_socket: Option<PathBuf>,
    pub terminal: bool,
    pub debug: bool,
    /// Template key when the VM may be restored from a template.
    pub template_key: Option<String>,
    /// virtiofsd binary, when the rootfs is shared with virtio-fs.
    pub virtiofsd: Option<PathBuf>,
}

/// Raw write to a descriptor, safe to use after fork.
fn raw_write(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: the fd is borrowed for the call only; ManuallyDrop prevents closing it.
    let mut f = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    f.write_all(data)
}

fn log(msg: &str) {
    let _ = raw_write(2, format!("skiff-vm: {msg}\n").as_bytes());
}

fn tail(path: &Path, max: usize) -> String {
    let data = fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

// ---------------------------------------------------------------- parent side

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
    let _ = fs::remove_file(&plan.vm.channel);
    let _ = fs::remove_file(sock_path(&plan.state_dir, "shim.sock"));
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
    let _ = crate::write_state(&plan.state_dir.join("shim.pid"), pid.to_string());
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

fn kill_and_reap(pid: i32) {
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

// ---------------------------------------------------------------- shim side

enum Event {
    Hello(Option<Value>),
    Exit(i32),
    Closed(String),
    Signal(i32),
}

#[derive(Default)]
struct Routes {
    clients: HashMap<u32, Arc<Mutex<UnixStream>>>,
    stash: HashMap<u32, Vec<Vec<u8>>>,
}

/// The shared agent link.
struct Link {
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Mutex<HashMap<u64, mpsc::Sender<Result<Value, String>>>>,
    routes: Mutex<Routes>,
    next_id: AtomicU64,
}

impl Link {
    fn send(&self, msg: &Msg, payload: &[u8]) -> io::Result<()> {
        proto::write_frame(&mut **self.writer.lock().unwrap(), msg, payload)
    }

    fn request(&self, req: Request, timeout: Duration) -> Result<Value, String> {
        self.send_request(req)?.wait(self, timeout)
    }

    /// Sends a request; its answer is collected with [`Sent::wait`].
    fn send_request(&self, req: Request) -> Result<Sent, String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let what = format!("{req:?}");
        if let Err(e) = self.send(&Msg::Request { id, req }, &[]) {
            self.pending.lock().unwrap().remove(&id);
            return Err(format!("send request: {e}"));
        }
        Ok(Sent { id, rx, what })
    }

    /// Sends an exec client its frame, or stashes it until the client is known.
    fn route(&self, proc: u32, frame: Vec<u8>) {
        let mut r = self.routes.lock().unwrap();
        match r.clients.get(&proc) {
            Some(c) => {
                let _ = c.lock().unwrap().write_all(&frame);
            }
            None => r.stash.entry(proc).or_default().push(frame),
        }
    }
}

/// A request sent to the agent, not answered yet.
struct Sent {
    id: u64,
    rx: mpsc::Receiver<Result<Value, String>>,
    what: String,
}

impl Sent {
    /// Waits for the answer.
    fn wait(self, link: &Link, timeout: Duration) -> Result<Value, String> {
        let Sent { id, rx, what } = self;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                link.pending.lock().unwrap().remove(&id);
                Err(format!(
                    "no answer from the agent within {timeout:?} to {what}"
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("agent channel closed".into()),
        }
    }
}

struct Shim {
    link: Arc<Link>,
    events: mpsc::Receiver<Event>,
    events_tx: mpsc::Sender<Event>,
    qemu: Child,
    plan_channel: PathBuf,
    control: PathBuf,
    qmp: PathBuf,
    /// The create request sent right after the hello.
    create: Option<Sent>,
    /// The virtio-fs daemon of the rootfs, if any.
    virtiofsd: Option<Child>,
    /// The hybrid vsock backend, if any.
    vsock_backend: Option<VsockBackend>,
    tty: Option<File>,
    state_dir: PathBuf,
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local; pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn close_inherited_fds(keep: RawFd) {
    // SAFETY: close_range on descriptor ranges; we only keep stdio and `keep`.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(
            libc::SYS_close_range,
            (keep + 1).max(3) as u32,
            u32::MAX,
            0u32,
        );
    }
}

fn shim_main(plan: &Plan, chan: &ChannelPlan, report: File) -> i32 {
    // SAFETY: setsid in the freshly forked child.
    unsafe { libc::setsid() };
    close_inherited_fds(report.as_raw_fd());
    let sigset = block_signals();
    let t0 = Instant::now();
    let mut report = Some(report);
    let mut send_report = |v: Value| {
        if let Some(mut r) = report.take() {
            let _ = r.write_all(v.to_string().as_bytes());
        }
    };
    let mut shim = match boot(plan, chan) {
        Ok(s) => s,
        Err((kind, msg, qemu)) => {
            if let Some(mut q) = qemu {
                kill_group(&mut q);
            }
            let _ = fs::remove_file(&plan.vm.channel);
            let _ = fs::remove_file(sock_path(&plan.state_dir, "qmp.sock"));
            send_report(json!({ "error": msg, "kind": kind }));
            return 1;
        }
    };
    // Boot succeeded; create the container.
    let t_ready = t0.elapsed();
    let created = match shim.create.take() {
        Some(c) => c.wait(&shim.link, plan.request_timeout),
        None => Err("create request not sent".to_string()),
    };
    if let Err(e) = created {
        shim.cleanup();
        send_report(json!({ "error": format!("create: {e}"), "kind": "agent" }));
        return 1;
    }
    let t_created = t0.elapsed();
    if let Some(prev) = fs::read_to_string(plan.state_dir.join("timings.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    {
        let mut t = prev;
        t["agent_ready_ms"] = json!(t_ready.as_millis() as u64);
        t["created_ms"] = json!(t_created.as_millis() as u64);
        let _ = crate::write_state(&plan.state_dir.join("timings.json"), t.to_string());
        if plan.debug {
            log(&format!("boot breakdown: {t}"));
        }
    }
    if plan.terminal {
        match setup_terminal(plan) {
            Ok(t) => shim.tty = Some(t),
            Err(e) => {
                shim.cleanup();
                send_report(json!({ "error": format!("process.terminal: {e}"), "kind": "agent" }));
                return 1;
            }
        }
    }
    if let Err(e) = shim.serve_control() {
        shim.cleanup();
        send_report(json!({ "error": format!("control socket: {e}"), "kind": "agent" }));
        return 1;
    }
    shim.spawn_signal_thread(sigset);
    shim.spawn_stdin_thread();
    send_report(json!({ "ok": true }));
    shim.run()
}

type BootFail = (&'static str, String, Option<Child>);

/// Brings the VM up: restored from a template when templates apply (built
/// first if missing), else, or when that fails, booted cold.
fn boot(plan: &Plan, chan: &ChannelPlan) -> Result<Shim, BootFail> {
    let t0 = Instant::now();
    let vmm_log = plan.state_dir.join("vmm.log");
    crate::create_state_file(&vmm_log)
        .map_err(|e| ("boot", format!("create vmm.log: {e}"), None))?;
    let _ = crate::create_state_file(&plan.vm.console_log);
    let mut why_cold = "templates disabled for this container".to_string();
    if chan.device != ChannelDevice::VirtioSerial {
        why_cold = "vsock channel: QEMU 7.2 cannot migrate vhost-user devices, and every clone \
                    of a template would carry its guest CID"
            .into();
    }
    let template_key = plan
        .template_key
        .as_ref()
        .filter(|_| chan.device == ChannelDevice::VirtioSerial);
    if let Some(key) = template_key {
        let found = match template::lookup(key) {
            Err(e) => Err(template::BuildError::Other(e)),
            Ok(Some(dir)) => {
                // Marked used before QEMU opens it: pruning spares it.
                template::touch(&dir);
                Ok((dir, false))
            }
            Ok(None) => template::find_or_build(
                &plan.vm,
                key,
                &plan.vm.console_log,
                &vmm_log,
                plan.boot_timeout,
            ),
        };
        match found {
            Ok((dir, built)) => {
                let info = json!({
                    "boot": "template",
                    "template": dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "template_built": built,
                    "template_build_ms": built.then(|| t0.elapsed().as_millis() as u64),
                });
                match start_vm(plan, chan, Some(&dir), Instant::now(), info) {
                    Ok(shim) => {
                        template::touch(&dir);
                        if plan.debug {
                            log(&format!(
                                "boot=template: restored from {}{}",
                                dir.display(),
                                if built { " (built by this create)" } else { "" }
                            ));
                        }
                        return Ok(shim);
                    }
                    Err((_, msg, q)) => {
                        if let Some(mut q) = q {
                            kill_group(&mut q);
                        }
                        // A template pruned under us is no reason to
                        // stop using templates for this machine.
                        if dir.join("state").is_file() {
                            template::discard(&dir);
                            template::mark_failed(key, &msg);
                        }
                        why_cold = format!("restore from {} failed: {msg}", dir.display());
                        log(&format!("{why_cold}; booting cold"));
                    }
                }
            }
            Err(template::BuildError::Boot(msg)) => return Err(("boot", msg, None)),
            Err(template::BuildError::Other(msg)) => {
                if !msg.contains("within the hour") {
                    template::mark_failed(key, &msg);
                    log(&format!("VM template: {msg}; booting cold"));
                }
                why_cold = msg;
            }
        }
    }
    if plan.debug {
        log(&format!("boot=cold ({why_cold})"));
    }
    let _ = crate::create_state_file(&plan.vm.console_log);
    start_vm(plan, chan, None, Instant::now(), json!({"boot": "cold"}))
}

/// Starts QEMU (restoring `template` if given), connects to the agent and
/// exchanges hellos. `info` goes into timings.json.
fn start_vm(
    plan: &Plan,
    chan: &ChannelPlan,
    template: Option<&Path>,
    t0: Instant,
    info: Value,
) -> Result<Shim, BootFail> {
    let mut vm = plan.vm.clone();
    vm.template = template.is_some();
    let vmm_log = plan.state_dir.join("vmm.log");
    let qmp_path = sock_path(&plan.state_dir, "qmp.sock");
    let _ = fs::remove_file(&vm.channel);
    let _ = fs::remove_file(&qmp_path);
    let (args, state) = match template {
        None => (crate::qemu::args_with(&vm, &chan.device), None),
        Some(dir) => {
            let state = File::open(dir.join("state"))
                .map_err(|e| ("boot", format!("open {}/state: {e}", dir.display()), None))?;
            (
                template::vm_args(&vm, &dir.join("memory"), false, &qmp_path),
                Some(state),
            )
        }
    };
    let virtiofsd = match &vm.virtiofs {
        Some(sock) => Some(
            spawn_virtiofsd(plan, sock, &vmm_log)
                .map_err(|e| ("boot", format!("virtiofsd: {e}"), None))?,
        ),
        None => None,
    };
    let mut vsock_backend = match &chan.backend {
        Some(b) => Some(
            VsockBackend::spawn(plan, b, &vmm_log)
                .map_err(|e| ("boot", format!("{}: {e}", vsock::BACKEND_NAME), None))?,
        ),
        None => None,
    };
    let mut qemu = template::spawn_qemu(
        &vm.qemu,
        &args,
        &vmm_log,
        state.as_ref().map(|f| f.as_raw_fd()),
    )
    .map_err(|e| ("boot", format!("spawn {}: {e}", vm.qemu.display()), None))?;
    let _ = crate::write_state(&plan.state_dir.join("vmm.pid"), qemu.id().to_string());
    let t_spawned = t0.elapsed();
    let mut deadline = plan.boot_timeout;
    let mut t_restored = None;
    if let Some(state) = state {
        deadline = deadline.min(Duration::from_secs(20));
        if let Err(e) = restore(&mut qemu, &qmp_path, &state, deadline) {
            let why = format!("restore: {e}; QEMU said: {}", tail(&vmm_log, 2048).trim());
            return Err(("boot", why, Some(qemu)));
        }
        t_restored = Some(t0.elapsed().as_millis() as u64);
    }
    let chan = {
        let q = &mut qemu;
        let b = &mut vsock_backend;
        let alive = || matches!(q.try_wait(), Ok(None)) && b.as_mut().is_none_or(|b| b.alive());
        chan.connect(&vm.channel, &vm.console_log, deadline, alive)
    };
    let chan = match chan {
        Ok(c) => c,
        Err(e) => {
            let why = format!("{e}; QEMU said: {}", tail(&vmm_log, 2048).trim());
            return Err(("boot", why, Some(qemu)));
        }
    };
    let t_connected = t0.elapsed();
    let (events_tx, events) = mpsc::channel();
    let (reader, writer) = match (chan.reader(), chan.writer()) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => {
            return Err(("boot", format!("{}: {e}", chan.describe()), Some(qemu)))
        }
    };
    let link = Arc::new(Link {
        writer: Mutex::new(writer),
        pending: Mutex::new(HashMap::new()),
        routes: Mutex::new(Routes::default()),
        next_id: AtomicU64::new(1),
    });
    spawn_reader(Arc::clone(&link), reader, events_tx.clone());
    if let Err(e) = link.send(
        &Msg::Hello {
            version: proto::VERSION,
            boot: None,
            host: Some(host_facts(plan.debug)),
        },
        &[],
    ) {
        return Err(("boot", format!("send hello: {e}"), Some(qemu)));
    }
    // The create request follows the hello at once: the agent reads it as
    // soon as it has answered, without a round trip through the host.
    let create = match link.send_request(Request::Create {
        id: plan.container_id.clone(),
        spec: plan.spec.clone(),
        rootfs_tag: "rootfs".into(),
        rootfs_type: vm.virtiofs.as_ref().map(|_| "virtiofs".into()),
    }) {
        Ok(c) => c,
        Err(e) => return Err(("boot", format!("send create: {e}"), Some(qemu))),
    };
    let boot_info = loop {
        let left = deadline.saturating_sub(t0.elapsed());
        match events.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(Event::Hello(b)) => break b,
            Ok(Event::Closed(why)) => {
                let status = qemu.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err((
                    "boot",
                    format!("VMM exited during boot ({status}): {why}"),
                    Some(qemu),
                ));
            }
            Ok(_) => {}
            Err(_) => {
                if let Ok(Some(status)) = qemu.try_wait() {
                    return Err((
                        "boot",
                        format!("VMM exited during boot ({status})"),
                        Some(qemu),
                    ));
                }
                if t0.elapsed() >= deadline {
                    return Err((
                        "boot",
                        format!("guest agent not ready within {deadline:?}"),
                        Some(qemu),
                    ));
                }
            }
        }
    };
    let t_hello = t0.elapsed();
    let b = boot_info.unwrap_or(Value::Null);
    let mut timings = json!({
        "accel": vm.accel.name(),
        "channel": chan.describe(),
        "vmm_spawn_ms": t_spawned.as_millis() as u64,
        "vmm_restored_ms": t_restored,
        "vmm_listening_ms": t_connected.as_millis() as u64,
        "guest_kernel_ms": b["kernel_ms"],
        "guest_modules_ms": b["modules_ms"],
        "guest_ready_ms": b["ready_ms"],
        "agent_hello_ms": t_hello.as_millis() as u64,
    });
    if let (Some(t), Some(i)) = (timings.as_object_mut(), info.as_object()) {
        t.extend(i.clone());
    }
    let _ = crate::write_state(&plan.state_dir.join("timings.json"), timings.to_string());
    Ok(Shim {
        link,
        events,
        events_tx,
        qemu,
        plan_channel: vm.channel.clone(),
        control: sock_path(&plan.state_dir, "shim.sock"),
        qmp: qmp_path,
        tty: None,
        state_dir: plan.state_dir.clone(),
        create: Some(create),
        virtiofsd,
        vsock_backend,
    })
}

/// The agent channel of one VM: the QEMU device, and for hybrid vsock the
/// backend to run (binary, vhost-user socket, hybrid socket).
pub(crate) struct ChannelPlan {
    device: ChannelDevice,
    backend: Option<(PathBuf, PathBuf, PathBuf)>,
    describe: String,
}

/// Picks the channel (annotation `run.skiff.vm.channel`, `$SKIFF_VM_CHANNEL`;
/// virtio-serial by default) and, for vsock, the backend
/// ([`vsock::choose`]). Runs before the fork: errors fail `create` at once.
fn channel_plan(plan: &Plan) -> Result<ChannelPlan, Error> {
    let wants = vsock::wants_vsock(&plan.spec["annotations"]).map_err(|message| Error::Spec {
        field: format!("annotations.{}", vsock::CHANNEL_ANNOTATION),
        message,
    })?;
    if !wants {
        return Ok(ChannelPlan {
            device: ChannelDevice::VirtioSerial,
            backend: None,
            describe: format!("virtio-serial (chardev {})", plan.vm.channel.display()),
        });
    }
    let port = vsock::AGENT_PORT;
    Ok(match vsock::choose().map_err(Error::NotFound)? {
        vsock::Backend::Kernel => {
            let cid = vsock::random_cid();
            ChannelPlan {
                device: ChannelDevice::VhostVsock { cid, port },
                backend: None,
                describe: format!(
                    "vsock (kernel {}, guest cid {cid}, port {port})",
                    vsock::VHOST_VSOCK_DEV
                ),
            }
        }
        vsock::Backend::VhostUser(bin) => {
            let socket = sock_path(&plan.state_dir, "vsock-vhost.sock");
            let uds = sock_path(&plan.state_dir, "vsock.sock");
            ChannelPlan {
                describe: format!(
                    "vsock (hybrid over vhost-user: {} on {}, host socket {}, port {port})",
                    bin.display(),
                    socket.display(),
                    uds.display()
                ),
                device: ChannelDevice::VhostUserVsock {
                    socket: socket.clone(),
                    port,
                },
                backend: Some((bin, socket, uds)),
            }
        }
    })
}

impl ChannelPlan {
    /// Connects to the agent (virtio-serial: QEMU's chardev at `serial`;
    /// hybrid vsock once the agent says on `console` that it listens).
    fn connect(
        &self,
        serial: &Path,
        console: &Path,
        deadline: Duration,
        alive: impl FnMut() -> bool,
    ) -> io::Result<Box<dyn Channel>> {
        Ok(match (&self.device, &self.backend) {
            (ChannelDevice::VirtioSerial, _) => {
                Box::new(VirtioSerial::connect(serial, deadline, alive)?)
            }
            (ChannelDevice::VhostVsock { cid, port }, _) => {
                Box::new(KernelVsock::connect(*cid, *port, deadline, alive)?)
            }
            (ChannelDevice::VhostUserVsock { port, .. }, Some((_, _, uds))) => {
                let ready = || {
                    fs::read_to_string(console).is_ok_and(|c| c.contains(vsock::LISTENING_MARKER))
                };
                Box::new(HybridVsock::connect(uds, *port, deadline, alive, ready)?)
            }
            (ChannelDevice::VhostUserVsock { .. }, None) => {
                return Err(io::Error::other("hybrid vsock without a backend"))
            }
        })
    }
}

/// The `vhost-device-vsock` of a hybrid vsock VM (own process group,
/// killed with the shim): stopped, and its sockets removed, when dropped.
struct VsockBackend {
    child: Option<Child>,
    files: [PathBuf; 2],
}

impl VsockBackend {
    /// Starts the backend for guest CID 3 (the CID only matters inside
    /// this VM) and waits for its vhost-user socket.
    fn spawn(
        plan: &Plan,
        (bin, socket, uds): &(PathBuf, PathBuf, PathBuf),
        log: &Path,
    ) -> io::Result<Self> {
        let _ = fs::remove_file(socket);
        let _ = fs::remove_file(uds);
        let child = template::spawn_qemu(bin, &vsock::backend_args(3, socket, uds), log, None)?;
        let _ = crate::write_state(&plan.state_dir.join("vsock.pid"), child.id().to_string());
        let mut b = VsockBackend {
            child: Some(child),
            files: [socket.clone(), uds.clone()],
        };
        let t = Instant::now();
        while !socket.exists() {
            if !b.alive() {
                return Err(io::Error::other(format!(
                    "exited: {}",
                    tail(log, 1024).trim()
                )));
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other(format!(
                    "no socket {} after 10 s",
                    socket.display()
                )));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(b)
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
    }
}

impl Drop for VsockBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts virtiofsd exporting the rootfs on `sock` (own process group,
/// killed with the shim) and waits for its socket.
fn spawn_virtiofsd(plan: &Plan, sock: &Path, log: &Path) -> io::Result<Child> {
    let _ = fs::remove_file(sock);
    let bin = plan
        .virtiofsd
        .as_ref()
        .ok_or_else(|| io::Error::other("no virtiofsd binary"))?;
    let args = vec![
        format!("--socket-path={}", sock.display()),
        "-o".into(),
        format!("source={}", plan.vm.rootfs.display()),
        "-o".into(),
        "cache=auto".into(),
        "-o".into(),
        "sandbox=namespace".into(),
    ];
    let mut child = template::spawn_qemu(bin, &args, log, None)?;
    let _ = crate::write_state(
        &plan.state_dir.join("virtiofsd.pid"),
        child.id().to_string(),
    );
    let t = Instant::now();
    while !sock.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(io::Error::other(format!(
                "exited ({st}): {}",
                tail(log, 1024).trim()
            )));
        }
        if t.elapsed() > Duration::from_secs(10) {
            kill_group(&mut child);
            return Err(io::Error::other("no socket after 10 s"));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(child)
}

/// Loads the template's device state into a QEMU started with
/// `-incoming defer` and lets the guest run.
fn restore(qemu: &mut Child, qmp_path: &Path, state: &File, deadline: Duration) -> io::Result<()> {
    let t = Instant::now();
    let mut qmp = Qmp::connect(qmp_path, deadline, || matches!(qemu.try_wait(), Ok(None)))?;
    qmp.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
    )?;
    qmp.execute(
        "migrate-incoming",
        json!({"uri": format!("fd:{}", state.as_raw_fd())}),
    )?;
    loop {
        let st = qmp.execute("query-status", Value::Null)?;
        match st["status"].as_str() {
            Some("running") => return Ok(()),
            Some("paused") | Some("postmigrate") | Some("prelaunch") => {
                qmp.execute("cont", Value::Null)?;
            }
            Some("inmigrate") => {}
            other => {
                return Err(io::Error::other(format!(
                    "VM in state {} after loading the template",
                    other.unwrap_or("?")
                )))
            }
        }
        if t.elapsed() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("template not loaded within {deadline:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// What the agent learns from the host's hello: the time (a restored
/// guest's clock is the template's), fresh randomness (a restored guest's
/// RNG state is the template's) and whether to be verbose.
fn host_facts(debug: bool) -> Value {
    let mut seed = [0u8; 32];
    // SAFETY: getrandom into a local buffer of the given length.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    json!({
        "time_ns": time_ns,
        "seed": (n == seed.len() as isize).then(|| hex::encode(seed)),
        "debug": debug,
    })
}

fn spawn_reader(link: Arc<Link>, mut reader: Box<dyn Read + Send>, events: mpsc::Sender<Event>) {
    thread::spawn(move || {
        let why = loop {
            let frame = match proto::read_frame(&mut reader) {
                Ok(Some(f)) => f,
                Ok(None) => break "end of stream".to_string(),
                Err(e) => break e.to_string(),
            };
            match frame.msg {
                Msg::Hello { version, boot, .. } => {
                    if version != proto::VERSION {
                        break format!(
                            "agent speaks protocol {version}, we speak {}",
                            proto::VERSION
                        );
                    }
                    let _ = events.send(Event::Hello(boot));
                }
                Msg::Response { id, ok, err } => {
                    if let Some(tx) = link.pending.lock().unwrap().remove(&id) {
                        let _ = tx.send(match err {
                            Some(e) => Err(e),
                            None => Ok(ok.unwrap_or(Value::Null)),
                        });
                    }
                }
                Msg::Output {
                    proc: proto::INIT_PROC,
                    fd,
                } => {
                    let target = TTY_FD.load(Ordering::Relaxed);
                    let out = if target >= 0 {
                        target as RawFd
                    } else if fd == 2 {
                        2
                    } else {
                        1
                    };
                    let _ = raw_write(out, &frame.payload);
                }
                Msg::Exit {
                    proc: proto::INIT_PROC,
                    status,
                } => {
                    let _ = events.send(Event::Exit(status));
                }
                ref m @ (Msg::Output { proc, .. } | Msg::Exit { proc, .. }) => {
                    if let Ok(bytes) = proto::encode(m, &frame.payload) {
                        link.route(proc, bytes);
                    }
                }
                other => log(&format!("unexpected message from agent: {other:?}")),
            }
        };
        link.pending.lock().unwrap().clear();
        let _ = events.send(Event::Closed(why));
    });
}

/// Descriptor the container's output goes to when it has a terminal (-1: stdio).
static TTY_FD: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);

/// Adds QEMU's peak RSS (VmHWM) to timings.json, for the benchmark.
fn record_peak_rss(q: &Child, state_dir: &Path) {
    let status = fs::read_to_string(format!("/proc/{}/status", q.id())).unwrap_or_default();
    let Some(kb) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    else {
        return;
    };
    let path = state_dir.join("timings.json");
    if let Some(mut t) = fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    {
        t["vmm_peak_rss_kb"] = json!(kb);
        let _ = crate::write_state(&path, t.to_string());
    }
}

fn kill_group(q: &mut Child) {
    // SAFETY: QEMU leads its own process group (setpgid in pre_exec).
    unsafe { libc::kill(-(q.id() as i32), libc::SIGKILL) };
    let _ = q.kill();
    let _ = q.wait();
}

impl Shim {
    fn cleanup(&mut self) {
        record_peak_rss(&self.qemu, &self.state_dir);
        kill_group(&mut self.qemu);
        if let Some(v) = &mut self.virtiofsd {
            kill_group(v);
        }
        if let Some(b) = &mut self.vsock_backend {
            b.stop();
        }
        let _ = fs::remove_file(&self.plan_channel);
        let _ = fs::remove_file(&self.control);
        let _ = fs::remove_file(&self.qmp);
    }

    fn run(mut self) -> i32 {
        loop {
            match self.events.recv() {
                Ok(Event::Exit(status)) => {
                    self.cleanup();
                    return status & 0xff;
                }
                Ok(Event::Closed(why)) => {
                    // The socket closes a moment before QEMU's exit status exists.
                    let t = Instant::now();
                    let status = loop {
                        match self.qemu.try_wait() {
                            Ok(Some(s)) => break s.to_string(),
                            _ if t.elapsed() > Duration::from_secs(1) => {
                                break "still running (killed now)".into()
                            }
                            _ => thread::sleep(Duration::from_millis(10)),
                        }
                    };
                    log(&format!(
                        "container stopped: VMM/agent channel lost ({why}); VMM {status}"
                    ));
                    self.cleanup();
                    return 255;
                }
                Ok(Event::Signal(libc::SIGCHLD)) => {
                    if let Ok(Some(s)) = self.qemu.try_wait() {
                        log(&format!("container stopped: VMM exited unexpectedly ({s})"));
                        self.cleanup();
                        return 255;
                    }
                }
                Ok(Event::Signal(libc::SIGWINCH)) => self.resize(),
                Ok(Event::Signal(sig)) => {
                    let link = Arc::clone(&self.link);
                    thread::spawn(move || {
                        if let Err(e) = link.request(
                            Request::Signal {
                                proc: proto::INIT_PROC,
                                signal: sig,
                                all: false,
                            },
                            Duration::from_secs(30),
                        ) {
                            log(&format!("forward signal {sig}: {e}"));
                        }
                    });
                }
                Ok(Event::Hello(_)) => {}
                Err(_) => return 255,
            }
        }
    }

    fn resize(&self) {
        if let Some(t) = &self.tty {
            // SAFETY: TIOCGWINSZ into a local winsize.
            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
            if unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0 {
                let _ = self.link.send(
                    &Msg::Resize {
                        proc: proto::INIT_PROC,
                        rows: ws.ws_row,
                        cols: ws.ws_col,
                    },
                    &[],
                );
            }
        }
    }

    fn spawn_signal_thread(&self, set: libc::sigset_t) {
        let tx = self.events_tx.clone();
        thread::spawn(move || loop {
            let mut sig = 0;
            // SAFETY: sigwait on the set blocked in every thread of the shim.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(Event::Signal(sig)).is_err()
            {
                return;
            }
        });
        if self.tty.is_some() {
            self.resize();
        }
    }

    fn spawn_stdin_thread(&self) {
        let link = Arc::clone(&self.link);
        let fd = self.tty.as_ref().map(|t| t.as_raw_fd()).unwrap_or(0);
        thread::spawn(move || {
            // SAFETY: borrowed descriptor, never closed here.
            let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = link.send(
                            &Msg::Stdin {
                                proc: proto::INIT_PROC,
                            },
                            &[],
                        );
                        return;
                    }
                    Ok(n) => {
                        if link
                            .send(
                                &Msg::Stdin {
                                    proc: proto::INIT_PROC,
                                },
                                &buf[..n],
                            )
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }

    fn serve_control(&self) -> io::Result<()> {
        let _ = fs::remove_file(&self.control);
        let listener = UnixListener::bind(&self.control)?;
        let link = Arc::clone(&self.link);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let link = Arc::clone(&link);
                thread::spawn(move || {
                    let _ = handle_client(link, conn);
                });
            }
        });
        Ok(())
    }
}

fn handle_client(link: Arc<Link>, mut conn: UnixStream) -> io::Result<()> {
    let Some(frame) = proto::read_frame(&mut conn)? else {
        return Ok(());
    };
    let Msg::Request { id, req } = frame.msg else {
        return Err(io::Error::other("expected a request"));
    };
    let is_exec = matches!(req, Request::Exec { .. });
    let result = link.request(req, Duration::from_secs(60));
    let reply = match &result {
        Ok(v) => Msg::Response {
            id,
            ok: Some(v.clone()),
            err: None,
        },
        Err(e) => Msg::Response {
            id,
            ok: None,
            err: Some(e.clone()),
        },
    };
    proto::write_frame(&mut conn, &reply, &[])?;
    let Some(proc) = result
        .ok()
        .filter(|_| is_exec)
        .and_then(|v| v["proc"].as_u64())
        .map(|p| p as u32)
    else {
        return Ok(());
    };
    // Exec: route the process's frames to this client, then relay its input.
    let writer = Arc::new(Mutex::new(conn.try_clone()?));
    {
        let mut r = link.routes.lock().unwrap();
        for f in r.stash.remove(&proc).unwrap_or_default() {
            let _ = writer.lock().unwrap().write_all(&f);
        }
        r.clients.insert(proc, writer);
    }
    while let Some(f) = proto::read_frame(&mut conn)? {
        match f.msg {
            Msg::Stdin { .. } => link.send(&Msg::Stdin { proc }, &f.payload)?,
            Msg::Resize { rows, cols, .. } => link.send(&Msg::Resize { proc, rows, cols }, &[])?,
            Msg::Request {
                id,
                req: Request::Signal { signal, all, .. },
            } => {
                let r = link.request(
                    Request::Signal { proc, signal, all },
                    Duration::from_secs(30),
                );
                let _ = id;
                let _ = r;
            }
            _ => {}
        }
    }
    link.routes.lock().unwrap().clients.remove(&proc);
    Ok(())
}

// ---------------------------------------------------------------- terminal

fn openpty() -> io::Result<(File, File)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: out-pointers valid; optional args null.
    if unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from openpty.
    Ok(unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) })
}

/// Raw mode on a host pty slave: the guest's pty already does the line discipline.
fn make_raw(slave: &File) {
    // SAFETY: termios calls on a descriptor we own, into a local struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
}

/// Sends `fd` over the unix socket at `path` (SCM_RIGHTS), like runc's console socket.
pub(crate) fn send_fd(path: &Path, fd: RawFd, name: &str) -> io::Result<()> {
    let sock = UnixStream::connect(path)?;
    let mut data = name.as_bytes().to_vec();
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr zero-initialised then filled with valid pointers/lengths;
    // the cmsg pointer comes from CMSG_FIRSTHDR over our buffer.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Host pty for a terminal container: the master goes to the console
/// socket, the shim keeps the slave (raw: the guest pty does the line
/// discipline) as its controlling terminal so resizes arrive as SIGWINCH.
fn setup_terminal(plan: &Plan) -> io::Result<File> {
    let sock = plan
        .console_socket
        .as_ref()
        .ok_or_else(|| io::Error::other("no console socket"))?;
    let (master, slave) = openpty()?;
    make_raw(&slave);
    // SAFETY: TIOCSCTTY on the slave we own; the shim is a session leader.
    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    send_fd(sock, master.as_raw_fd(), "/dev/ptmx")?;
    drop(master);
    TTY_FD.store(slave.as_raw_fd() as i64, Ordering::Relaxed);
    Ok(slave)
}

// ---------------------------------------------------------------- clients

fn connect_control(state_dir: &Path) -> Result<UnixStream, Error> {
    let path = sock_path(state_dir, "shim.sock");
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
            let (master, slave) = openpty().map_err(|e| io_err("openpty", e))?;
            make_raw(&slave);
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
            let keep = conn.as_raw_fd();
            let _ = keep;
            let code = relay(conn, tty);
            libc::_exit(code);
        }
    }
    Ok(pid)
}

/// Relays stdio between the caller and an exec'd process until it exits.
fn relay(conn: UnixStream, tty: Option<File>) -> i32 {
    let (in_fd, out_fd) = tty
        .as_ref()
        .map(|t| (t.as_raw_fd(), t.as_raw_fd()))
        .unwrap_or((0, 1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = Arc::clone(&stop);
    let stdin_thread = conn.try_clone().ok().map(|mut w| {
        thread::spawn(move || {
            // SAFETY: borrowed descriptor, valid until the relay joins this thread.
            let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(in_fd) });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                // Poll so the thread notices the end of the process and lets go of the fd.
                let mut pfd = libc::pollfd {
                    fd: in_fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
                if stop_reader.load(Ordering::Relaxed) {
                    return;
                }
                if ready == 0 {
                    continue;
                }
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = proto::write_frame(&mut w, &Msg::Stdin { proc: 0 }, &[]);
                        return;
                    }
                    Ok(n) => {
                        if proto::write_frame(&mut w, &Msg::Stdin { proc: 0 }, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        })
    });
    let mut conn = conn;
    let status = loop {
        match proto::read_frame(&mut conn) {
            Ok(Some(proto::Frame {
                msg: Msg::Output { fd, .. },
                payload,
            })) => {
                let _ = raw_write(if fd == 2 && tty.is_none() { 2 } else { out_fd }, &payload);
            }
            Ok(Some(proto::Frame {
                msg: Msg::Exit { status, .. },
                ..
            })) => break status & 0xff,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                log("exec: lost the VM container's shim");
                break 255;
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = stdin_thread {
        let _ = t.join();
    }
    drop(tty);
    status
}

fn pid_alive(pid: i32) -> bool {
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

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// See [`crate::delete`].
pub(crate) fn delete(state_dir: &Path) -> Result<(), Error> {
    let channel = sock_path(state_dir, "agent.sock");
    let channel_s = channel.to_string_lossy().into_owned();
    if let Some(vmm) = read_pid(&state_dir.join("vmm.pid")) {
        // Only kill the pid if it is still our QEMU (pids get reused).
        let cmdline = fs::read(format!("/proc/{vmm}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&channel_s) {
            // SAFETY: kill QEMU's process group (it called setpgid(0, 0)).
            unsafe {
                libc::kill(-vmm, libc::SIGKILL);
                libc::kill(vmm, libc::SIGKILL);
            }
            wait_gone(vmm);
        }
    }
    if let Some(shim) = read_pid(&state_dir.join("shim.pid")) {
        if pid_alive(shim) && fs::read_link(format!("/proc/{shim}/cwd")).is_ok() {
            // The shim's session id is its own pid (setsid).
            let stat = fs::read_to_string(format!("/proc/{shim}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            if fields.get(4).and_then(|s| s.parse::<i32>().ok()) == Some(shim) {
                // SAFETY: plain kill of the shim we started.
                unsafe { libc::kill(shim, libc::SIGKILL) };
                wait_gone(shim);
            }
        }
    }
    // virtiofsd and vhost-device-vsock: killed (with their process group)
    // only if the recorded pid still names this container's socket.
    for (pid_file, sock) in [
        ("virtiofsd.pid", "virtiofs.sock"),
        ("vsock.pid", "vsock-vhost.sock"),
    ] {
        let Some(v) = read_pid(&state_dir.join(pid_file)) else {
            continue;
        };
        let sock = sock_path(state_dir, sock);
        let cmdline = fs::read(format!("/proc/{v}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*sock.to_string_lossy()) {
            // SAFETY: kill the helper's group that this container started.
            unsafe {
                libc::kill(-v, libc::SIGKILL);
                libc::kill(v, libc::SIGKILL);
            }
            wait_gone(v);
        }
    }
    // QEMU is gone: the host bind mounts of file sources can go too.
    crate::unshare_files(state_dir);
    for name in [
        "agent.sock",
        "shim.sock",
        "qmp.sock",
        "virtiofs.sock",
        "vsock.sock",
        "vsock-vhost.sock",
    ] {
        let _ = fs::remove_file(sock_path(state_dir, name));
        let _ = fs::remove_file(state_dir.join(name));
    }
    for f in [
        "virtiofsd.pid",
        "vsock.pid",
        "vmm.pid",
        "shim.pid",
        "console.log",
        "vmm.log",
        "timings.json",
    ] {
        let _ = fs::remove_file(state_dir.join(f));
    }
    Ok(())
}

fn wait_gone(pid: i32) {
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(10));
    }
}

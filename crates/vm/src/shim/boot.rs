//! Bringing the shim's VM up: restored from a VM template when templates
//! apply (built first if missing), else, or when that fails, booted cold;
//! then the hellos and the create request.

use super::link::{spawn_reader, Event, Link, Routes, Sent};
use super::server::Shim;
use super::state_dir::remove_stale;
use super::vmm::{spawn_virtiofsd, ChannelPlan, VsockBackend};
use super::{kill_group, log, tail, write_state_file, Plan};
use crate::channel::vsock;
use crate::channel::Channel;
use crate::proto::{self, Msg, Request};
use crate::qemu::{ChannelDevice, VmConfig};
use crate::qmp::Qmp;
use crate::template;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(super) type BootFail = (&'static str, String, Option<Child>);

/// Brings the VM up: restored from a template when templates apply (built
/// first if missing), else, or when that fails, booted cold.
pub(super) fn boot(plan: &Plan, chan: &ChannelPlan) -> Result<Shim, BootFail> {
    let t0 = Instant::now();
    let vmm_log = plan.state_dir.vmm_log();
    crate::create_state_file(&vmm_log)
        .map_err(|e| ("boot", format!("create vmm.log: {e}"), None))?;
    // Truncates the log of an earlier boot; if that fails QEMU opens the
    // file itself and reports its own error.
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
    // Truncates the log of an earlier boot; if that fails QEMU opens the
    // file itself and reports its own error.
    let _ = crate::create_state_file(&plan.vm.console_log);
    start_vm(plan, chan, None, Instant::now(), json!({"boot": "cold"}))
}

/// Starts QEMU (restoring `template` if given), connects to the agent and
/// exchanges hellos. `info` goes into timings.json.
pub(super) fn start_vm(
    plan: &Plan,
    chan: &ChannelPlan,
    template: Option<&Path>,
    t0: Instant,
    info: Value,
) -> Result<Shim, BootFail> {
    let mut vm = plan.vm.clone();
    vm.template = template.is_some();
    let vmm_log = plan.state_dir.vmm_log();
    let qmp_path = plan.state_dir.qmp_socket();
    let (mut qemu, virtiofsd, mut vsock_backend, state) =
        spawn_vmm(plan, chan, &vm, template, &qmp_path)?;
    write_state_file(&plan.state_dir.vmm_pid(), &qemu.id().to_string());
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
    let (link, events, events_tx, create) = match open_link(&*chan, plan, &vm) {
        Ok(l) => l,
        Err(why) => return Err(("boot", why, Some(qemu))),
    };
    let b = match wait_hello(&events, &mut qemu, t0, deadline) {
        Ok(b) => b.unwrap_or(Value::Null),
        Err(why) => return Err(("boot", why, Some(qemu))),
    };
    let mut timings = json!({
        "accel": vm.accel.name(),
        "channel": chan.describe(),
        "vmm_spawn_ms": t_spawned.as_millis() as u64,
        "vmm_restored_ms": t_restored,
        "vmm_listening_ms": t_connected.as_millis() as u64,
        "guest_kernel_ms": b["kernel_ms"],
        "guest_modules_ms": b["modules_ms"],
        "guest_ready_ms": b["ready_ms"],
        "agent_hello_ms": t0.elapsed().as_millis() as u64,
    });
    if let (Some(t), Some(i)) = (timings.as_object_mut(), info.as_object()) {
        t.extend(i.clone());
    }
    write_state_file(&plan.state_dir.timings(), &timings.to_string());
    Ok(Shim {
        link,
        events,
        events_tx,
        qemu,
        plan_channel: vm.channel.clone(),
        control: plan.state_dir.control_socket(),
        qmp: qmp_path,
        tty: None,
        state_dir: plan.state_dir.clone(),
        create: Some(create),
        virtiofsd,
        vsock_backend,
    })
}

/// What [`spawn_vmm`] started: QEMU, virtiofsd and the vsock backend when
/// the VM has them, and the template's state file to restore from.
type Vmm = (Child, Option<Child>, Option<VsockBackend>, Option<File>);

/// Starts the daemons the VM needs, then QEMU (waiting for an incoming
/// migration when restoring `template`).
fn spawn_vmm(
    plan: &Plan,
    chan: &ChannelPlan,
    vm: &VmConfig,
    template: Option<&Path>,
    qmp_path: &Path,
) -> Result<Vmm, BootFail> {
    let vmm_log = plan.state_dir.vmm_log();
    remove_stale(&vm.channel);
    remove_stale(qmp_path);
    let (args, state) = match template {
        None => (crate::qemu::args_with(vm, &chan.device), None),
        Some(dir) => {
            let state = File::open(dir.join("state"))
                .map_err(|e| ("boot", format!("open {}/state: {e}", dir.display()), None))?;
            (
                template::vm_args(vm, &dir.join("memory"), false, qmp_path),
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
    let vsock_backend = match &chan.backend {
        Some(b) => Some(
            VsockBackend::spawn(plan, b, &vmm_log)
                .map_err(|e| ("boot", format!("{}: {e}", vsock::BACKEND_NAME), None))?,
        ),
        None => None,
    };
    let qemu = template::spawn_qemu(
        &vm.qemu,
        &args,
        &vmm_log,
        state.as_ref().map(|f| f.as_raw_fd()),
    )
    .map_err(|e| ("boot", format!("spawn {}: {e}", vm.qemu.display()), None))?;
    Ok((qemu, virtiofsd, vsock_backend, state))
}

/// The agent link over `chan` (its reader thread started), with the hello
/// and the create request sent.
type Opened = (Arc<Link>, mpsc::Receiver<Event>, mpsc::Sender<Event>, Sent);

/// Starts the link to the agent and sends the hello and, right behind
/// it, the create request.
fn open_link(chan: &dyn Channel, plan: &Plan, vm: &VmConfig) -> Result<Opened, String> {
    let (events_tx, events) = mpsc::channel();
    let (reader, writer) = match (chan.reader(), chan.writer()) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => return Err(format!("{}: {e}", chan.describe())),
    };
    let link = Arc::new(Link {
        writer: Mutex::new(writer),
        pending: Mutex::new(HashMap::new()),
        routes: Mutex::new(Routes::default()),
        next_id: AtomicU64::new(1),
    });
    spawn_reader(Arc::clone(&link), reader, events_tx.clone());
    link.send(
        &Msg::Hello {
            version: proto::VERSION,
            boot: None,
            host: Some(host_facts(plan.debug)),
        },
        &[],
    )
    .map_err(|e| format!("send hello: {e}"))?;
    // The create request follows the hello at once: the agent reads it as
    // soon as it has answered, without a round trip through the host.
    let create = link
        .send_request(Request::Create {
            id: plan.container_id.clone(),
            spec: plan.spec.clone(),
            rootfs_tag: "rootfs".into(),
            rootfs_type: vm.virtiofs.as_ref().map(|_| "virtiofs".into()),
        })
        .map_err(|e| format!("send create: {e}"))?;
    Ok((link, events, events_tx, create))
}

/// Waits for the agent's hello (its boot timings) until `deadline` after
/// `t0`, watching QEMU.
fn wait_hello(
    events: &mpsc::Receiver<Event>,
    qemu: &mut Child,
    t0: Instant,
    deadline: Duration,
) -> Result<Option<Value>, String> {
    loop {
        let left = deadline.saturating_sub(t0.elapsed());
        match events.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(Event::Hello(b)) => return Ok(b),
            Ok(Event::Closed(why)) => {
                let status = qemu.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!("VMM exited during boot ({status}): {why}"));
            }
            Ok(_) => {}
            Err(_) => {
                if let Ok(Some(status)) = qemu.try_wait() {
                    return Err(format!("VMM exited during boot ({status})"));
                }
                if t0.elapsed() >= deadline {
                    return Err(format!("guest agent not ready within {deadline:?}"));
                }
            }
        }
    }
}

/// Loads the template's device state into a QEMU started with
/// `-incoming defer` and lets the guest run.
pub(super) fn restore(
    qemu: &mut Child,
    qmp_path: &Path,
    state: &File,
    deadline: Duration,
) -> io::Result<()> {
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
pub(super) fn host_facts(debug: bool) -> Value {
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

//! skiff-agent: the `/init` of a skiff VM.
//!
//! Boot ([`boot`]): mount `/proc`, `/sys`, `/dev`, load the kernel modules
//! the host put in `/lib/modules/skiff` with `finit_module`, open the
//! channel to the host (virtio-serial port `skiff.0` or vsock) and answer
//! the host's protocol (crate `skiff-vm-proto`, shared with `skiff-vm`).
//!
//! The agent serves one container ([`handlers`]): `create` mounts the
//! rootfs the host shared and has skiff-runtime ([`rt`]) build the
//! container (caps, seccomp, namespaces, cgroups as on the host, terminals
//! through the runtime's console socket) with its init blocked before
//! `execve`; `start` releases it; `exec` starts more processes in it.
//! Process output is relayed as `Output` frames; when a process ends (the
//! agent is PID 1 and reaps everything) an `Exit` frame follows its last
//! output ([`process`]). When the host side goes away, or on `shutdown`,
//! the guest powers off.
//!
//! In a VM template (`skiff.template` on the kernel command line) the agent
//! runs a warm-up container, pre-starts worker threads ([`pool`]) and forks
//! the create helper before announcing that it can be saved; the host's
//! hello then brings the clock and a fresh RNG seed ([`clock`]). Built
//! static (`crt-static`), the agent avoids NSS functions.

mod boot;
mod clock;
mod handlers;
mod log;
mod pool;
mod process;
mod rt;
mod spec;

use handlers::Agent;
use log::{debug, log, monotonic_ms, uptime_ms};
use serde_json::{json, Value};
use skiff_vm_proto::{self as proto, Msg};
use std::fs::{self, File};
use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// In a template: runs the warm-up container, then announces on the
/// console that the VM can be saved. In every guest: forks the create
/// helper ahead of the first request.
fn prepare(agent: &Agent, template: bool) {
    if template && !boot::cmdline_has("skiff.no_warm_up") {
        let t = Instant::now();
        match rt::warm_up() {
            Ok(()) => debug(&format!("warm-up container took {:?}", t.elapsed())),
            Err(e) => log(&format!("warm-up container: {e}")),
        }
        agent.unclaimed.lock().unwrap().clear();
    }
    if let Err(e) = rt::prefork_create_helper() {
        log(&format!("fork the create helper: {e}"));
    }
    if template {
        // The host saves the VM now (it watches the console for this line)
        // and restores it for each container: everything below runs in the
        // restored guests.
        log(&format!("SKIFF-TEMPLATE-READY at {} ms", monotonic_ms()));
    }
}

/// Waits for the host's hello, applies its facts and answers with ours
/// (`timings`: kernel and module boot times in ms).
fn greet(agent: &Agent, port: &mut File, timings: (u64, u64), template: bool) -> io::Result<()> {
    // Until the host connects, reads return 0: wait for its Hello.
    let hello = loop {
        match proto::read_frame(port)? {
            Some(f) => break f,
            // The host connects right after a restore: poll finely.
            None => thread::sleep(Duration::from_millis(1)),
        }
    };
    let hello_read = monotonic_ms();
    if template {
        boot::premount_rootfs();
    }
    match hello.msg {
        Msg::Hello { version, host, .. } if version == proto::VERSION => {
            clock::apply_host_facts(&host.unwrap_or(Value::Null));
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
    Ok(())
}

/// Serves the host until it goes away.
fn serve(agent: Arc<Agent>, mut port: File, timings: (u64, u64), template: bool) -> io::Result<()> {
    prepare(&agent, template);
    greet(&agent, &mut port, timings, template)?;
    loop {
        let Some(frame) = proto::read_frame(&mut port)? else {
            log("host went away");
            return Ok(());
        };
        match frame.msg {
            Msg::Request { id, req } => {
                debug(&format!("request {id}: {}", handlers::req_name(&req)));
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
    boot::mount_base();
    let kernel_ms = uptime_ms();
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let has = |w: &str| cmdline.split_whitespace().any(|a| a == w);
    log::set_debug(has("skiff.debug"));
    boot::load_modules()?;
    let modules_ms = uptime_ms();
    debug(&format!("modules loaded after {:?}", t0.elapsed()));
    if has("skiff.probe") {
        log("SKIFF-PROBE-OK");
        return Ok(());
    }
    let port = boot::open_port(Duration::from_secs(20))?;
    let agent = Arc::new(Agent::new(port.try_clone()?));
    let reaper = Arc::clone(&agent);
    thread::spawn(move || reaper.reap());
    // Request handlers, the RNG reseed, the rootfs pre-mount and the stdio
    // relays and exit report of the first container run on these (see
    // pool.rs): in a template they are saved already started.
    pool::prestart(7);
    serve(agent, port, (kernel_ms, modules_ms), has("skiff.template"))
}

fn main() {
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
    boot::power_off();
}

//! The shim process: boots the VM, creates the container, reports to the
//! caller, then serves until the container exits: agent frames (reader
//! thread), signals (`sigwait` thread), stdin, and the control socket.

use super::boot::boot;
use super::link::{Event, Link, Sent};
use super::state_dir::{remove_stale, StateDir};
use super::tty::setup_terminal;
use super::vmm::{ChannelPlan, VsockBackend};
use super::{kill_group, log, write_state_file, Plan};
use crate::proto::{self, Msg, Request};
use serde_json::{json, Value};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(super) struct Shim {
    pub(super) link: Arc<Link>,
    pub(super) events: mpsc::Receiver<Event>,
    pub(super) events_tx: mpsc::Sender<Event>,
    pub(super) qemu: Child,
    pub(super) plan_channel: PathBuf,
    pub(super) control: PathBuf,
    pub(super) qmp: PathBuf,
    /// The create request sent right after the hello.
    pub(super) create: Option<Sent>,
    /// The virtio-fs daemon of the rootfs, if any.
    pub(super) virtiofsd: Option<Child>,
    /// The hybrid vsock backend, if any.
    pub(super) vsock_backend: Option<VsockBackend>,
    pub(super) tty: Option<File>,
    pub(super) state_dir: StateDir,
}

pub(super) fn block_signals() -> libc::sigset_t {
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

pub(super) fn close_inherited_fds(keep: RawFd) {
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

pub(super) fn shim_main(plan: &Plan, chan: &ChannelPlan, report: File) -> i32 {
    // SAFETY: setsid in the freshly forked child.
    unsafe { libc::setsid() };
    close_inherited_fds(report.as_raw_fd());
    let sigset = block_signals();
    let t0 = Instant::now();
    let mut report = Some(report);
    let mut send_report = |v: Value| {
        if let Some(mut r) = report.take() {
            // A caller that gave up waiting is gone; the shim then ends
            // with the container like any other.
            let _ = r.write_all(v.to_string().as_bytes());
        }
    };
    let mut shim = match boot(plan, chan) {
        Ok(s) => s,
        Err((kind, msg, qemu)) => {
            if let Some(mut q) = qemu {
                kill_group(&mut q);
            }
            remove_stale(&plan.vm.channel);
            remove_stale(&plan.state_dir.qmp_socket());
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
    if let Some(prev) = fs::read_to_string(plan.state_dir.timings())
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    {
        let mut t = prev;
        t["agent_ready_ms"] = json!(t_ready.as_millis() as u64);
        t["created_ms"] = json!(t_created.as_millis() as u64);
        write_state_file(&plan.state_dir.timings(), &t.to_string());
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

/// Adds QEMU's peak RSS (VmHWM) to timings.json, for the benchmark.
pub(super) fn record_peak_rss(q: &Child, state_dir: &StateDir) {
    let status = fs::read_to_string(format!("/proc/{}/status", q.id())).unwrap_or_default();
    let Some(kb) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    else {
        return;
    };
    let path = state_dir.timings();
    if let Some(mut t) = fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
    {
        t["vmm_peak_rss_kb"] = json!(kb);
        write_state_file(&path, &t.to_string());
    }
}

impl Shim {
    pub(super) fn cleanup(&mut self) {
        record_peak_rss(&self.qemu, &self.state_dir);
        kill_group(&mut self.qemu);
        if let Some(v) = &mut self.virtiofsd {
            kill_group(v);
        }
        if let Some(b) = &mut self.vsock_backend {
            b.stop();
        }
        remove_stale(&self.plan_channel);
        remove_stale(&self.control);
        remove_stale(&self.qmp);
    }

    pub(super) fn run(mut self) -> i32 {
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

    pub(super) fn resize(&self) {
        if let Some(t) = &self.tty {
            // SAFETY: an all-zero winsize is a valid value.
            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
            // SAFETY: TIOCGWINSZ writes a winsize into the local above.
            if unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0 {
                // A lost channel is noticed by the reader thread, which
                // ends the shim.
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

    pub(super) fn spawn_signal_thread(&self, set: libc::sigset_t) {
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

    pub(super) fn spawn_stdin_thread(&self) {
        let link = Arc::clone(&self.link);
        let fd = self.tty.as_ref().map(|t| t.as_raw_fd()).unwrap_or(0);
        thread::spawn(move || {
            // SAFETY: borrowed descriptor, never closed here.
            let mut input = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // A lost channel is noticed by the reader thread.
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

    pub(super) fn serve_control(&self) -> io::Result<()> {
        remove_stale(&self.control);
        let listener = UnixListener::bind(&self.control)?;
        let link = Arc::clone(&self.link);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let link = Arc::clone(&link);
                thread::spawn(move || {
                    // A client's error ends its connection only; the
                    // client sees the closed socket.
                    let _ = handle_client(link, conn);
                });
            }
        });
        Ok(())
    }
}

pub(super) fn handle_client(link: Arc<Link>, mut conn: UnixStream) -> io::Result<()> {
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
            // A client that went away has no use for its process's output.
            let _ = writer.lock().unwrap().write_all(&f);
        }
        r.clients.insert(proc, writer);
    }
    while let Some(f) = proto::read_frame(&mut conn)? {
        match f.msg {
            Msg::Stdin { .. } => link.send(&Msg::Stdin { proc }, &f.payload)?,
            Msg::Resize { rows, cols, .. } => link.send(&Msg::Resize { proc, rows, cols }, &[])?,
            Msg::Request {
                req: Request::Signal { signal, all, .. },
                ..
            } => {
                // The client does not wait for an answer, and a process
                // that already exited is no error worth reporting.
                let _ = link.request(
                    Request::Signal { proc, signal, all },
                    Duration::from_secs(30),
                );
            }
            _ => {}
        }
    }
    link.routes.lock().unwrap().clients.remove(&proc);
    Ok(())
}

//! The host's requests: `create` mounts the rootfs the host shared and has
//! skiff-runtime build the container with its init blocked before
//! `execve`; `start` releases it; `exec` starts more processes in the
//! container; `signal`, `stats`, `pause`/`resume` (the cgroup freezer) and
//! `shutdown`. Each request gets one `Response` frame.

use crate::boot::{self, power_off, ROOTFS};
use crate::clock::reseeded;
use crate::log::{debug, log};
use crate::process::Proc;
use crate::proto::{self, Msg, Request};
use crate::rt;
use crate::spec;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The agent's state: the channel to the host, the container and its
/// processes.
pub struct Agent {
    out: Mutex<File>,
    /// Registered processes by protocol number ([`proto::INIT_PROC`] is
    /// the container's init).
    pub procs: Mutex<HashMap<u32, Proc>>,
    init_pid: AtomicI32,
    next_proc: AtomicU32,
    /// Exit statuses of children reaped before they were registered (a
    /// process started by the runtime runs at once and may end first).
    pub unclaimed: Mutex<HashMap<i32, i32>>,
    rt: Mutex<Option<Arc<rt::RtContainer>>>,
}

impl Agent {
    /// An agent answering on `port` (a clone of the channel's descriptor).
    pub fn new(out: File) -> Self {
        Agent {
            out: Mutex::new(out),
            procs: Mutex::new(HashMap::new()),
            init_pid: AtomicI32::new(0),
            next_proc: AtomicU32::new(1),
            unclaimed: Mutex::new(HashMap::new()),
            rt: Mutex::new(None),
        }
    }

    /// Sends one frame to the host (a write error is logged: the host is
    /// gone and the agent will see EOF on its next read).
    pub fn send(&self, msg: &Msg, payload: &[u8]) {
        let mut out = self.out.lock().unwrap();
        if let Err(e) = proto::write_frame(&mut *out, msg, payload) {
            log(&format!("write to host: {e}"));
        }
    }

    fn respond(&self, id: u64, result: io::Result<Value>) {
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
    }

    /// Answers request `id`.
    pub fn handle(self: &Arc<Self>, id: u64, req: Request) {
        let is_create = matches!(req, Request::Create { .. });
        let result = match req {
            Request::Create {
                id: cid,
                spec,
                rootfs_tag,
                rootfs_type,
            } => self.create(&cid, &spec, &rootfs_tag, rootfs_type.as_deref()),
            Request::Start => self.start(),
            Request::Exec { process } => self.exec(&process).map(|n| json!({ "proc": n })),
            Request::Signal { proc, signal, all } => self.signal(proc, signal, all),
            Request::Stats => Ok(self.stats()),
            Request::Pause => self.freeze(true),
            Request::Resume => self.freeze(false),
            Request::Shutdown => {
                self.respond(id, Ok(Value::Null));
                power_off();
            }
        };
        debug(&format!("request {id} done"));
        let created = is_create && result.is_ok();
        self.respond(id, result);
        if created {
            if let Some(c) = self.rt.lock().unwrap().clone() {
                c.preload();
            }
        }
    }

    fn create(
        self: &Arc<Self>,
        cid: &str,
        spec: &Value,
        tag: &str,
        fstype: Option<&str>,
    ) -> io::Result<Value> {
        if self.rt.lock().unwrap().is_some() {
            return Err(io::Error::other("container already created in this VM"));
        }
        debug("create: started");
        let mut spec = spec.clone();
        spec::prepare_binds(&mut spec)?;
        spec::install_seccomp_program(&mut spec)?;
        let t = Instant::now();
        boot::mount_rootfs(tag, fstype)?;
        debug(&format!("rootfs mounted in {:?}", t.elapsed()));
        let t = Instant::now();
        let (c, pending) = rt::RtContainer::create(cid, &spec, ROOTFS)?;
        debug(&format!("skiff-runtime create took {:?}", t.elapsed()));
        let c = Arc::new(c);
        *self.rt.lock().unwrap() = Some(Arc::clone(&c));
        let pid = pending.pid;
        self.init_pid.store(pid, Ordering::SeqCst);
        self.register(proto::INIT_PROC, pending);
        if let Some(p) = self.procs.lock().unwrap().get_mut(&proto::INIT_PROC) {
            p.pending = Some(Box::new(move || c.start()));
        }
        debug(&format!("created with skiff-runtime, init pid {pid}"));
        Ok(json!({ "pid": pid }))
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

    /// Starts `process` in the container; returns its protocol number.
    fn exec(self: &Arc<Self>, process: &Value) -> io::Result<u32> {
        reseeded().wait(Duration::from_secs(10));
        let c = self
            .rt
            .lock()
            .unwrap()
            .clone()
            .filter(|_| self.init_pid.load(Ordering::SeqCst) > 0)
            .ok_or_else(|| io::Error::other("no container to exec into"))?;
        let pending = c.exec(process)?;
        let n = self.next_proc.fetch_add(1, Ordering::SeqCst);
        self.register(n, pending);
        Ok(n)
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
        json!({
            "guest": { "mem_total": field("MemTotal:"), "mem_available": field("MemAvailable:"),
                       "loadavg": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim() },
            "memory": { "usage": read_cg("memory.current"), "limit": read_cg("memory.max") },
            "pids": self.pids(),
            "frozen": cg.as_ref().map(|d| cgroup_frozen(d)),
        })
    }

    /// The cgroup directory the runtime put the container's init in.
    fn container_cgroup(&self) -> Option<String> {
        let pid = self.init_pid.load(Ordering::SeqCst);
        let line = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = line.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        Some(format!("/sys/fs/cgroup{path}"))
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
}

/// `frozen 1` in the cgroup's `cgroup.events`.
fn cgroup_frozen(dir: &str) -> bool {
    fs::read_to_string(format!("{dir}/cgroup.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l == "frozen 1")
}

/// The name of a request, for the debug log.
pub fn req_name(r: &Request) -> &'static str {
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

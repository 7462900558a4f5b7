//! The shim's connection to the agent: requests and their answers, the
//! reader thread that decodes the agent's frames, and the routing of exec'd
//! processes' frames to the client that asked for the exec.

use super::{log, raw_write};
use crate::proto::{self, Msg, Request};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

pub(super) enum Event {
    Hello(Option<Value>),
    Exit(i32),
    Closed(String),
    Signal(i32),
}

#[derive(Default)]
pub(super) struct Routes {
    pub(super) clients: HashMap<u32, Arc<Mutex<UnixStream>>>,
    pub(super) stash: HashMap<u32, Vec<Vec<u8>>>,
}

/// The shared agent link.
pub(super) struct Link {
    pub(super) writer: Mutex<Box<dyn Write + Send>>,
    pub(super) pending: Mutex<HashMap<u64, mpsc::Sender<Result<Value, String>>>>,
    pub(super) routes: Mutex<Routes>,
    pub(super) next_id: AtomicU64,
}

impl Link {
    pub(super) fn send(&self, msg: &Msg, payload: &[u8]) -> io::Result<()> {
        proto::write_frame(&mut **self.writer.lock().unwrap(), msg, payload)
    }

    pub(super) fn request(&self, req: Request, timeout: Duration) -> Result<Value, String> {
        self.send_request(req)?.wait(self, timeout)
    }

    /// Sends a request; its answer is collected with [`Sent::wait`].
    pub(super) fn send_request(&self, req: Request) -> Result<Sent, String> {
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
    pub(super) fn route(&self, proc: u32, frame: Vec<u8>) {
        let mut r = self.routes.lock().unwrap();
        match r.clients.get(&proc) {
            Some(c) => {
                // A client that went away has no use for the frame.
                let _ = c.lock().unwrap().write_all(&frame);
            }
            None => r.stash.entry(proc).or_default().push(frame),
        }
    }
}

/// A request sent to the agent, not answered yet.
pub(super) struct Sent {
    pub(super) id: u64,
    pub(super) rx: mpsc::Receiver<Result<Value, String>>,
    pub(super) what: String,
}

impl Sent {
    /// Waits for the answer.
    pub(super) fn wait(self, link: &Link, timeout: Duration) -> Result<Value, String> {
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

pub(super) fn spawn_reader(
    link: Arc<Link>,
    mut reader: Box<dyn Read + Send>,
    events: mpsc::Sender<Event>,
) {
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
                    // No receiver: the shim is ending and waits for nothing.
                    let _ = events.send(Event::Hello(boot));
                }
                Msg::Response { id, ok, err } => {
                    if let Some(tx) = link.pending.lock().unwrap().remove(&id) {
                        // No receiver: the requester timed out and left.
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
                    // Output to a closed stdout is dropped, as a pipe
                    // without a reader would.
                    let _ = raw_write(out, &frame.payload);
                }
                Msg::Exit {
                    proc: proto::INIT_PROC,
                    status,
                } => {
                    // No receiver: the shim is ending anyway.
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
        // No receiver: the shim is ending anyway.
        let _ = events.send(Event::Closed(why));
    });
}

/// Descriptor the container's output goes to when it has a terminal (-1: stdio).
pub(super) static TTY_FD: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(-1);

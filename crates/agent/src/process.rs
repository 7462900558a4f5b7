//! The container's processes as the agent tracks them: their stdio relayed
//! to the host as `Output` frames, stdin and resizes from the host, signals,
//! and their exits (the agent is PID 1 and reaps everything) reported as
//! `Exit` frames after their last output.

use crate::handlers::Agent;
use crate::log::debug;
use crate::pool;
use crate::proto::Msg;
use serde_json::Value;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// A container process the runtime started, with the agent's ends of its
/// stdio.
pub struct Pending {
    /// Its pid in the guest.
    pub pid: i32,
    /// Write end of its stdin (the pty master when it has a terminal).
    pub stdin: Option<File>,
    /// Read end of stdout (the pty master when it has a terminal).
    pub stdout: Option<File>,
    /// Read end of stderr (none with a terminal).
    pub stderr: Option<File>,
}

impl Pending {
    /// A process whose stdio are pipes.
    pub fn started(pid: i32, stdin: File, stdout: File, stderr: File) -> Self {
        Pending {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// A process whose stdio is the pty `master` (the runtime's
    /// console-socket path).
    pub fn terminal(pid: i32, master: File) -> io::Result<Self> {
        Ok(Pending {
            pid,
            stdin: Some(master.try_clone()?),
            stdout: Some(master),
            stderr: None,
        })
    }
}

/// Counts the output streams of a process still open.
pub struct Streams {
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
        // A timeout is the grace period running out: report anyway.
        let _ = self.cv.wait_timeout_while(g, max, |n| *n > 0);
    }
}

/// What releases a created process (the init until `start`).
pub type Release = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A registered process.
pub struct Proc {
    pid: i32,
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    pty: Option<File>,
    /// Releases a created process (the init until `start`).
    pub pending: Option<Release>,
    streams: Arc<Streams>,
}

impl Agent {
    /// Registers process `n`, starts relaying its output and its stdin.
    pub fn register(self: &Arc<Self>, n: u32, mut p: Pending) {
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
        for (fd, file) in readers {
            self.relay_output(n, fd, file, Arc::clone(&streams));
        }
        let pty = if is_tty {
            p.stdin.as_ref().and_then(|f| f.try_clone().ok())
        } else {
            None
        };
        let stdin = p.stdin.take().map(relay_stdin);
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
    }

    /// Relays `file` (stream `fd` of process `n`) as `Output` frames until EOF.
    fn relay_output(self: &Arc<Self>, n: u32, fd: u8, mut file: File, streams: Arc<Streams>) {
        let agent = Arc::clone(self);
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

    /// Sends `signal` to process `proc`, or with `all` to every process
    /// of the guest but the agent.
    pub fn signal(&self, proc: u32, signal: i32, all: bool) -> io::Result<Value> {
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

    /// The pids of the registered processes.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.lock().unwrap().values().map(|p| p.pid).collect()
    }

    /// Passes host stdin to process `proc`; empty data closes its stdin.
    pub fn stdin(&self, proc: u32, data: Vec<u8>) {
        let mut procs = self.procs.lock().unwrap();
        if let Some(p) = procs.get_mut(&proc) {
            if data.is_empty() {
                p.stdin = None;
            } else if let Some(tx) = &p.stdin {
                // The writer ends when the process closed its stdin: the
                // data has nowhere to go, as with a closed pipe.
                let _ = tx.send(data);
            }
        }
    }

    /// Sets the window size of process `proc`'s terminal.
    pub fn resize(&self, proc: u32, rows: u16, cols: u16) {
        if let Some(pty) = self
            .procs
            .lock()
            .unwrap()
            .get(&proc)
            .and_then(|p| p.pty.as_ref())
        {
            if let Err(e) = skiff_sys::pty::set_size(pty.as_raw_fd(), rows, cols) {
                debug(&format!("resize process {proc}: {e}"));
            }
        }
    }

    /// Reaps every child (we are PID 1) and reports container processes' exits.
    pub fn reap(self: Arc<Self>) {
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

/// Starts a writer of `w` fed by the returned channel; an empty chunk or
/// a write error ends it (closing the process's stdin).
fn relay_stdin(mut w: File) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    pool::spawn(move || {
        while let Ok(data) = rx.recv() {
            if data.is_empty() || w.write_all(&data).is_err() {
                break;
            }
        }
    });
    tx
}

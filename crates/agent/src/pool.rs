//! Threads started ahead of time.
//!
//! Under emulation (TCG) the first `std::thread::spawn` after a VM is
//! restored from a template costs tens of milliseconds (every code path
//! of thread creation is translated afresh), and the agent starts threads
//! on the container's critical path: one per request, two output relays and
//! a stdin writer per process. [`prestart`] starts idle workers before the
//! template is saved; [`spawn`] hands a task to an idle worker, or starts a
//! thread when none is idle. Workers that finish a task wait for the next.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

type Task = Box<dyn FnOnce() + Send>;

struct Pool {
    tx: Mutex<Sender<Task>>,
    rx: Arc<Mutex<Receiver<Task>>>,
    idle: Arc<AtomicUsize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        Pool {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
        }
    })
}

/// Starts `n` idle workers.
pub fn prestart(n: usize) {
    let p = pool();
    for _ in 0..n {
        let (rx, idle) = (Arc::clone(&p.rx), Arc::clone(&p.idle));
        idle.fetch_add(1, Ordering::SeqCst);
        thread::spawn(move || loop {
            let task = match rx.lock().unwrap().recv() {
                Ok(t) => t,
                Err(_) => return,
            };
            task();
            idle.fetch_add(1, Ordering::SeqCst);
        });
    }
}

/// Runs `f` on an idle worker, or on a new thread when none is idle.
pub fn spawn(f: impl FnOnce() + Send + 'static) {
    let p = pool();
    let reserved = p
        .idle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if !reserved {
        thread::spawn(f);
        return;
    }
    let sent = p.tx.lock().unwrap().send(Box::new(f));
    if let Err(mpsc::SendError(task)) = sent {
        thread::spawn(task);
    }
}

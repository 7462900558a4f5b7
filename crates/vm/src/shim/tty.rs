//! Terminals and stdio relays: the host pty of a terminal container (its
//! master sent to the console socket), and the relay between the caller of
//! `exec` and the exec'd process.

use super::link::TTY_FD;
use super::{log, raw_write, Plan};
use crate::proto::{self, Msg};
use std::fs::File;
use std::io::{self, Read};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

/// Sends `fd` over the unix socket at `path` (SCM_RIGHTS), like runc's console socket.
pub(crate) fn send_fd(path: &Path, fd: RawFd, name: &str) -> io::Result<()> {
    let sock = UnixStream::connect(path)?;
    skiff_sys::fdpass::send_fd(sock.as_raw_fd(), fd, name)
}

/// A host pty pair whose slave is raw: the guest's pty already does the
/// line discipline.
pub(super) fn raw_pty() -> io::Result<(File, File)> {
    let (master, slave) = skiff_sys::pty::openpty()?;
    skiff_sys::pty::make_raw(&slave)?;
    Ok((master, slave))
}

/// Host pty for a terminal container: the master goes to the console
/// socket, the shim keeps the slave (raw: the guest pty does the line
/// discipline) as its controlling terminal so resizes arrive as SIGWINCH.
pub(super) fn setup_terminal(plan: &Plan) -> io::Result<File> {
    let sock = plan
        .console_socket
        .as_ref()
        .ok_or_else(|| io::Error::other("no console socket"))?;
    let (master, slave) = raw_pty()?;
    // SAFETY: TIOCSCTTY on the slave we own; the shim is a session leader.
    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    send_fd(sock, master.as_raw_fd(), "/dev/ptmx")?;
    drop(master);
    TTY_FD.store(slave.as_raw_fd() as i64, Ordering::Relaxed);
    Ok(slave)
}

/// Relays stdio between the caller and an exec'd process until it exits.
pub(super) fn relay(conn: UnixStream, tty: Option<File>) -> i32 {
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
                        // The EOF is a courtesy: a lost shim ends the relay anyway.
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
                // Output to a closed stdout is dropped, as a pipe without
                // a reader would.
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
        // A panicked stdin thread has nothing left to relay.
        let _ = t.join();
    }
    drop(tty);
    status
}

//! The terminal relay of a foreground `run`/`exec` with `process.terminal`
//! and no `--console-socket`: the caller's terminal is put in raw mode and
//! bytes are copied between it and the container's pty master.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{PollFd, PollFlags};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::Context;
use crate::Result;

/// Copies stdin -> pty master and pty master -> stdout.
pub struct Proxy {
    master: OwnedFd,
    saved: Option<Termios>,
    stdin_open: bool,
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl Proxy {
    /// Takes the pty master; raw mode on our stdin if it is a terminal.
    pub fn new(master: OwnedFd) -> Result<Proxy> {
        let saved = termios::tcgetattr(stdin()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin(), SetArg::TCSANOW, &raw);
        }
        let flags =
            nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL).ctx(|| "pty flags")?;
        let _ = nix::fcntl::fcntl(
            &master,
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        );
        let p = Proxy {
            master,
            saved,
            stdin_open: true,
        };
        p.resize();
        Ok(p)
    }

    /// Copies our terminal's window size to the pty.
    pub fn resize(&self) {
        // SAFETY: an all-zero winsize is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize struct.
        unsafe {
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// Fds to poll: stdin (while open) and the master.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let stdin_flags = if self.stdin_open {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        vec![
            PollFd::new(stdin(), stdin_flags),
            PollFd::new(self.master.as_fd(), PollFlags::POLLIN),
        ]
    }

    /// Moves whatever is ready (`ready` parallels [`Proxy::poll_fds`]).
    pub fn pump(&mut self, ready: &[bool]) {
        let mut buf = [0u8; 8192];
        if ready.first() == Some(&true) && self.stdin_open {
            match nix::unistd::read(stdin(), &mut buf) {
                Ok(0) | Err(_) => self.stdin_open = false,
                Ok(n) => {
                    let _ = write_all(self.master.as_fd(), &buf[..n]);
                }
            }
        }
        if ready.get(1) == Some(&true) {
            self.drain();
        }
    }

    /// Copies pending pty output to stdout.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 8192];
        while let Ok(n) = nix::unistd::read(&self.master, &mut buf) {
            if n == 0 {
                break;
            }
            // SAFETY: fd 1 stays open for the life of the process.
            let _ = write_all(unsafe { BorrowedFd::borrow_raw(1) }, &buf[..n]);
        }
    }
}

fn write_all(fd: BorrowedFd, mut b: &[u8]) -> nix::Result<()> {
    while !b.is_empty() {
        match nix::unistd::write(fd, b) {
            Ok(n) => b = &b[n..],
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(stdin(), SetArg::TCSANOW, t);
        }
    }
}

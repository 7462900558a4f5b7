//! Waiting for a foreground container process (`run`, `exec` without
//! `-d`): signals are forwarded to it, a terminal is proxied, and its exit
//! status becomes the runtime's.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::Context;
use crate::Result;

/// The signals `run`/`exec` forward to the container (all but those that
/// cannot be caught or that report a fault of the runtime itself).
pub fn forwarded_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTSTP
                | Signal::SIGTTIN
                | Signal::SIGTTOU
        ) {
            mask.add(s);
        }
    }
    mask
}

/// Waits for `pid` (a child of this process) while forwarding signals to it;
/// returns its exit code (128+signal when killed), as `run` reports it.
pub fn wait_forwarding(pid: i32, console: Option<OwnedFd>) -> Result<i32> {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mask = forwarded_signals();
    mask.thread_block().ctx(|| "blocking signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "signalfd")?;
    let mut proxy = console.map(crate::tty::Proxy::new).transpose()?;
    let code = loop {
        // Reap everything (we may be a subreaper); stop when the init is gone.
        let mut st = 0;
        let mut done = None;
        loop {
            // SAFETY: waitpid with a valid status pointer.
            let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if r == pid {
                done = Some(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                });
            }
        }
        if let Some(c) = done {
            break c;
        }
        let mut fds = vec![nix::poll::PollFd::new(
            sfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(p) = &proxy {
            fds.extend(p.poll_fds());
        }
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16));
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        while let Ok(Some(si)) = sfd.read_signal() {
            let sig = si.ssi_signo as i32;
            if sig == libc::SIGCHLD {
                continue;
            }
            if sig == libc::SIGWINCH {
                if let Some(p) = &proxy {
                    p.resize();
                }
            }
            // SAFETY: forwarding a signal to our child.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(p) = &mut proxy {
            p.pump(&ready[1..]);
        }
    };
    if let Some(p) = &mut proxy {
        p.drain();
    }
    let _ = mask.thread_unblock();
    Ok(code)
}

/// Becomes a child subreaper, so that a container init forked twice (joined
/// namespaces) is still reaped by `run`.
pub fn set_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

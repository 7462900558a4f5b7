//! Container consoles: a pty created inside the container's devpts, whose
//! master is sent to the caller over `--console-socket` (SCM_RIGHTS, as runc)
//! and whose slave becomes the process's stdio and /dev/console.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Opens /dev/ptmx (the container's, after pivot_root) and returns
/// (master, slave, slave path).
pub fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd, String)> {
    let path = c"/dev/ptmx";
    // SAFETY: open with a NUL-terminated path; the fd is owned below.
    let m = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: m is a fresh fd we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on a valid pty master with correctly typed arguments.
    unsafe {
        if libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(m, libc::TIOCGPTN, &mut n) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // TIOCGPTPEER opens the slave without a path lookup.
    // SAFETY: ioctl returning a new fd on a valid master.
    let s = unsafe {
        libc::ioctl(
            m,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: s is a fresh fd we own.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    if rows > 0 || cols > 0 {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize.
        unsafe { libc::ioctl(s, libc::TIOCSWINSZ, &ws) };
    }
    Ok((master, slave, format!("/dev/pts/{n}")))
}

/// Sends `fd` over the connected unix socket `sock` with the name payload
/// runc uses (the pty path).
pub fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(name.as_bytes())];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives an fd sent by [`send_fd`] (used by `run` with a terminal and no
/// console socket).
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cspace = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut cspace),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&f) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
    }
    Err(io::Error::other("no fd received on the console socket"))
}

/// Makes `slave` the controlling terminal and stdio of the calling process.
pub fn make_stdio(slave: &OwnedFd) -> io::Result<()> {
    let s = slave.as_raw_fd();
    for t in 0..3 {
        // SAFETY: dup2 onto stdio fds.
        if unsafe { libc::dup2(s, t) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: TIOCSCTTY on our new stdin (a tty); we are a session leader.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

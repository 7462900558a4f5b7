//! Pseudo-terminals: a container's console (a pty opened through the
//! container's own `/dev/ptmx`) and a host pty in raw mode (the VM shim's,
//! whose line discipline is the guest's).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opens `/dev/ptmx` (the container's, after `pivot_root`) and returns
/// (master, slave, slave path). The slave is opened with `TIOCGPTPEER` (no
/// path lookup); `rows`/`cols` other than 0 set its window size.
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
        // Best effort, as runc: a console without a size still works.
        let _ = set_size(s, rows, cols);
    }
    Ok((master, slave, format!("/dev/pts/{n}")))
}

/// Sets the window size of the terminal `fd` (`TIOCSWINSZ`).
pub fn set_size(fd: std::os::fd::RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize; a bad fd is an error.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `slave` the stdio and the controlling terminal of the calling
/// process (which must be a session leader).
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

/// A host pty pair (master, slave) from `openpty(3)`.
pub fn openpty() -> io::Result<(File, File)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: out-pointers valid; optional args null.
    if unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from openpty, owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) })
}

/// Puts the terminal `tty` in raw mode (`cfmakeraw`): no echo, no line
/// editing, no signal characters.
pub fn make_raw(tty: &File) -> io::Result<()> {
    // SAFETY: termios calls on a descriptor we own, into a local struct.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(tty.as_raw_fd(), &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn raw_host_pty_passes_bytes() {
        let (mut m, mut s) = openpty().unwrap();
        make_raw(&s).unwrap();
        set_size(s.as_raw_fd(), 40, 100).unwrap();
        m.write_all(b"x\r").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x\r");
    }
}

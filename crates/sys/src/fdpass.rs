//! Passing descriptors over unix sockets (`SCM_RIGHTS`), as runc's
//! `--console-socket` does: one descriptor per message, with a short name
//! (the pty path) as the payload.
//!
//! Both directions use stack buffers only, so they may run in a process
//! forked from a multi-threaded one.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Control-message buffer for one descriptor, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends `fd` over the connected unix socket `sock`, with `name` as the
/// message's data (runc sends the pty path). `MSG_NOSIGNAL`: a peer that
/// went away is an `EPIPE` error, not a `SIGPIPE`.
pub fn send_fd(sock: RawFd, fd: RawFd, name: &str) -> io::Result<()> {
    // A message needs at least one byte of data.
    let data: &[u8] = if name.is_empty() {
        b"\0"
    } else {
        name.as_bytes()
    };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure computations.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize,
            libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize,
        )
    };
    debug_assert!(space <= cbuf.0.len());
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at iov and cbuf, which outlive the calls; cbuf is
    // aligned for cmsghdr and large enough for one descriptor, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA points inside it; the kernel
    // only reads the buffers.
    let r = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = len as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives a descriptor sent by [`send_fd`] (close-on-exec), discarding
/// the name. An error when the message carries no descriptor.
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    loop {
        // SAFETY: msg points at local buffers that outlive the call.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: the kernel filled msg_control (msg_controllen bytes of cbuf);
    // CMSG_FIRSTHDR returns null or a header inside it, and a SCM_RIGHTS
    // header is followed by at least one descriptor.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other("no descriptor received on the socket"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
        // SAFETY: the kernel installed this descriptor for us; nothing else owns it.
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn passes_a_socket_end() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        send_fd(a.as_raw_fd(), d.as_raw_fd(), "/dev/pts/7").unwrap();
        drop(d);
        let mut got = UnixStream::from(recv_fd(b.as_raw_fd()).unwrap());
        got.write_all(b"hi").unwrap();
        drop(got);
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
    }

    #[test]
    fn no_descriptor_is_an_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"x").unwrap();
        assert!(recv_fd(b.as_raw_fd()).is_err());
    }
}

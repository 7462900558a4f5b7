//! The channel between the runtime and the container's init while it is set
//! up: a SOCK_SEQPACKET socketpair carrying one-byte tags with small payloads
//! (and fds over SCM_RIGHTS).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Parent -> child: id maps are written and the cgroup is joined; go on.
pub const GO: u8 = 1;
/// Child -> parent: mounts done; run prestart/createRuntime hooks.
pub const HOOKS: u8 = 2;
/// Parent -> child: hooks done.
pub const HOOKS_DONE: u8 = 3;
/// Child -> parent: set up; blocking on the exec fifo.
pub const READY: u8 = 4;
/// Child -> parent: setup failed; payload is the message.
pub const ERROR: u8 = 5;
/// Child -> parent: pid of the real init (after an extra fork), payload i32.
pub const PID: u8 = 6;
/// Child -> parent: seccomp notify fd (SCM_RIGHTS) for the listener.
pub const SECCOMP_FD: u8 = 7;
/// Parent -> child: seccomp fd handed to the listener.
pub const SECCOMP_DONE: u8 = 8;
/// Child -> parent: a user namespace was created; write its id maps.
pub const MAPS: u8 = 9;
/// Parent -> child: the init was moved into its cgroup.
pub const JOINED: u8 = 11;
/// Parent -> child: id maps written.
pub const MAPS_DONE: u8 = 10;
/// Parent -> child: `create` recorded the container; the init drops its
/// parent-death signal and may outlive the runtime.
pub const HANDOVER: u8 = 12;
/// Child -> parent: the parent-death signal is cleared; `create` may exit.
pub const HANDED_OVER: u8 = 13;

/// One end of the setup channel.
#[derive(Debug)]
pub struct Chan {
    fd: OwnedFd,
}

impl Chan {
    /// A connected pair (both ends close-on-exec).
    pub fn pair() -> io::Result<(Chan, Chan)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Chan { fd: a }, Chan { fd: b }))
    }

    /// Raw fd (for the child to keep after fork).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends a tagged message.
    pub fn send(&self, tag: u8, payload: &[u8]) -> io::Result<()> {
        let hdr = [tag];
        let iov = [IoSlice::new(&hdr), IoSlice::new(payload)];
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None)?;
        Ok(())
    }

    /// Sends a tagged message carrying an fd.
    pub fn send_fd(&self, tag: u8, fd: RawFd) -> io::Result<()> {
        let hdr = [tag];
        let iov = [IoSlice::new(&hdr)];
        let fds = [fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Receives one message: (tag, payload, fd). A closed peer gives tag 0.
    pub fn recv(&self) -> io::Result<(u8, Vec<u8>, Option<OwnedFd>)> {
        let mut buf = vec![0u8; 8192];
        let mut cspace = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = loop {
                match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cspace),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r?,
                }
            };
            let mut fd = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel just installed this fd for us; we own it.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Ok((0, Vec::new(), None));
        }
        buf.truncate(n);
        let tag = buf.remove(0);
        Ok((tag, buf, fd))
    }
}

//! Host end of the host <-> agent channel.
//!
//! The protocol (`proto`) only needs a byte stream that can be split into a
//! reader and a writer; [`Channel`] is that seam. The default is
//! [`VirtioSerial`]: QEMU exposes the guest's virtio-serial port `skiff.0`
//! as a unix socket it listens on. [`vsock`] has the virtio-vsock channels:
//! kernel vhost-vsock ([`vsock::KernelVsock`]) and hybrid vsock through a
//! vhost-user backend ([`vsock::HybridVsock`]), chosen per container with
//! the annotation `run.skiff.vm.channel=vsock` or `$SKIFF_VM_CHANNEL`.

pub mod vsock;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A connected byte stream to the guest agent.
pub trait Channel: Send {
    /// A handle to read frames from.
    fn reader(&self) -> io::Result<Box<dyn Read + Send>>;
    /// A handle to write frames to.
    fn writer(&self) -> io::Result<Box<dyn Write + Send>>;
    /// Human-readable description for logs.
    fn describe(&self) -> String;
}

/// virtio-serial port behind a QEMU unix-socket chardev.
pub struct VirtioSerial {
    stream: UnixStream,
    path: String,
}

impl VirtioSerial {
    /// Connects to QEMU's chardev socket at `path`, retrying until `deadline`
    /// or until `alive()` says the VMM is gone.
    pub fn connect(
        path: &Path,
        deadline: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> io::Result<Self> {
        let start = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    return Ok(Self {
                        stream,
                        path: path.display().to_string(),
                    })
                }
                Err(e) => {
                    if !alive() {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "VMM exited before its channel socket was ready",
                        ));
                    }
                    if start.elapsed() > deadline {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("connect {}: {e}", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

impl Channel for VirtioSerial {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.stream.try_clone()?))
    }
    fn writer(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.stream.try_clone()?))
    }
    fn describe(&self) -> String {
        format!("virtio-serial via {}", self.path)
    }
}

//! The agent channel over virtio-vsock.
//!
//! The agent listens on AF_VSOCK port [`AGENT_PORT`] (kernel parameter
//! `skiff.vsock=<port>`); the host reaches it in one of two ways, chosen
//! by [`choose`]:
//!
//! * **kernel vhost-vsock** (`/dev/vhost-vsock` usable): QEMU's
//!   `vhost-vsock-device,guest-cid=N`, the host connects an AF_VSOCK stream
//!   to `N:port` ([`KernelVsock`]);
//! * **hybrid vsock over vhost-user** (Firecracker / Cloud Hypervisor style,
//!   for hosts without vhost-vsock, like this one): the rust-vmm backend
//!   `vhost-device-vsock` serves `vhost-user-vsock-device` and exposes a
//!   unix socket; the host connects to it, writes `CONNECT <port>\n`, reads
//!   `OK <hostport>\n`, and from then on the socket is a byte stream to the
//!   guest's listener ([`HybridVsock`]).
//!
//! The guest side is the same in both cases (the virtio-vsock driver). A
//! vsock VM always boots cold: QEMU 7.2 cannot migrate vhost-user devices,
//! and with kernel vhost-vsock every clone of a template would carry the
//! template's guest CID.

use super::Channel;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, VsockAddr};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;
/// Annotation choosing the agent channel of one container: `serial`
/// (virtio-serial, the default) or `vsock`. `$SKIFF_VM_CHANNEL` sets the
/// default.
pub const CHANNEL_ANNOTATION: &str = "run.skiff.vm.channel";
/// Kernel vhost-vsock device node.
pub const VHOST_VSOCK_DEV: &str = "/dev/vhost-vsock";
/// Name of the vhost-user vsock backend binary.
pub const BACKEND_NAME: &str = "vhost-device-vsock";
/// What the agent prints on the console once it listens on its vsock port
/// (crates/agent `vsock_accept`); the hybrid channel connects only then.
pub const LISTENING_MARKER: &str = "SKIFF-VSOCK-LISTENING";

/// How the host reaches the guest's vsock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The host kernel's vhost-vsock (`/dev/vhost-vsock`).
    Kernel,
    /// `vhost-device-vsock` at this path (hybrid vsock over vhost-user).
    VhostUser(PathBuf),
}

/// The channel asked for: `annotations[run.skiff.vm.channel]`, else
/// `$SKIFF_VM_CHANNEL`, else virtio-serial. True for vsock.
pub fn wants_vsock(annotations: &serde_json::Value) -> Result<bool, String> {
    let (value, from) = match annotations[CHANNEL_ANNOTATION].as_str() {
        Some(v) => (v.to_owned(), format!("annotations.{CHANNEL_ANNOTATION}")),
        None => match std::env::var("SKIFF_VM_CHANNEL") {
            Ok(v) if !v.is_empty() => (v, "$SKIFF_VM_CHANNEL".to_owned()),
            _ => return Ok(false),
        },
    };
    match value.as_str() {
        "vsock" => Ok(true),
        "serial" | "virtio-serial" => Ok(false),
        other => Err(format!("{from}: {other:?}: expected vsock or serial")),
    }
}

/// Picks the vsock backend: kernel vhost-vsock when `/dev/vhost-vsock` can be
/// opened, else `vhost-device-vsock` (`$SKIFF_VHOST_VSOCK`, `PATH`,
/// `/usr/local/bin`). The error says what is missing.
pub fn choose() -> Result<Backend, String> {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(VHOST_VSOCK_DEV)
        .is_ok()
    {
        return Ok(Backend::Kernel);
    }
    find_backend().map(Backend::VhostUser).ok_or_else(|| {
        format!(
            "vsock channel: neither {VHOST_VSOCK_DEV} (modprobe vhost_vsock) nor {BACKEND_NAME} \
             ($SKIFF_VHOST_VSOCK, PATH; cargo install --locked {BACKEND_NAME} --version 0.3.0)"
        )
    })
}

/// The `vhost-device-vsock` binary, if installed.
pub fn find_backend() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_VHOST_VSOCK") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(BACKEND_NAME))
        .find(|p| p.is_file())
}

/// A guest CID for kernel vhost-vsock: random in `3..=0xfffffff0` (the
/// kernel refuses a CID in use; QEMU then fails to start and says so).
pub fn random_cid() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom into a local buffer of the given length.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    3 + u32::from_ne_bytes(b) % (0xffff_fff0 - 3)
}

/// Arguments of `vhost-device-vsock` serving guest `cid` on the vhost-user
/// socket `socket` (QEMU connects) with the hybrid unix socket `uds`.
pub fn backend_args(cid: u32, socket: &Path, uds: &Path) -> Vec<String> {
    vec![
        format!("--guest-cid={cid}"),
        format!("--socket={}", socket.display()),
        format!("--uds-path={}", uds.display()),
    ]
}

/// Retries `attempt` every 10 ms until it succeeds, `deadline` passes or
/// `alive()` says the VMM is gone.
fn retry<T>(
    deadline: Duration,
    mut alive: impl FnMut() -> bool,
    what: &str,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => {
                if !alive() {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("VMM exited before {what} (last error: {e})"),
                    ));
                }
                if start.elapsed() > deadline {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{what}: no connection within {deadline:?}: {e}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Hybrid vsock: a unix socket of `vhost-device-vsock`, past the
/// `CONNECT`/`OK` handshake.
pub struct HybridVsock {
    stream: UnixStream,
    desc: String,
}

impl HybridVsock {
    /// One attempt: connect to `uds`, ask for `port`, wait up to `wait` for
    /// `OK`. The backend closes the stream when the guest refuses (no
    /// listener yet: it answers the request with a reset).
    pub fn try_connect(uds: &Path, port: u32, wait: Duration) -> io::Result<Self> {
        let mut stream = UnixStream::connect(uds)?;
        stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
        stream.set_read_timeout(Some(wait))?;
        // Byte by byte: nothing after the newline may be consumed here.
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while line.last() != Some(&b'\n') {
            match stream.read(&mut b)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("guest refused vsock port {port}"),
                    ))
                }
                _ => line.push(b[0]),
            }
            if line.len() > 64 {
                return Err(io::Error::other("overlong handshake answer"));
            }
        }
        stream.set_read_timeout(None)?;
        let text = String::from_utf8_lossy(&line);
        let host_port = text
            .strip_prefix("OK ")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                io::Error::other(format!("unexpected handshake answer {:?}", text.trim()))
            })?;
        Ok(Self {
            stream,
            desc: format!(
                "vsock (hybrid, vhost-user) via {} port {port} (host port {host_port})",
                uds.display()
            ),
        })
    }

    /// Connects to the agent's `port` through the backend's socket `uds`
    /// once `ready()` says the agent listens (its [`LISTENING_MARKER`] on
    /// the console), retrying until `deadline` or until `alive()` says the
    /// VMM is gone.
    ///
    /// Why wait for the agent instead of just retrying: vhost-device-vsock
    /// 0.3 loses a host connection request that arrives while the guest
    /// driver is bringing the device up (the request is never answered,
    /// and later ones neither: seen in 2 of ~20 boots here), so the first
    /// `CONNECT` goes out when the device is certainly running. An attempt
    /// then waits for the guest's answer as long as the deadline allows (a
    /// refusal closes the stream at once).
    pub fn connect(
        uds: &Path,
        port: u32,
        deadline: Duration,
        mut alive: impl FnMut() -> bool,
        mut ready: impl FnMut() -> bool,
    ) -> io::Result<Self> {
        let start = Instant::now();
        retry(deadline, &mut alive, "the agent's vsock listener", || {
            if !ready() {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the agent has not announced its vsock listener on the console yet",
                ));
            }
            let left = deadline.saturating_sub(start.elapsed());
            Self::try_connect(uds, port, left.max(Duration::from_millis(10)))
        })
    }
}

impl Channel for HybridVsock {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.stream.try_clone()?))
    }
    fn writer(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.stream.try_clone()?))
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
}

/// An AF_VSOCK stream to the guest (kernel vhost-vsock).
pub struct KernelVsock {
    file: fs::File,
    cid: u32,
    port: u32,
}

impl KernelVsock {
    /// One attempt to connect to `cid:port`.
    pub fn try_connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd: OwnedFd = socket::socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io::Error::from)?;
        socket::connect(fd.as_raw_fd(), &VsockAddr::new(cid, port)).map_err(io::Error::from)?;
        Ok(Self {
            file: fs::File::from(fd),
            cid,
            port,
        })
    }

    /// Connects to the agent at `cid:port`, retrying until `deadline` or
    /// until `alive()` says the VMM is gone.
    pub fn connect(
        cid: u32,
        port: u32,
        deadline: Duration,
        alive: impl FnMut() -> bool,
    ) -> io::Result<Self> {
        retry(deadline, alive, "the agent's vsock listener", || {
            Self::try_connect(cid, port)
        })
    }
}

impl Channel for KernelVsock {
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.file.try_clone()?))
    }
    fn writer(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(Box::new(self.file.try_clone()?))
    }
    fn describe(&self) -> String {
        format!(
            "vsock (kernel vhost-vsock) cid {} port {}",
            self.cid, self.port
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    fn read_line(r: impl Read) -> io::Result<String> {
        let mut s = String::new();
        BufReader::new(r).read_line(&mut s)?;
        Ok(s)
    }

    #[test]
    fn channel_choice_from_annotation() {
        // The annotation wins over the environment (not read when set).
        assert!(wants_vsock(&json!({CHANNEL_ANNOTATION: "vsock"})).unwrap());
        assert!(!wants_vsock(&json!({CHANNEL_ANNOTATION: "serial"})).unwrap());
        let e = wants_vsock(&json!({CHANNEL_ANNOTATION: "pipe"})).unwrap_err();
        assert!(
            e.contains("run.skiff.vm.channel") && e.contains("pipe"),
            "{e}"
        );
    }

    #[test]
    fn cids_are_in_the_guest_range() {
        for _ in 0..1000 {
            let c = random_cid();
            assert!((3..=0xffff_fff0).contains(&c));
        }
    }

    /// The hybrid handshake against a unix server speaking the backend's
    /// side of it: a refusal (closed stream) is retried, `OK` completes,
    /// and the bytes after the newline belong to the stream.
    #[test]
    fn hybrid_handshake_retries_refusals_and_keeps_the_stream_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let l = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            // First attempt: refused (the guest is not listening yet).
            let (c, _) = l.accept().unwrap();
            assert_eq!(read_line(&c).unwrap(), "CONNECT 1024\n");
            drop(c);
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 13];
            c.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"CONNECT 1024\n");
            c.write_all(b"OK 1073741824\nhello").unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"ping");
        });
        let mut polls = 0;
        let ready = || {
            polls += 1;
            polls > 3
        };
        let ch =
            HybridVsock::connect(&path, 1024, Duration::from_secs(10), || true, ready).unwrap();
        assert!(ch.describe().contains("host port 1073741824"));
        let mut r = ch.reader().unwrap();
        let mut got = [0u8; 5];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        ch.writer().unwrap().write_all(b"ping").unwrap();
        server.join().unwrap();
    }

    #[test]
    fn hybrid_connect_gives_up_when_the_vmm_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sock");
        let e = HybridVsock::connect(&path, 1024, Duration::from_secs(10), || false, || true)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert!(e.to_string().contains("VMM exited"), "{e}");
    }
}

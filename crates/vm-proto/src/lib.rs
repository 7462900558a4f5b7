//! Wire protocol between the host (`skiff-vm`) and the guest agent (`skiff-agent`).
//!
//! Both sides depend on this crate, so neither may drift from the other. It
//! depends only on `serde`/`serde_json` and `std`: the agent (a static guest
//! binary) must not pull in `skiff-vm`.
//!
//! A frame is `[u32 BE header length][u32 BE payload length][header][payload]`.
//! The header is a JSON-encoded [`Msg`]; the payload carries raw bytes
//! (stdio data) so that bulk output is not inflated by JSON escaping.
//! The first frame each way is [`Msg::Hello`] with [`VERSION`]; a peer that
//! receives another version closes the channel.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Protocol version; bumped on any incompatible change.
pub const VERSION: u32 = 1;
/// Largest header accepted (JSON).
pub const MAX_HEADER: usize = 4 << 20;
/// Largest payload accepted (stdio chunk).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Process number of the container's init process; exec'd processes get 1, 2, ...
pub const INIT_PROC: u32 = 0;

/// One message of the protocol.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// First frame in each direction.
    Hello {
        /// Protocol version of the sender.
        version: u32,
        /// Guest boot timings (agent -> host): `kernel_ms` (uptime when
        /// /init started), `modules_ms`, `ready_ms` (uptime now).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot: Option<serde_json::Value>,
        /// Host facts (host -> agent): `time_ns` (wall clock, ns since the
        /// epoch), `seed` (hex bytes to reseed the guest's RNG with: a VM
        /// restored from a template shares the template's RNG state),
        /// `debug` (verbose agent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<serde_json::Value>,
    },
    /// A request from the host; answered by exactly one [`Msg::Response`] with the same id.
    Request {
        /// Request id chosen by the host, echoed in the response.
        id: u64,
        /// What is asked.
        req: Request,
    },
    /// Answer to a request: `err` set on failure, `ok` carries the result otherwise.
    Response {
        /// Id of the request answered.
        id: u64,
        /// Result value on success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<serde_json::Value>,
        /// Error message on failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<String>,
    },
    /// Host -> guest: bytes for a process's stdin (payload); an empty payload closes stdin.
    Stdin {
        /// Target process.
        proc: u32,
    },
    /// Guest -> host: bytes a process wrote (payload) to `fd` 1 or 2.
    Output {
        /// Source process.
        proc: u32,
        /// 1 = stdout (or the terminal), 2 = stderr.
        fd: u8,
    },
    /// Guest -> host: a process ended; `status` is its exit code, or 128 + signal.
    Exit {
        /// Process that ended.
        proc: u32,
        /// Exit code (128 + signal number when killed by a signal).
        status: i32,
    },
    /// Host -> guest: terminal window size changed.
    Resize {
        /// Target process (must have a terminal).
        proc: u32,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

/// Requests the host can make.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create the container: mount the rootfs shared under `rootfs_tag`, set
    /// up the init process from `spec` (an OCI runtime config) and keep it
    /// blocked until [`Request::Start`].
    Create {
        /// Container id.
        id: String,
        /// The OCI runtime spec (config.json) as JSON.
        spec: serde_json::Value,
        /// 9p/virtio-fs tag of the shared rootfs.
        rootfs_tag: String,
        /// File system of the rootfs share: `9p` (default) or `virtiofs`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rootfs_type: Option<String>,
    },
    /// Let the init process exec the user program.
    Start,
    /// Run another process (an OCI `process` object) in the container; the
    /// response's `ok` is `{"proc": n}`.
    Exec {
        /// OCI process object.
        process: serde_json::Value,
    },
    /// Send a signal to a process (to every process of the container when `all`).
    Signal {
        /// Target process.
        proc: u32,
        /// Signal number.
        signal: i32,
        /// Signal every process of the container.
        all: bool,
    },
    /// Resource usage of the guest and the container (JSON object).
    Stats,
    /// Freeze every process of the container (cgroup v2 `cgroup.freeze`).
    Pause,
    /// Thaw the container.
    Resume,
    /// Power the guest off.
    Shutdown,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The message.
    pub msg: Msg,
    /// Raw payload (stdio bytes), often empty.
    pub payload: Vec<u8>,
}

/// Encodes one frame into a single buffer (so one `write_all` sends it whole).
pub fn encode(msg: &Msg, payload: &[u8]) -> io::Result<Vec<u8>> {
    let header = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if header.len() > MAX_HEADER || payload.len() > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let mut buf = Vec::with_capacity(8 + header.len() + payload.len());
    buf.extend_from_slice(&(header.len() as u32).to_be_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    Ok(buf)
}

/// Writes one frame.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, msg: &Msg, payload: &[u8]) -> io::Result<()> {
    let buf = encode(msg, payload)?;
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub fn read_frame<R: Read + ?Sized>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 8];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let hlen = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let plen = u32::from_be_bytes([len[4], len[5], len[6], len[7]]) as usize;
    if hlen > MAX_HEADER || plen > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame too large: header {hlen} payload {plen}"),
        ));
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header)?;
    let mut payload = vec![0u8; plen];
    r.read_exact(&mut payload)?;
    let msg = serde_json::from_slice(&header).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad frame header: {e}"))
    })?;
    Ok(Some(Frame { msg, payload }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let m1 = Msg::Request {
            id: 7,
            req: Request::Signal {
                proc: 0,
                signal: 15,
                all: false,
            },
        };
        write_frame(&mut buf, &m1, b"").unwrap();
        write_frame(&mut buf, &Msg::Output { proc: 1, fd: 2 }, b"hello\0world").unwrap();
        let mut r = &buf[..];
        let f1 = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f1.msg, m1);
        let f2 = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f2.msg, Msg::Output { proc: 1, fd: 2 });
        assert_eq!(f2.payload, b"hello\0world");
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let buf = encode(
            &Msg::Hello {
                version: VERSION,
                boot: None,
                host: None,
            },
            b"abc",
        )
        .unwrap();
        let mut r = &buf[..buf.len() - 1];
        assert!(read_frame(&mut r).is_err());
    }
}

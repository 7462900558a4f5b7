//! Hand-off of the seccomp notify fd to a seccomp agent (config-linux.md,
//! "The Container Process State").
//!
//! One connection per container process: connect to `listenerPath` (AF_UNIX,
//! SOCK_STREAM), send the JSON state with the fd attached via `SCM_RIGHTS` to the
//! first `sendmsg(2)`, send any remainder without fds, close.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::Error;

/// Version of the runtime spec whose container process state we emit.
pub const STATE_OCI_VERSION: &str = "1.2.1";

/// How long a stuck agent may block the runtime.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the container process state document.
pub(crate) fn process_state(
    pid: i32,
    metadata: &str,
    state_json: &serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": STATE_OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state_json,
    });
    if !metadata.is_empty() {
        v["metadata"] = serde_json::Value::String(metadata.to_string());
    }
    v
}

/// See [`crate::send_to_listener`].
pub(crate) fn send(
    path: &Path,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: &str,
    state_json: &serde_json::Value,
) -> Result<(), Error> {
    let err = |what: &'static str| {
        let path = path.to_path_buf();
        move |source: std::io::Error| Error::Listener { path, what, source }
    };
    let payload = serde_json::to_vec(&process_state(pid, metadata, state_json))
        .map_err(|e| err("serialising the container process state")(e.into()))?;
    let stream = UnixStream::connect(path).map_err(err("connecting"))?;
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(err("setting the send timeout"))?;
    let fds = [notify_fd.as_raw_fd()];
    let sent = loop {
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(&payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(err("sending the seccomp fd")(e.into())),
        }
    };
    // The spec allows several sendmsg calls as long as the fds go with the first.
    // MSG_NOSIGNAL: a vanished agent must give EPIPE, not kill the runtime.
    let mut rest = &payload[sent..];
    while !rest.is_empty() {
        match nix::sys::socket::send(stream.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(err("sending the container process state")(e.into())),
        }
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(err("closing"))?;
    Ok(())
}

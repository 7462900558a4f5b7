//! A minimal QMP (QEMU Machine Protocol) client: enough to save a VM
//! template (`migrate`) and restore one (`migrate-incoming`).
//!
//! QMP is line-delimited JSON over a unix socket: QEMU greets, the client
//! sends `qmp_capabilities`, then each `{"execute": ...}` is answered by a
//! `{"return": ...}` or `{"error": ...}` line; asynchronous `{"event": ...}`
//! lines may come in between and are skipped.

use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A connected QMP session (capabilities negotiated).
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's QMP socket at `path`, retrying until `deadline`
    /// passes or `alive()` says QEMU is gone, and negotiates capabilities.
    pub fn connect(
        path: &Path,
        deadline: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> io::Result<Self> {
        let t = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if !alive() {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "QEMU exited before its QMP socket was ready",
                        ));
                    }
                    if t.elapsed() > deadline {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("connect QMP {}: {e}", path.display()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        stream.set_read_timeout(Some(deadline.max(Duration::from_secs(1))))?;
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(io::Error::other(format!("not a QMP greeting: {greeting}")));
        }
        q.execute("qmp_capabilities", Value::Null)?;
        Ok(q)
    }

    fn read(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QMP connection closed",
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("QMP: {e}: {line}")))
    }

    /// Runs one command; returns its `return` value, or its `error` as an error.
    pub fn execute(&mut self, cmd: &str, args: Value) -> io::Result<Value> {
        let mut req = json!({ "execute": cmd });
        if !args.is_null() {
            req["arguments"] = args;
        }
        self.writer.write_all(format!("{req}\n").as_bytes())?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let desc = v["error"]["desc"].as_str().unwrap_or("unknown error");
            return Err(io::Error::other(format!("QMP {cmd}: {desc}")));
        }
    }
}

//! Error type of the cgroups library: every variant names the field, file or
//! piece of the host that is at fault, so a caller can print it as is.

use std::io;
use std::path::PathBuf;

/// Errors returned by this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value in `linux.resources` (or the cgroups path) is invalid; found
    /// before anything was written to the host.
    #[error("{field}: {msg}")]
    Invalid {
        /// The spec field at fault, e.g. `linux.resources.memory.limit`.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A field is set that this host (or this cgroup layout) cannot honour.
    #[error("{field}: {msg}")]
    Unsupported {
        /// The spec field at fault.
        field: String,
        /// Why it cannot be applied here.
        msg: String,
    },
    /// Writing a value to a cgroup file failed.
    #[error("{field}: writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The spec field being applied (or the operation, e.g. `freeze`).
        field: String,
        /// The cgroup file written.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O operation on a cgroup file or directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`mkdir`, `read`, `rmdir`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A cgroup file had content this crate could not parse.
    #[error("parsing {}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was unexpected.
        msg: String,
    },
    /// The cgroup mounts of this host could not be understood.
    #[error("cgroup mounts: {0}")]
    Mounts(String),
    /// The systemd cgroup driver was requested but cannot be used.
    #[error("systemd cgroup driver: {0}")]
    Systemd(String),
    /// A BPF syscall used for the cgroup v2 device filter failed.
    #[error("cgroup v2 device filter: {op}: {source}{log}")]
    Bpf {
        /// The bpf(2) command.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
        /// The verifier log, if any (prefixed with a newline).
        log: String,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn unsupported(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
    /// True if the underlying OS error is ENOENT (the cgroup is gone).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Io { source, .. } | Error::Write { source, .. } => {
                source.kind() == io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

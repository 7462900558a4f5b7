//! The runtime library's error type.
//!
//! Every error carries enough context to tell the user what failed and why:
//! the config field, the file, or the syscall and its target.

use std::fmt::Display;

/// Errors returned by the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json is missing, unparsable or invalid; the message names the field.
    #[error("{0}")]
    Config(String),
    /// No container with this id under the state root.
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    /// A container with this id already exists.
    #[error("container with id \"{0}\" already exists")]
    Exists(String),
    /// The container is not in a state that allows the operation.
    #[error("container \"{id}\" is {status}: {msg}")]
    BadState {
        /// Container id.
        id: String,
        /// Its current status.
        status: String,
        /// What was refused.
        msg: String,
    },
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The container's init reported an error during setup.
    #[error("{0}")]
    Init(String),
    /// A hook failed.
    #[error("{0}")]
    Hook(String),
    /// A poststart hook failed (runtime-spec 1.3): the container was
    /// stopped and must now be destroyed as `delete --force` does.
    #[error("{0}")]
    Poststart(String),
    /// A cgroup operation failed.
    #[error("cgroups: {0}")]
    Cgroup(#[from] skiff_cgroups::Error),
    /// Seccomp filter compilation failed.
    #[error("{0}")]
    Seccomp(#[from] skiff_seccomp::Error),
    /// VM isolation failed.
    #[cfg(feature = "vm")]
    #[error("vm: {0}")]
    Vm(#[from] skiff_vm::Error),
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The exit status a shell (and runc's callers) give a program that
    /// could not be executed: 127 when it was not found, 126 when it was
    /// found but cannot be executed; `None` for every other error.
    pub fn exec_exit_code(&self) -> Option<i32> {
        let Error::Init(msg) = self else { return None };
        if !msg.starts_with("exec: \"") {
            return None;
        }
        if msg.ends_with(": permission denied") {
            Some(126)
        } else if msg.ends_with("executable file not found in $PATH")
            || msg.ends_with("no such file or directory")
        {
            Some(127)
        } else {
            None
        }
    }
}

/// Result alias for the runtime library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches context to I/O and errno errors.
pub trait Context<T> {
    /// Wraps the error with a lazily built context message.
    fn ctx<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().to_string(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: f().to_string(),
            source: std::io::Error::from_raw_os_error(e as i32),
        })
    }
}

//! skiff-seccomp: OCI `linux.seccomp` profiles compiled to seccomp BPF filters.
//!
//! The runtime uses it in two steps:
//!
//! 1. [`compile`] (or [`compile_json`]) in the runtime process, before anything is
//!    forked: the profile is validated, turned into a libseccomp filter, exported as
//!    a classic-BPF program and prefixed with runc's `-ENOSYS` stub. Every mistake in
//!    the profile surfaces here, with the field at fault named
//!    (`linux.seccomp.syscalls[3].action "SCMP_ACT_FOO" is not a seccomp action`).
//! 2. [`Filter::load`] in the container init right before `execve`: one
//!    `seccomp(2)` call, no allocation, so it is safe in a forked child of a
//!    multi-threaded process. When a rule uses `SCMP_ACT_NOTIFY` it returns the
//!    listener fd, which the runtime hands to the seccomp agent with
//!    [`send_to_listener`].
//!
//! [`features`] reports what is recognised and supported, for `skiff features`.
//! See `docs/seccomp.md` for semantics, numbers and limits.

#![warn(missing_docs)]

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

mod bpf;
mod cache;
mod compiler;
mod features;
mod listener;
mod profile;

pub use listener::STATE_OCI_VERSION;

/// Syscalls a `SCMP_ACT_NOTIFY` rule may not name: after [`Filter::load`] the
/// container init passes the notify fd to the runtime with `sendmsg(2)` (runc uses
/// `write(2)`), and no agent can answer before it has the fd.
pub const NOTIFY_FORBIDDEN_SYSCALLS: &[&str] = &["write", "sendmsg"];

/// Errors of this crate. Profile errors name the offending field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile is invalid or cannot be honoured on this host.
    #[error("{field} {msg}")]
    Invalid {
        /// Path of the offending field, e.g. `linux.seccomp.flags[1]`.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// libseccomp refused an operation.
    #[error("{field}: {what}: libseccomp: {source}")]
    Libseccomp {
        /// Path of the field being compiled.
        field: String,
        /// The operation that failed.
        what: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// The kernel refused the filter (from [`Filter::load`]).
    #[error("loading the seccomp filter ({insns} BPF instructions, flags {flags:#x}): {source}")]
    Load {
        /// Program length.
        insns: usize,
        /// seccomp(2) flags used.
        flags: u32,
        /// The kernel's answer.
        #[source]
        source: nix::errno::Errno,
    },
    /// A local I/O step of compilation failed.
    #[error("seccomp: {what}: {source}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Sending the notify fd to the seccomp agent failed.
    #[error("linux.seccomp.listenerPath {path:?}: {what}: {source}")]
    Listener {
        /// The listener socket path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn invalid(field: &str, msg: String) -> Self {
        Self::Invalid {
            field: field.to_string(),
            msg,
        }
    }

    pub(crate) fn libseccomp(
        field: &str,
        what: &str,
        source: libseccomp::error::SeccompError,
    ) -> Self {
        Self::Libseccomp {
            field: field.to_string(),
            what: what.to_string(),
            source,
        }
    }
}

/// A compiled seccomp filter, ready to be loaded.
#[derive(Clone)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: u32,
    notify: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.prog.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .field("listener_path", &self.listener_path)
            .finish()
    }
}

/// Validates `cfg` and builds its filter (call this before forking the container).
///
/// Unknown syscall names are skipped and rules whose action equals the default are
/// dropped, as runc does. Flags are checked against the running kernel here.
pub fn compile(cfg: &oci_spec::runtime::LinuxSeccomp) -> Result<Filter, Error> {
    build(profile::Profile::from_oci(cfg)?)
}

/// Like [`compile`], from the raw JSON value of `linux.seccomp`.
///
/// Use it when the typed form is not available or cannot represent the config:
/// oci-spec 0.8 rejects `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` and the
/// `SCMP_ARCH_PARISC*`/`LOONGARCH64`/`M68K`/`SH*` architectures, and its serde errors
/// do not name the field. This accepts everything in config-linux.md and reports
/// unknown actions, architectures, flags and operators by field path.
pub fn compile_json(seccomp: &serde_json::Value) -> Result<Filter, Error> {
    build(profile::Profile::from_json(seccomp)?)
}

/// Like [`compile`], but reuses the BPF program compiled earlier for the same
/// profile from `cache_dir` (created 0700 if missing; the runtime's private state
/// directory is the right place). Validation and kernel flag checks still run on
/// every call; only libseccomp's program generation (milliseconds for a
/// docker-sized profile) is skipped. Cache files that do not verify are rebuilt;
/// failing to write the cache only logs a warning.
pub fn compile_cached(
    cfg: &oci_spec::runtime::LinuxSeccomp,
    cache_dir: &Path,
) -> Result<Filter, Error> {
    let p = profile::Profile::from_oci(cfg)?;
    let c = cache::compile(&p, cache_dir)?;
    Ok(finish(p, c))
}

fn build(p: profile::Profile) -> Result<Filter, Error> {
    let c = compiler::compile(&p)?;
    Ok(finish(p, c))
}

fn finish(p: profile::Profile, c: compiler::Compiled) -> Filter {
    Filter {
        prog: c.prog,
        flags: c.flags,
        notify: p.uses_notify(),
        listener_path: p.listener_path,
        listener_metadata: p.listener_metadata,
    }
}

impl Filter {
    /// Installs the filter on the calling process.
    ///
    /// Call it in the container init right before `execve`, after
    /// `PR_SET_NO_NEW_PRIVS` (or, without no_new_privs, while still holding
    /// `CAP_SYS_ADMIN`, i.e. before dropping capabilities, as runc). It makes one
    /// `seccomp(2)` call and allocates nothing, so it is safe in a forked child of
    /// a multi-threaded process. Returns the notify fd when [`Filter::uses_notify`].
    ///
    /// The filter applies to the calling thread only unless
    /// `SECCOMP_FILTER_FLAG_TSYNC` was requested; the container init is expected to
    /// be single-threaded.
    pub fn load(&self) -> Result<Option<OwnedFd>, Error> {
        bpf::load(&self.prog, self.flags).map_err(|source| Error::Load {
            insns: self.prog.len(),
            flags: self.flags,
            source,
        })
    }

    /// Whether a rule uses `SCMP_ACT_NOTIFY` (so [`Filter::load`] returns an fd that
    /// must go to [`send_to_listener`]).
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// `linux.seccomp.listenerPath`, if set.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// `linux.seccomp.listenerMetadata`, or `""`.
    pub fn listener_metadata(&self) -> &str {
        self.listener_metadata.as_deref().unwrap_or("")
    }

    /// Number of BPF instructions (stub included).
    pub fn instructions(&self) -> usize {
        self.prog.len()
    }

    /// The seccomp(2) flags [`Filter::load`] passes.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// Sends the notify fd and the container process state to the seccomp agent
/// listening on `listener_path`, per config-linux.md: one AF_UNIX stream
/// connection, the JSON document `{ociVersion, fds: ["seccompFd"], pid, metadata,
/// state}` with the fd attached by `SCM_RIGHTS`, then the connection is closed.
///
/// `state_json` is the container's runtime state (`ociVersion`, `id`, `status`,
/// `pid`, `bundle`, `annotations`); `metadata` is omitted when empty.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: &str,
    state_json: &serde_json::Value,
) -> Result<(), Error> {
    listener::send(listener_path, notify_fd, pid, metadata, state_json)
}

/// The `seccomp` object of `skiff features` (runtime-spec features-linux.md):
/// `enabled`, `actions`, `operators`, `archs` (those the linked libseccomp can
/// filter), `knownFlags` and `supportedFlags` (those the running kernel accepts).
pub fn features() -> serde_json::Value {
    features::features()
}

/// Version of the linked libseccomp, e.g. `2.5.4` (for `skiff features` annotations).
pub fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".into())
}

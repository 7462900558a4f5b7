//! skiff-network: the network side of `skiff run --image`.
//!
//! Containers get their network the way podman 4 (CNI era) and containerd
//! give it: a persistent network namespace ([`netns`]) that the runtime
//! joins by path, set up by the standard CNI plugins of Debian's
//! `containernetworking-plugins` (`bridge` + `host-local`, `portmap`) run
//! by a small CNI client ([`cni`]), with NAT and forwarding rules per
//! network ([`rules`]) rather than per container. Networks are
//! host resources, defined once per host ([`networks`]); what one container
//! got (the CNI result, its netns, its `/etc/hosts`) is kept next to its
//! bundle in the image store so that removing the container runs CNI `DEL`
//! and leaves no veth, iptables rule or IPAM lease ([`attach`]).
//!
//! The crate shells out to nothing but the CNI plugins (and `ip link del`
//! for `network rm`); it knows nothing about images or the runtime.

pub mod attach;
pub mod cni;
pub mod files;
pub mod netns;
pub mod networks;
pub mod ports;
pub mod rules;

pub use attach::{Attachment, Mode};
pub use networks::{NetworkDef, Networks};
pub use ports::PortMapping;

/// Errors of the network operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// I/O on a path.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A CNI plugin failed.
    #[error("CNI plugin {plugin} ({command}) failed: {message}")]
    Plugin {
        /// Plugin type (`bridge`, `portmap`, ...).
        plugin: String,
        /// CNI command (ADD, DEL).
        command: String,
        /// The plugin's error message (its JSON `msg` and `details`, or its output).
        message: String,
    },
    /// Bad user input (a flag, a network name).
    #[error("{0}")]
    Invalid(String),
    /// No such network.
    #[error("network {0:?} not found (see `skiff network ls`)")]
    NotFound(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// Cause.
        source: nix::Error,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, NetError>;

pub(crate) fn io_at(p: &std::path::Path) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |e| NetError::Io {
        path: p.to_path_buf(),
        source: e,
    }
}

/// 16 random hex digits (attachment ids, netns names).
pub(crate) fn random_hex() -> String {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

//! skiff-runtime: the OCI runtime library behind `skiff`.
//!
//! It implements runtime-spec 1.3 (Linux) container lifecycle with runc's
//! semantics: [`Runtime::create`] clones the container init straight into
//! its namespaces, sets up the rootfs and process, and leaves it blocked on
//! an exec fifo until [`Container::start`]. State lives under the runtime
//! root, one locked directory per container ([`state`]). cgroups come from
//! `skiff-cgroups`, seccomp from `skiff-seccomp`.
//!
//! Layout: [`config`] (load + validate config.json), [`state`] (on-disk
//! state), [`container`] (lifecycle, runtime side), `linux` (clone, init
//! side: namespaces, rootfs, console, caps), [`hooks`], [`spec`] (`skiff
//! spec`), [`features`].

pub mod cgroup_join;
pub mod config;
pub mod container;
mod error;
pub mod features;
pub mod hooks;
pub mod linux;
pub mod spec;
pub mod state;
pub mod tty;

pub use container::{Container, CreateOptions, ExecOptions, Runtime};
pub use error::{Context, Error, Result};
pub use state::Status;

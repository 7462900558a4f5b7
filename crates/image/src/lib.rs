//! skiff-image: the OCI image-spec side of skiff.
//!
//! - [`reference`]: image references normalized like docker/containerd;
//! - [`digest`], [`manifest`]: content addressing and the image-spec documents;
//! - [`store`]: the on-disk content store (an OCI image layout);
//! - [`snapshot`]: unpacked layers in the store, committed atomically;
//! - [`unpack`]: safe, bounded layer extraction (openat2 `RESOLVE_IN_ROOT`);
//!
//! Arrows point downward only: this crate knows nothing of the runtime; it
//! produces bundles (`config.json` + rootfs) that the runtime runs.

pub mod archive;
pub mod auth;
pub mod bundle;
pub mod client;
pub mod container;
pub mod default_image;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod security;
pub mod snapshot;
pub mod store;
pub mod unpack;

//! skiff-sys: the small system helpers that several skiff crates need.
//!
//! Each helper exists once, here, instead of being copied between the
//! runtime, the VM host side, the image store and the registry. One module
//! per concern; none of them knows about containers. The crate depends on
//! `libc` only, so the runtime's start path can use it without pulling in
//! anything large.

pub mod fdpass;
pub mod fs;
pub mod mountinfo;
pub mod pty;
pub mod size;
pub mod time;

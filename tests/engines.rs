//! Engines driving skiff end to end (issue 3): containerd and podman.
mod common;

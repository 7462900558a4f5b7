//! skiff-seccomp: placeholder, see docs/ARCHITECTURE.md.

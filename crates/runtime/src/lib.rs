//! skiff-runtime: placeholder, see docs/ARCHITECTURE.md.

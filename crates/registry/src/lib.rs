//! skiff-registry: placeholder, see docs/ARCHITECTURE.md.

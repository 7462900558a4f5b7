//! skiff-image: placeholder, see docs/ARCHITECTURE.md.

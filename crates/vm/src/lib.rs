//! skiff-vm: placeholder, see docs/ARCHITECTURE.md.

//! skiff-cgroups: placeholder, see docs/ARCHITECTURE.md.

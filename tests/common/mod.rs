//! Shared harness for skiff's integration tests (placeholder).

//! registry integration tests (placeholder).

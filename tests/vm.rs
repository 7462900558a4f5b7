//! vm integration tests (placeholder).

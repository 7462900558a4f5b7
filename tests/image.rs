//! image integration tests (placeholder).

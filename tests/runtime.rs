//! Runtime integration tests (placeholder).
mod common;

//! skiff-agent: guest /init for VM isolation (placeholder).
fn main() {}

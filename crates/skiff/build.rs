//! Links the `skiff` binary as a non-PIE executable: every container start
//! runs it, and a PIE this size spends its startup applying ~30,000
//! relative relocations (and keeps those pages resident).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}

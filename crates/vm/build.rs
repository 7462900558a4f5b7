//! Marks this package's targets with `cfg(skiff_vm_pkg)` so tests/vm.rs (shared
//! with the skiff package) knows skiff-vm is linkable as a library here.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(skiff_vm_pkg)");
    println!("cargo::rustc-cfg=skiff_vm_pkg");
}

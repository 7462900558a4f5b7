//! Link options of the `skiff` runtime binary:
//!
//! - non-PIE (unless built with `crt-static`, where rustc picks the static
//!   link mode from `-C relocation-model`; `scripts/build.sh` asks for
//!   `static`, i.e. a non-PIE fully static executable): every container
//!   start runs it, and a PIE this size spends its
//!   startup applying ~30,000 relative relocations (and keeps those pages
//!   resident);
//! - in release builds with rust-lld (Rust >= 1.90 on x86_64 Linux), the
//!   functions the start path executes (`symbol-order.txt`, made by
//!   `scripts/symbol-order.sh` from valgrind traces of create/start/state/
//!   delete/run) are laid out first and together: the kernel maps 64 KiB
//!   around every page fault in a file, so scattered hot code would make
//!   most of the binary resident in every container start. Names that no
//!   longer exist are ignored.
use std::path::Path;

fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        // With crt-static, rustc links `-static-pie` (PIC) or `-static`
        // (relocation-model=static) itself; `-no-pie` on top of
        // `-static-pie` makes a broken executable.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=symbol-order.txt");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    if release && target == "x86_64-unknown-linux-gnu" && order.is_file() && uses_lld() {
        println!(
            "cargo:rustc-link-arg-bin=skiff=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=skiff=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc links x86_64-unknown-linux-gnu with its bundled lld since 1.90.
fn uses_lld() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let v = String::from_utf8_lossy(&out.stdout);
    let minor = v
        .split_whitespace()
        .nth(1)
        .and_then(|ver| ver.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

//! Builds the exec trampoline `dmz/dmz.rs` (a 6 KiB static program without
//! libc, see that file) with the same `rustc`, for the same target, into
//! `$OUT_DIR/dmz`; `linux/exe.rs` embeds it. Where it cannot be built (an
//! architecture it has no start code for) the file is left empty and the
//! runtime execs the container's program directly, with a build warning.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=dmz/dmz.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("dmz");
    let target = std::env::var("TARGET").expect("TARGET");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let supported = matches!(arch.as_str(), "x86_64" | "aarch64");
    let built = supported
        && Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "--crate-type",
                "bin",
                "--crate-name",
                "skiff_dmz",
            ])
            .args([
                "-C",
                "opt-level=s",
                "-C",
                "panic=abort",
                "-C",
                "debuginfo=0",
            ])
            .args(["-C", "strip=symbols", "-C", "relocation-model=static"])
            .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
            .args([
                "-C",
                "link-arg=-static",
                "-C",
                "link-arg=-Wl,--build-id=none",
            ])
            .arg("--target")
            .arg(&target)
            .arg("-o")
            .arg(&out)
            .arg("dmz/dmz.rs")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !built {
        std::fs::write(&out, b"").expect("writing an empty dmz");
        println!(
            "cargo:warning=skiff-runtime: no exec trampoline for {target}: containers exec their \
             program directly (no CVE-2019-5736 protection beyond the kernel's)"
        );
    }
}

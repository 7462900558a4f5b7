//! Build script: embeds the host's static busybox (Debian `busybox-static`,
//! `/bin/busybox`) for the default image `skiff/default` when it exists.
//! Without it the crate still builds, and the default image is unavailable.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skiff_busybox)");
    let src = std::env::var("SKIFF_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_string());
    println!("cargo::rerun-if-env-changed=SKIFF_BUSYBOX");
    println!("cargo::rerun-if-changed={src}");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let path = Path::new(&src);
    if !path.is_file() {
        println!("cargo::warning=no {src}: the embedded default image is disabled");
        return;
    }
    // Only a static busybox works inside an image that has no libc.
    let Ok(list) = Command::new(path).arg("--list").output() else {
        return;
    };
    if !list.status.success() {
        return;
    }
    let dest = Path::new(&out).join("busybox");
    std::fs::copy(path, &dest).expect("copy busybox into OUT_DIR");
    std::fs::write(Path::new(&out).join("busybox.list"), &list.stdout).expect("write applet list");
    println!("cargo::rustc-cfg=skiff_busybox");
}

//! Builds the static guest agent for the VM tests, the way docs/vm.md says
//! (a no-op when it is up to date: always asking cargo keeps a stale agent,
//! e.g. one built without skiff-runtime, from passing for a current one).
//! Shared by tests/vm.rs, tests/vm_cli.rs and crates/vm/tests/vsock.rs
//! through `#[path]`.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Builds `skiff-agent` statically (once per test process); false when the
/// build fails.
pub fn build_static_agent() -> bool {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap();
    if *built {
        return true;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    *built = Command::new(cargo)
        .args([
            "build",
            "-p",
            "skiff-agent",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .env("LIBSECCOMP_LINK_TYPE", "static")
        .env("LIBSECCOMP_LIB_PATH", "/usr/lib/x86_64-linux-gnu")
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    *built
}

//! Builds the static guest agent for the VM tests with `scripts/build.sh
//! --only agent`, into `target/dist/skiff-agent`, where `skiff-vm` finds
//! it from the test binaries and from `target/debug/skiff` (a no-op when
//! it is up to date: always asking cargo keeps a stale agent from passing
//! for a current one). Shared by tests/vm.rs, tests/vm_cli.rs and
//! crates/vm/tests/vsock.rs through `#[path]`.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Builds `target/dist/skiff-agent` (once per test process); false when
/// the build fails.
pub fn build_static_agent() -> bool {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if *built {
        return true;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/build.sh"))
        .args(["--only", "agent"])
        .current_dir(&root)
        .env_remove("RUSTFLAGS");
    if let Ok(cargo) = std::env::var("CARGO") {
        // the cargo running the tests (its directory first on PATH)
        if let Some(dir) = Path::new(&cargo).parent() {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        }
    }
    *built = cmd.status().is_ok_and(|s| s.success());
    *built
}

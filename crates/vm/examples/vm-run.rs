//! `vm-run <bundle> [state-dir]`: create, start, wait for and delete one VM
//! container with the skiff-vm library, then print a JSON line with the
//! host-side timings and the guest boot breakdown. Used by bench/vm.sh.
//!
//! stdout/stderr of the container are the caller's. `VM_RUN_DEBUG=1`: verbose
//! create; `VM_RUN_CONSOLE=1`: print the guest console log before deleting.

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let bundle = PathBuf::from(args.next().ok_or("usage: vm-run <bundle> [state-dir]")?);
    let state = match args.next() {
        Some(s) => PathBuf::from(s),
        None => std::env::temp_dir().join(format!("vm-run-{}", std::process::id())),
    };
    std::fs::create_dir_all(&state)?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let t0 = Instant::now();
    let pid = skiff_vm::create(&skiff_vm::CreateOptions {
        id: "vm-run",
        bundle: &bundle,
        spec: &spec,
        state_dir: &state,
        console_socket: None,
        debug: std::env::var_os("VM_RUN_DEBUG").is_some(),
    })?;
    let created = t0.elapsed();
    skiff_vm::start(&state)?;
    let started = t0.elapsed();
    let mut st = 0;
    // SAFETY: waiting for the shim, our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    let exited = t0.elapsed();
    let timings: serde_json::Value = std::fs::read_to_string(state.join("timings.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if std::env::var_os("VM_RUN_CONSOLE").is_some() {
        eprint!(
            "{}",
            std::fs::read_to_string(skiff_vm::console_log(&state)).unwrap_or_default()
        );
    }
    skiff_vm::delete(&state)?;
    let deleted = t0.elapsed();
    let _ = std::fs::remove_dir(&state);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "create_ms": ms(created), "start_ms": ms(started), "exit_ms": ms(exited), "delete_ms": ms(deleted),
            "status": libc::WEXITSTATUS(st), "vm": timings,
        })
    );
    Ok(())
}

//! Running lifecycle hooks: the hook's program with its args and env, the
//! container state JSON on stdin, killed after its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::{Error, Result};

/// Runs each hook in order; the first failure stops the list.
pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        run(h, state_json)
            .map_err(|e| Error::Hook(format!("{kind} hook #{i} ({}): {e}", h.path().display())))?;
    }
    Ok(())
}

/// Runs each hook; failures are reported as warnings on stderr (poststart,
/// poststop: the spec says the runtime logs a warning and continues).
pub fn run_all_warn(kind: &str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        if let Err(e) = run(h, state_json) {
            eprintln!(
                "skiff: warning: {kind} hook #{i} ({}): {e}",
                h.path().display()
            );
        }
    }
}

fn run(h: &Hook, state_json: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    let args = h.args().as_deref().unwrap_or(&[]);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    if args.len() > 1 {
        cmd.args(&args[1..]);
    }
    // As runc: a hook without `env` inherits the runtime's environment; a
    // hook with `env` (even an empty one) gets exactly that.
    if let Some(env) = h.env() {
        cmd.env_clear();
        for (k, v) in env.iter().filter_map(|kv| kv.split_once('=')) {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = h
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => return Err(format!("exited with {st}")),
            None => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", h.timeout().unwrap_or(0)));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

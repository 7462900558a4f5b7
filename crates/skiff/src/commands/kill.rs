//! `kill`: signals the container's init (or all its processes).

use anyhow::bail;
use skiff_runtime::Runtime;

use crate::args::KillCmd;

/// Parses a signal name (`KILL`, `SIGKILL`) or number.
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if n > 0 && n <= libc::SIGRTMAX() {
            return Ok(n);
        }
        bail!("invalid signal \"{s}\"");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if off >= 0 && libc::SIGRTMIN() + off <= libc::SIGRTMAX() {
            return Ok(libc::SIGRTMIN() + off);
        }
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('-').parse().unwrap_or(-1)
        };
        if off >= 0 && libc::SIGRTMAX() - off >= libc::SIGRTMIN() {
            return Ok(libc::SIGRTMAX() - off);
        }
    }
    let full = format!("SIG{name}");
    match full.parse::<nix::sys::signal::Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("invalid signal \"{s}\""),
    }
}

pub(super) fn kill(rt: &Runtime, k: KillCmd) -> anyhow::Result<i32> {
    let sig = parse_signal(k.signal.as_deref().unwrap_or("SIGTERM"))?;
    let c = rt.load(&k.id)?;
    c.kill(rt, sig, k.all)?;
    Ok(0)
}

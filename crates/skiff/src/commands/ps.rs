//! `ps`: the processes of a container (host `ps` lines, or pids as JSON).

use anyhow::{bail, Context as _};
use skiff_runtime::Runtime;

pub(super) fn ps(
    rt: &Runtime,
    format: &str,
    id: &str,
    ps_args: Vec<String>,
) -> anyhow::Result<i32> {
    let c = rt.load(id)?;
    let pids = c.pids(rt)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    if !c.host_pids() {
        // Guest pids: the host's ps knows nothing of them.
        println!("PID");
        for p in pids {
            println!("{p}");
        }
        return Ok(0);
    }
    let args = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

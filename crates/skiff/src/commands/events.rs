//! `events`: resource stats once or periodically, and OOM notifications.

use std::io::Write;

use anyhow::{bail, Context as _};
use skiff_runtime::Runtime;

fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration \"{s}\""))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid duration \"{s}\""),
    };
    if secs <= 0.0 {
        bail!("duration must be positive: \"{s}\"");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

pub(super) fn events(rt: &Runtime, stats: bool, interval: &str, id: &str) -> anyhow::Result<i32> {
    let every = parse_duration(interval)?;
    let stat_event = |c: &skiff_runtime::Container| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({"type": "stats", "id": id, "data": c.stats(rt)?}))
    };
    if stats {
        let c = rt.load(id)?;
        println!("{}", serde_json::to_string(&stat_event(&c)?)?);
        return Ok(0);
    }
    let mut ooms = rt.load(id)?.oom_kills(rt).unwrap_or(0);
    let mut next = std::time::Instant::now();
    loop {
        let c = rt.load(id)?;
        if c.status(rt) == skiff_runtime::Status::Stopped {
            return Ok(0);
        }
        let now_ooms = c.oom_kills(rt).unwrap_or(ooms);
        let mut out = std::io::stdout().lock();
        if now_ooms > ooms {
            ooms = now_ooms;
            writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}))?;
        }
        if std::time::Instant::now() >= next {
            writeln!(out, "{}", serde_json::to_string(&stat_event(&c)?)?)?;
            next += every;
        }
        out.flush()?;
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(200).min(every));
    }
}

//! `list`: the containers under the state root, as a table or JSON.

use std::io::Write;

use skiff_runtime::Runtime;

pub(super) fn list(rt: &Runtime, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let all = rt.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &all {
            writeln!(out, "{}", s["id"].as_str().unwrap_or(""))?;
        }
        return Ok(0);
    }
    if format == "json" {
        writeln!(out, "{}", serde_json::to_string(&all)?)?;
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|s| {
            let f = |k: &str| {
                s[k].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s[k].to_string())
            };
            [
                f("id"),
                f("pid"),
                f("status"),
                f("bundle"),
                f("created"),
                f("owner"),
            ]
        })
        .collect();
    let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
    let mut w = [0usize; 6];
    for (i, h) in head.iter().enumerate() {
        w[i] = rows
            .iter()
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
            .max(h.len());
    }
    let line = |cells: &[&str]| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                l.push_str(&format!("{:width$}   ", c, width = w[i]));
            } else {
                l.push_str(c);
            }
        }
        l
    };
    writeln!(out, "{}", line(&head))?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    Ok(0)
}

//! `update`: new resource limits from flags and/or a resources JSON.

use anyhow::Context as _;
use skiff_runtime::Runtime;

use crate::args::UpdateArgs;

/// Parses sizes like 100, 64k, 100M, 1g (as runc's RAMInBytes); -1 = unlimited.
fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    skiff_sys::size::parse_size(s).with_context(|| format!("invalid size \"{s}\""))
}

pub(super) fn update(rt: &Runtime, a: UpdateArgs) -> anyhow::Result<i32> {
    let mut c = rt.load(&a.id)?;
    let mut v: serde_json::Value = match a.resources.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            serde_json::from_str(&s).context("--resources -: invalid JSON")?
        }
        Some(f) => {
            let d = std::fs::read(f).with_context(|| format!("reading {f}"))?;
            serde_json::from_slice(&d).with_context(|| format!("{f}: invalid JSON"))?
        }
        None => serde_json::json!({}),
    };
    let obj = v
        .as_object_mut()
        .context("resources must be a JSON object")?;
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
        s[key] = val;
    };
    if let Some(x) = a.blkio_weight {
        set("blockIO", "weight", x.into());
    }
    if let Some(x) = a.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = a.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = a.cpu_share {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", x.into());
    }
    if let Some(x) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", x.into());
    }
    if let Some(x) = &a.cpuset_cpus {
        set("cpu", "cpus", x.clone().into());
    }
    if let Some(x) = &a.cpuset_mems {
        set("cpu", "mems", x.clone().into());
    }
    if let Some(x) = &a.memory {
        set("memory", "limit", parse_bytes(x)?.into());
    }
    if let Some(x) = &a.memory_reservation {
        set("memory", "reservation", parse_bytes(x)?.into());
    }
    if let Some(x) = &a.memory_swap {
        set("memory", "swap", parse_bytes(x)?.into());
    }
    if let Some(x) = a.pids_limit {
        set("pids", "limit", x.into());
    }
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(v).context("resources: invalid linux.resources")?;
    c.update(rt, &res)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_as_runc_parses_them() {
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("2mb").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        let err = parse_bytes("12x").unwrap_err().to_string();
        assert_eq!(err, "invalid size \"12x\"");
    }
}

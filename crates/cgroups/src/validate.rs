//! Checks of `linux.resources` made before anything is created on the host.
//! Every error names the spec field at fault.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use crate::Error;

const P: &str = "linux.resources";

/// Controllers a `unified` key may name.
pub(crate) const V2_CONTROLLERS: &[&str] = &[
    "cgroup", "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// Files of the `cgroup.` namespace the runtime manages itself.
const RESERVED_KEYS: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "cgroup.controllers",
    "cgroup.events",
    "cgroup.stat",
    "cgroup.type",
];

fn bad(field: &str, msg: String) -> Error {
    Error::invalid(format!("{P}.{field}"), msg)
}

fn limit(field: &str, v: Option<i64>) -> Result<(), Error> {
    match v {
        Some(v) if v < -1 => Err(bad(field, format!("{v} is not a valid limit"))),
        _ => Ok(()),
    }
}

/// Validates `resources` without touching any cgroup: values out of range,
/// malformed CPU/memory-node lists or device rules, unknown `unified` keys.
/// CPU and memory-node lists are also checked against the CPUs and nodes
/// online on the host (`/sys/devices/system/{cpu,node}/online`); the check
/// against the parent cgroup's effective set happens in [`Manager::apply`].
///
/// [`Manager::apply`]: crate::Manager::apply
pub fn validate(resources: &LinuxResources) -> Result<(), Error> {
    validate_pure(resources)?;
    if let Some(cpu) = resources.cpu() {
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.trim().is_empty()) {
            check_subset(
                "cpu.cpus",
                cpus,
                "/sys/devices/system/cpu/online",
                "the host's online CPUs",
            )?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.trim().is_empty()) {
            check_subset(
                "cpu.mems",
                mems,
                "/sys/devices/system/node/online",
                "the host's online memory nodes",
            )?;
        }
    }
    Ok(())
}

fn check_subset(field: &str, list: &str, file: &str, what: &str) -> Result<(), Error> {
    let Ok(avail) = std::fs::read_to_string(file) else {
        return Ok(()); // no such sysfs file (e.g. no NUMA): the kernel decides
    };
    subset_of(field, list, avail.trim(), what)
}

/// Errors unless every id of `list` is in `avail` (both in cpuset list syntax).
pub(crate) fn subset_of(field: &str, list: &str, avail: &str, what: &str) -> Result<(), Error> {
    let want = parse_id_list(list).map_err(|m| bad(field, m))?;
    let have = parse_id_list(avail).map_err(|m| bad(field, format!("{what}: {m}")))?;
    for (lo, hi) in want {
        for id in lo..=hi {
            if !have.iter().any(|&(a, b)| a <= id && id <= b) {
                return Err(bad(
                    field,
                    format!("{id} (in {list:?}) is not in {what} ({avail})"),
                ));
            }
        }
    }
    Ok(())
}

/// Parses a cpuset list (`0-3,5,7-8`) into inclusive ranges.
pub fn parse_id_list(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    for part in s.trim().split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("{s:?} is not a valid list (empty element)"));
        }
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return Err(format!("{s:?} is not a valid list ({part:?})"));
        };
        if a > b {
            return Err(format!(
                "{s:?} is not a valid list (range {part:?} is reversed)"
            ));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// Validation with no I/O at all (also run by `apply`).
pub(crate) fn validate_pure(r: &LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        check_memory(m)?;
    }
    if let Some(c) = r.cpu() {
        check_cpu(c)?;
    }
    if let Some(b) = r.block_io() {
        check_blkio(b)?;
    }
    check_hugepages(r)?;
    if let Some(n) = r.network() {
        check_network(n)?;
    }
    for name in r.rdma().iter().flat_map(HashMap::keys) {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad("rdma", format!("{name:?} is not a device name")));
        }
    }
    for (k, _) in r.unified().iter().flatten() {
        unified_key(k)?;
    }
    check_devices(r)?;
    Ok(())
}

/// `memory`: limits, swap against the limit, swappiness.
fn check_memory(m: &LinuxMemory) -> Result<(), Error> {
    limit("memory.limit", m.limit())?;
    limit("memory.reservation", m.reservation())?;
    limit("memory.swap", m.swap())?;
    limit("memory.kernel", m.kernel())?;
    limit("memory.kernelTCP", m.kernel_tcp())?;
    if let (Some(swap), Some(lim)) = (m.swap(), m.limit()) {
        if swap > 0 && lim > 0 && swap < lim {
            return Err(bad(
                "memory.swap",
                format!("{swap} is below memory.limit {lim}: swap is memory+swap and must be >= the memory limit"),
            ));
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(bad("memory.swappiness", format!("{s} is not in 0..=100")));
        }
    }
    Ok(())
}

/// `cpu`: shares, quota, period, burst, idle, realtime, cpuset lists.
fn check_cpu(c: &LinuxCpu) -> Result<(), Error> {
    if let Some(s) = c.shares() {
        if s != 0 && !(2..=262_144).contains(&s) {
            return Err(bad("cpu.shares", format!("{s} is not in 2..=262144")));
        }
    }
    if let Some(q) = c.quota() {
        if q < -1 || (0..1000).contains(&q) && q != 0 {
            return Err(bad(
                "cpu.quota",
                format!("{q} is not valid (-1 for no limit, or at least 1000 microseconds)"),
            ));
        }
    }
    if let Some(p) = c.period() {
        if p != 0 && !(1000..=1_000_000).contains(&p) {
            return Err(bad(
                "cpu.period",
                format!("{p} is not in 1000..=1000000 microseconds"),
            ));
        }
    }
    if let (Some(b), Some(q)) = (c.burst(), c.quota()) {
        if q > 0 && b > q as u64 {
            return Err(bad("cpu.burst", format!("{b} exceeds cpu.quota {q}")));
        }
    }
    if let Some(i) = c.idle() {
        if i != 0 && i != 1 {
            return Err(bad("cpu.idle", format!("{i} is not 0 or 1")));
        }
    }
    if let Some(rt) = c.realtime_runtime() {
        if rt < -1 {
            return Err(bad("cpu.realtimeRuntime", format!("{rt} is not valid")));
        }
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.trim().is_empty()) {
        parse_id_list(cpus).map_err(|m| bad("cpu.cpus", m))?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.trim().is_empty()) {
        parse_id_list(mems).map_err(|m| bad("cpu.mems", m))?;
    }
    Ok(())
}

/// `blockIO`: weights and device numbers.
fn check_blkio(b: &LinuxBlockIo) -> Result<(), Error> {
    let w = |field: &str, v: Option<u16>| match v {
        Some(v) if v != 0 && !(10..=1000).contains(&v) => {
            Err(bad(field, format!("{v} is not in 10..=1000")))
        }
        _ => Ok(()),
    };
    w("blockIO.weight", b.weight())?;
    w("blockIO.leafWeight", b.leaf_weight())?;
    for d in b.weight_device().iter().flatten() {
        dev("blockIO.weightDevice", d.major(), d.minor())?;
        w("blockIO.weightDevice.weight", d.weight())?;
        w("blockIO.weightDevice.leafWeight", d.leaf_weight())?;
    }
    for (name, list) in [
        (
            "blockIO.throttleReadBpsDevice",
            b.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            b.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            b.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            b.throttle_write_iops_device(),
        ),
    ] {
        for d in list.iter().flatten() {
            dev(name, d.major(), d.minor())?;
        }
    }
    Ok(())
}

/// `network`: interface names of the priorities.
fn check_network(n: &LinuxNetwork) -> Result<(), Error> {
    for p in n.priorities().iter().flatten() {
        if p.name().is_empty() || p.name().contains(char::is_whitespace) {
            return Err(bad(
                "network.priorities.name",
                format!("{:?} is not an interface name", p.name()),
            ));
        }
    }
    Ok(())
}

/// `hugepageLimits`: page sizes and limits.
fn check_hugepages(r: &LinuxResources) -> Result<(), Error> {
    for h in r.hugepage_limits().iter().flatten() {
        hugepage_size(h.page_size())?;
        if h.limit() < 0 {
            return Err(bad(
                "hugepageLimits.limit",
                format!(
                    "{} is not a valid limit (page size {})",
                    h.limit(),
                    h.page_size()
                ),
            ));
        }
    }
    Ok(())
}

/// `devices`: access strings and device numbers.
fn check_devices(r: &LinuxResources) -> Result<(), Error> {
    for d in r.devices().iter().flatten() {
        if let Some(a) = d.access() {
            if a.is_empty() || !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(bad(
                    "devices.access",
                    format!("{a:?} is not a combination of r, w and m"),
                ));
            }
        }
        for (what, v) in [("devices.major", d.major()), ("devices.minor", d.minor())] {
            if let Some(v) = v {
                if v < -1 || v > u32::MAX as i64 {
                    return Err(bad(what, format!("{v} is not a device number")));
                }
            }
        }
    }
    Ok(())
}

fn dev(field: &str, major: i64, minor: i64) -> Result<(), Error> {
    if !(0..=u32::MAX as i64).contains(&major) || !(0..=u32::MAX as i64).contains(&minor) {
        return Err(bad(
            field,
            format!("{major}:{minor} is not a device number"),
        ));
    }
    Ok(())
}

/// Checks a hugepage size (`2MB`, `1GB`, `64KB`).
pub(crate) fn hugepage_size(s: &str) -> Result<(), Error> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
    {
        return Err(bad(
            "hugepageLimits.pageSize",
            format!("{s:?} is not a page size such as \"2MB\" or \"1GB\""),
        ));
    }
    Ok(())
}

/// Checks a `unified` key: `<controller>.<file>` of a known controller, no
/// `/` or `..`, not one of the files the runtime manages.
pub(crate) fn unified_key(k: &str) -> Result<(), Error> {
    let field = format!("{P}.unified.{k}");
    if k.is_empty() || k.contains('/') || k.contains("..") || k.contains('\0') {
        return Err(Error::invalid(
            field,
            "key must be a plain cgroup file name (no '/' or '..')",
        ));
    }
    let Some((ctrl, rest)) = k.split_once('.') else {
        return Err(Error::invalid(
            field,
            "key must have the form <controller>.<file>",
        ));
    };
    if rest.is_empty() {
        return Err(Error::invalid(
            field,
            "key must have the form <controller>.<file>",
        ));
    }
    if !V2_CONTROLLERS.contains(&ctrl) {
        return Err(Error::invalid(
            field,
            format!(
                "unknown cgroup v2 controller {ctrl:?} (known: {})",
                V2_CONTROLLERS.join(", ")
            ),
        ));
    }
    if RESERVED_KEYS.contains(&k) {
        return Err(Error::invalid(field, "this file is managed by the runtime"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lists() {
        assert_eq!(parse_id_list("0-2,5").unwrap(), vec![(0, 2), (5, 5)]);
        assert!(parse_id_list("2-1").is_err());
        assert!(parse_id_list("a").is_err());
        assert!(subset_of("cpu.cpus", "0-1", "0-3", "x").is_ok());
        let e = subset_of("cpu.cpus", "0,7", "0-3", "the parent's").unwrap_err();
        assert!(e.to_string().contains("linux.resources.cpu.cpus: 7"), "{e}");
    }

    #[test]
    fn rejects() {
        let e = validate_pure(&res(r#"{"memory":{"limit":-5}}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.memory.limit: -5 is not a valid limit"
        );
        for (j, needle) in [
            (r#"{"cpu":{"shares":1}}"#, "cpu.shares"),
            (r#"{"cpu":{"quota":500}}"#, "cpu.quota"),
            (r#"{"cpu":{"period":5}}"#, "cpu.period"),
            (r#"{"memory":{"swappiness":101}}"#, "memory.swappiness"),
            (r#"{"memory":{"limit":100,"swap":50}}"#, "memory.swap"),
            (r#"{"blockIO":{"weight":5}}"#, "blockIO.weight"),
            (r#"{"unified":{"foo.bar":"1"}}"#, "unified.foo.bar"),
            (r#"{"unified":{"memory.max/../x":"1"}}"#, "unified"),
            (
                r#"{"unified":{"cgroup.procs":"1"}}"#,
                "unified.cgroup.procs",
            ),
            (
                r#"{"hugepageLimits":[{"pageSize":"2XB","limit":1}]}"#,
                "pageSize",
            ),
            (
                r#"{"devices":[{"allow":true,"access":"rx"}]}"#,
                "devices.access",
            ),
            (r#"{"cpu":{"cpus":"3-1"}}"#, "cpu.cpus"),
        ] {
            let e = validate_pure(&res(j)).unwrap_err().to_string();
            assert!(e.contains(needle), "{j}: {e}");
        }
        validate_pure(&res(
            r#"{"memory":{"limit":-1,"swap":-1},"cpu":{"quota":-1,"shares":1024},"unified":{"hugetlb.2MB.max":"0"}}"#,
        ))
        .unwrap();
    }
}

//! Resource usage in the shape of the `data` object of runc's
//! `events --stats` (runc `types/events.go`), read from v1 or v2 files.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::fsutil::{self, keyed};
use crate::Error;

fn zero(v: &u64) -> bool {
    *v == 0
}

/// Stats of one container (`runc events --stats` `data`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// CPU usage and throttling.
    pub cpu: Cpu,
    /// The cpuset in force.
    pub cpuset: CpuSet,
    /// Memory usage.
    pub memory: Memory,
    /// Number of processes.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page usage per page size (`2MB`, `1GB`).
    pub hugetlb: HashMap<String, Hugetlb>,
    /// Always empty (no Intel RDT support); kept for runc compatibility.
    pub intel_rdt: HashMap<String, String>,
    /// Always null (network stats are read in the container's netns by the
    /// runtime, not from cgroups).
    pub network_interfaces: Option<Vec<()>>,
}

/// The CPUs and memory nodes of the cgroup (effective sets).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuSet {
    /// CPU ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    /// `cpuset.cpu_exclusive` (v1).
    pub cpu_exclusive: u64,
    /// Memory node ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    /// `cpuset.mem_hardwall` (v1).
    pub mem_hardwall: u64,
    /// `cpuset.mem_exclusive` (v1).
    pub mem_exclusive: u64,
    /// `cpuset.memory_migrate` (v1).
    pub memory_migrate: u64,
    /// `cpuset.memory_spread_page` (v1).
    pub memory_spread_page: u64,
    /// `cpuset.memory_spread_slab` (v1).
    pub memory_spread_slab: u64,
    /// `cpuset.memory_pressure` (v1).
    pub memory_pressure: u64,
    /// `cpuset.sched_load_balance` (v1).
    pub sched_load_balance: u64,
    /// `cpuset.sched_relax_domain_level` (v1).
    pub sched_relax_domain_level: i64,
}

fn ids(text: &str) -> Vec<u16> {
    crate::validate::parse_id_list(text)
        .map(|r| {
            r.into_iter()
                .flat_map(|(a, b)| a..=b)
                .map(|i| i as u16)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn cpuset(dir: &Path, s: &mut Stats, v2: bool) -> Result<(), Error> {
    let c = &mut s.cpuset;
    if let Some(t) = fsutil::read_opt(dir, "cpuset.effective_cpus")? {
        c.cpus = ids(&t);
    }
    if let Some(t) = fsutil::read_opt(dir, "cpuset.effective_mems")? {
        c.mems = ids(&t);
    }
    if v2 {
        return Ok(());
    }
    c.cpu_exclusive = fsutil::read_u64(dir, "cpuset.cpu_exclusive")?;
    c.mem_hardwall = fsutil::read_u64(dir, "cpuset.mem_hardwall")?;
    c.mem_exclusive = fsutil::read_u64(dir, "cpuset.mem_exclusive")?;
    c.memory_migrate = fsutil::read_u64(dir, "cpuset.memory_migrate")?;
    c.memory_spread_page = fsutil::read_u64(dir, "cpuset.memory_spread_page")?;
    c.memory_spread_slab = fsutil::read_u64(dir, "cpuset.memory_spread_slab")?;
    c.memory_pressure = fsutil::read_u64(dir, "cpuset.memory_pressure")?;
    c.sched_load_balance = fsutil::read_u64(dir, "cpuset.sched_load_balance")?;
    c.sched_relax_domain_level = fsutil::read_opt(dir, "cpuset.sched_relax_domain_level")?
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}

/// Huge page usage of one page size.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    /// Peak bytes (v1 only).
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// One line of a pressure file (`some` or `full`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PsiData {
    /// Share of time stalled over 10 s, percent.
    pub avg10: f64,
    /// Over 60 s.
    pub avg60: f64,
    /// Over 300 s.
    pub avg300: f64,
    /// Total stall time, microseconds.
    pub total: u64,
}

/// Pressure stall information of one resource (cgroup2 `*.pressure`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PsiStats {
    /// Some tasks stalled.
    pub some: PsiData,
    /// All tasks stalled.
    pub full: PsiData,
}

/// Parses a cgroup2 pressure file.
pub(crate) fn psi(dir: &Path, name: &str) -> Result<Option<PsiStats>, Error> {
    let Some(text) = fsutil::read_opt(dir, name)? else {
        return Ok(None);
    };
    let mut p = PsiStats::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let d = match it.next() {
            Some("some") => &mut p.some,
            Some("full") => &mut p.full,
            _ => continue,
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "avg10" => d.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => d.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => d.avg300 = v.parse().unwrap_or(0.0),
                "total" => d.total = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok(Some(p))
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The counter.
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

/// Block I/O counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Blkio {
    /// Bytes transferred per device and operation.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations per device and operation.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// I/O pressure (cgroup2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Process count.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Pids {
    /// Processes in the cgroup.
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// `pids.max` (0 for no limit).
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

/// CFS throttling counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Throttling {
    /// Enforcement periods.
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    /// Total throttled time, ns.
    #[serde(rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

/// CPU time, nanoseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU in kernel mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU in user mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Kernel mode.
    pub kernel: u64,
    /// User mode.
    pub user: u64,
}

/// CPU stats.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
    /// CPU pressure (cgroup2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// One memory counter group.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryEntry {
    /// Limit in bytes (`u64::MAX`-ish when unlimited, as the kernel reports).
    pub limit: u64,
    /// Bytes in use.
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    /// Peak bytes.
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory stats.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Memory {
    /// Page cache bytes.
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory+swap (v1: memsw; v2: swap + memory).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Every counter of `memory.stat`.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub raw: HashMap<String, u64>,
    /// Memory pressure (cgroup2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

fn flat(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn list(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// USER_HZ ticks to nanoseconds.
fn ticks_ns(t: u64) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    t.saturating_mul(1_000_000_000 / hz)
}

pub(crate) fn cpuacct_v1(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let u = &mut s.cpu.usage;
    u.total = fsutil::read_u64(dir, "cpuacct.usage")?;
    if let Some(t) = fsutil::read_opt(dir, "cpuacct.usage_percpu")? {
        u.percpu = list(&t);
    }
    if let Some(t) = fsutil::read_opt(dir, "cpuacct.usage_percpu_sys")? {
        u.percpu_kernel = list(&t);
    }
    if let Some(t) = fsutil::read_opt(dir, "cpuacct.usage_percpu_user")? {
        u.percpu_user = list(&t);
    }
    if let Some(t) = fsutil::read_opt(dir, "cpuacct.stat")? {
        u.user = ticks_ns(keyed(&t, "user").unwrap_or(0));
        u.kernel = ticks_ns(keyed(&t, "system").unwrap_or(0));
    }
    Ok(())
}

pub(crate) fn throttling(dir: &Path, s: &mut Stats, v2: bool) -> Result<(), Error> {
    if let Some(t) = fsutil::read_opt(dir, "cpu.stat")? {
        let th = &mut s.cpu.throttling;
        th.periods = keyed(&t, "nr_periods").unwrap_or(0);
        th.throttled_periods = keyed(&t, "nr_throttled").unwrap_or(0);
        if v2 {
            th.throttled_time = keyed(&t, "throttled_usec").unwrap_or(0) * 1000;
            let u = &mut s.cpu.usage;
            u.total = keyed(&t, "usage_usec").unwrap_or(0) * 1000;
            u.user = keyed(&t, "user_usec").unwrap_or(0) * 1000;
            u.kernel = keyed(&t, "system_usec").unwrap_or(0) * 1000;
        } else {
            th.throttled_time = keyed(&t, "throttled_time").unwrap_or(0);
        }
    }
    Ok(())
}

fn mem_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |suffix: &str| fsutil::read_u64(dir, &format!("{prefix}.{suffix}"));
    Ok(MemoryEntry {
        limit: f("limit_in_bytes")?,
        usage: f("usage_in_bytes")?,
        max: f("max_usage_in_bytes")?,
        failcnt: f("failcnt")?,
    })
}

pub(crate) fn memory_v1(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let m = &mut s.memory;
    m.raw = flat(&fsutil::read(dir, "memory.stat")?);
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = mem_entry(dir, "memory")?;
    m.swap = mem_entry(dir, "memory.memsw")?;
    m.kernel = mem_entry(dir, "memory.kmem")?;
    m.kernel_tcp = mem_entry(dir, "memory.kmem.tcp")?;
    Ok(())
}

pub(crate) fn memory_v2(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let m = &mut s.memory;
    m.raw = flat(&fsutil::read(dir, "memory.stat")?);
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    let events = fsutil::read_opt(dir, "memory.events")?.unwrap_or_default();
    m.usage = MemoryEntry {
        limit: fsutil::read_u64(dir, "memory.max")?,
        usage: fsutil::read_u64(dir, "memory.current")?,
        max: fsutil::read_u64(dir, "memory.peak")?,
        failcnt: keyed(&events, "max").unwrap_or(0),
    };
    let swap_cur = fsutil::read_u64(dir, "memory.swap.current")?;
    let swap_max = fsutil::read_u64(dir, "memory.swap.max")?;
    m.swap = MemoryEntry {
        limit: swap_max.saturating_add(m.usage.limit),
        usage: swap_cur + m.usage.usage,
        max: 0,
        failcnt: 0,
    };
    Ok(())
}

pub(crate) fn pids(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    s.pids.current = fsutil::read_u64(dir, "pids.current")?;
    let max = fsutil::read_u64(dir, "pids.max")?;
    s.pids.limit = if max == u64::MAX { 0 } else { max };
    Ok(())
}

fn blkio_v1_file(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let op = it.next()?;
            let value = it.next()?.parse().ok()?;
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: op.to_owned(),
                value,
            })
        })
        .collect()
}

pub(crate) fn blkio_v1(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    for (bfq, throttle, out) in [
        (
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
            &mut s.blkio.io_service_bytes_recursive,
        ),
        (
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
            &mut s.blkio.io_serviced_recursive,
        ),
    ] {
        let mut v = fsutil::read_opt(dir, bfq)?
            .map(|t| blkio_v1_file(&t))
            .unwrap_or_default();
        if v.is_empty() {
            v = fsutil::read_opt(dir, throttle)?
                .map(|t| blkio_v1_file(&t))
                .unwrap_or_default();
        }
        *out = v;
    }
    Ok(())
}

pub(crate) fn io_v2(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let Some(t) = fsutil::read_opt(dir, "io.stat")? else {
        return Ok(());
    };
    for l in t.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (op, out) = match k {
                "rbytes" => ("Read", &mut s.blkio.io_service_bytes_recursive),
                "wbytes" => ("Write", &mut s.blkio.io_service_bytes_recursive),
                "rios" => ("Read", &mut s.blkio.io_serviced_recursive),
                "wios" => ("Write", &mut s.blkio.io_serviced_recursive),
                _ => continue,
            };
            out.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    Ok(())
}

/// Page sizes the kernel supports, as cgroup file names spell them (`2MB`).
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let kb: u64 = name
                .to_str()?
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            })
        })
        .collect();
    out.sort();
    out
}

pub(crate) fn hugetlb(dir: &Path, s: &mut Stats, v2: bool) -> Result<(), Error> {
    for size in hugepage_sizes() {
        let h = if v2 {
            let events =
                fsutil::read_opt(dir, &format!("hugetlb.{size}.events"))?.unwrap_or_default();
            Hugetlb {
                usage: fsutil::read_u64(dir, &format!("hugetlb.{size}.current"))?,
                max: 0,
                failcnt: keyed(&events, "max").unwrap_or(0),
            }
        } else {
            Hugetlb {
                usage: fsutil::read_u64(dir, &format!("hugetlb.{size}.usage_in_bytes"))?,
                max: fsutil::read_u64(dir, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: fsutil::read_u64(dir, &format!("hugetlb.{size}.failcnt"))?,
            }
        };
        s.hugetlb.insert(size, h);
    }
    Ok(())
}

//! Writers of `linux.resources` groups to cgroup v2 files (memory, cpu,
//! io) and runc's v1 -> v2 value conversions.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use crate::fsutil::{self, dev_line, exists, field as f, Num};
use crate::Error;

/// runc's conversion of the OCI memory+swap value to cgroup2's swap-only one.
pub(crate) fn swap_v2(swap: i64, memory: i64) -> Result<i64, String> {
    Ok(match (swap, memory) {
        (0, -1) => -1,
        (-1, _) | (0, _) => swap,
        (_, -1) => swap,
        (_, 0) => return Err("cannot set a swap limit without a memory limit".into()),
        (_, m) if m < 0 => return Err(format!("invalid memory limit {m}")),
        (s, m) if s < m => {
            return Err(format!(
                "{s} is below memory.limit {m} (swap is memory+swap)"
            ))
        }
        (s, m) => s - m,
    })
}

/// Writes `memory` (swap.max converted, max, low).
pub(crate) fn memory_v2(d: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().filter(|&v| v != 0);
    if m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            let usage = fsutil::read_u64(d, "memory.current")?;
            if (l as u64) < usage {
                return Err(Error::invalid(
                    f("memory.limit"),
                    format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
    }
    let swap = swap_v2(m.swap().unwrap_or(0), limit.unwrap_or(0))
        .map_err(|msg| Error::invalid(f("memory.swap"), msg))?;
    // swap == limit (both > 0) means "no swap": write 0 then (as runc)
    let no_swap = swap == 0 && m.swap().unwrap_or(0) > 0;
    if swap != 0 || no_swap {
        if exists(d, "memory.swap.max") {
            fsutil::write_max(d, "memory.swap.max", swap, &f("memory.swap"))?;
        } else if swap != -1 && !no_swap {
            return Err(Error::unsupported(
                f("memory.swap"),
                "swap accounting is off on this host (no memory.swap.max)",
            ));
        }
    }
    if let Some(l) = limit {
        fsutil::write_max(d, "memory.max", l, &f("memory.limit"))?;
    }
    if let Some(r) = m.reservation().filter(|&v| v != 0) {
        fsutil::write_max(d, "memory.low", r, &f("memory.reservation"))?;
    }
    // kernel, kernelTCP, swappiness, disableOOMKiller and useHierarchy have
    // no cgroup2 files; like runc, they are ignored there.
    Ok(())
}

/// runc's conversion of cpu.shares (2..262144) to cpu.weight (1..10000):
/// a quadratic in log2 that maps 2->1, 1024->100, 262144->10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        s if s <= 2 => 1,
        s if s >= 262_144 => 10_000,
        s => {
            let l = libm::log2(s as f64);
            let exp = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            libm::ceil(libm::pow(10.0, exp)) as u64
        }
    }
}

/// runc's conversion of blkio.weight (10..1000) to io.weight (1..10000).
pub fn blkio_weight_to_io(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + (w as u64).saturating_sub(10) * 9999 / 990
    }
}

/// Writes `cpu` (idle, weight from shares, max, max.burst).
pub(crate) fn cpu_v2(d: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if c.realtime_period().unwrap_or(0) != 0 || c.realtime_runtime().unwrap_or(0) != 0 {
        return Err(Error::unsupported(
            f("cpu.realtimeRuntime"),
            "cgroup v2 has no realtime scheduling limits",
        ));
    }
    let idle = c.idle();
    if let Some(i) = idle {
        fsutil::write_i64(d, "cpu.idle", i, &f("cpu.idle"))?;
    }
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        if idle != Some(1) {
            fsutil::write_u64(d, "cpu.weight", shares_to_weight(s), &f("cpu.shares"))?;
        }
    }
    let quota = c.quota().filter(|&q| q != 0);
    let period = c.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        let mut v = String::with_capacity(32);
        match quota {
            Some(q) if q > 0 => {
                v.push_str(std::str::from_utf8(Num::i(q).as_bytes()).unwrap_or("max"))
            }
            Some(_) => v.push_str("max"),
            None => {
                // keep the current quota when only the period changes
                let cur = fsutil::read(d, "cpu.max")?;
                v.push_str(cur.split_whitespace().next().unwrap_or("max"));
            }
        }
        if let Some(p) = period {
            v.push(' ');
            v.push_str(std::str::from_utf8(Num::u(p).as_bytes()).unwrap_or("100000"));
        }
        let field = if quota.is_some() {
            "cpu.quota"
        } else {
            "cpu.period"
        };
        fsutil::write(d, "cpu.max", v.as_bytes(), &f(field))?;
    }
    if let Some(b) = c.burst() {
        fsutil::write_u64(d, "cpu.max.burst", b, &f("cpu.burst"))?;
    }
    Ok(())
}

/// Writes `blockIO` as io.weight / io.bfq.weight / io.max.
pub(crate) fn io_v2(d: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    let bfq = exists(d, "io.bfq.weight");
    let no_weights = |field: &str| {
        Error::unsupported(
            f(field),
            "this host has no io.weight or io.bfq.weight file: its I/O scheduler has no proportional weights",
        )
    };
    let mut line = String::with_capacity(64);
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        if bfq {
            fsutil::write_u64(d, "io.bfq.weight", w as u64, &f("blockIO.weight"))?;
        } else if exists(d, "io.weight") {
            fsutil::write_u64(d, "io.weight", blkio_weight_to_io(w), &f("blockIO.weight"))?;
        } else {
            return Err(no_weights("blockIO.weight"));
        }
    }
    for wd in b.weight_device().iter().flatten() {
        let Some(w) = wd.weight().filter(|&w| w != 0) else {
            continue;
        };
        let (file, v) = if bfq {
            ("io.bfq.weight", w as u64)
        } else if exists(d, "io.weight") {
            ("io.weight", blkio_weight_to_io(w))
        } else {
            return Err(no_weights("blockIO.weightDevice"));
        };
        dev_line(&mut line, wd.major(), wd.minor(), v);
        fsutil::write(d, file, line.as_bytes(), &f("blockIO.weightDevice"))?;
    }
    for (field, key, list) in [
        (
            "blockIO.throttleReadBpsDevice",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ] {
        for t in list.iter().flatten() {
            use std::fmt::Write;
            line.clear();
            let _ = write!(line, "{}:{} {key}=", t.major(), t.minor());
            if t.rate() == 0 {
                line.push_str("max");
            } else {
                let _ = write!(line, "{}", t.rate());
            }
            fsutil::write(d, "io.max", line.as_bytes(), &f(field))?;
        }
    }
    Ok(())
}

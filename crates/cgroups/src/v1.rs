//! Writers of `linux.resources` groups to cgroup v1 files (memory, cpu,
//! blkio). Routing and preflight checks live in `manager.rs`.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use crate::fsutil::{self, dev_line, exists, field as f};
use crate::Error;

/// Writes `memory` (limit/memsw in the order the current limit needs,
/// soft limit, kmem, swappiness, oom_control, use_hierarchy).
pub(crate) fn memory_v1(d: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().filter(|&v| v != 0);
    let mut swap = m.swap().filter(|&v| v != 0);
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            let usage = fsutil::read_u64(d, "memory.usage_in_bytes")?;
            if (l as u64) < usage {
                return Err(Error::invalid(
                    f("memory.limit"),
                    format!("{l} is below the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
    }
    let have_swap = exists(d, MEMSW);
    if limit == Some(-1) && swap.is_none() && have_swap {
        swap = Some(-1);
    }
    if swap.is_some() && !have_swap {
        return Err(Error::unsupported(
            f("memory.swap"),
            format!("swap accounting is off on this host (no {MEMSW})"),
        ));
    }
    let (lf, sf) = (f("memory.limit"), f("memory.swap"));
    match (limit, swap) {
        (Some(l), Some(s)) => {
            let cur = fsutil::read_u64(d, "memory.limit_in_bytes")?;
            if s == -1 || cur < s as u64 {
                fsutil::write_i64(d, MEMSW, s, &sf)?;
                fsutil::write_i64(d, "memory.limit_in_bytes", l, &lf)?;
            } else {
                fsutil::write_i64(d, "memory.limit_in_bytes", l, &lf)?;
                fsutil::write_i64(d, MEMSW, s, &sf)?;
            }
        }
        (Some(l), None) => fsutil::write_i64(d, "memory.limit_in_bytes", l, &lf)?,
        (None, Some(s)) => fsutil::write_i64(d, MEMSW, s, &sf)?,
        (None, None) => {}
    }
    if let Some(v) = m.reservation().filter(|&v| v != 0) {
        fsutil::write_i64(d, "memory.soft_limit_in_bytes", v, &f("memory.reservation"))?;
    }
    for (v, file, field) in [
        (m.kernel(), "memory.kmem.limit_in_bytes", "memory.kernel"),
        (
            m.kernel_tcp(),
            "memory.kmem.tcp.limit_in_bytes",
            "memory.kernelTCP",
        ),
    ] {
        if let Some(v) = v.filter(|&v| v != 0) {
            if !exists(d, file) {
                return Err(Error::unsupported(
                    f(field),
                    format!("the kernel has no {file}"),
                ));
            }
            fsutil::write_i64(d, file, v, &f(field))?;
        }
    }
    if let Some(s) = m.swappiness() {
        fsutil::write_u64(d, "memory.swappiness", s, &f("memory.swappiness"))?;
    }
    if m.disable_oom_killer() == Some(true) {
        fsutil::write(d, "memory.oom_control", b"1", &f("memory.disableOOMKiller"))?;
    }
    if let Some(h) = m.use_hierarchy() {
        fsutil::write(
            d,
            "memory.use_hierarchy",
            if h { b"1" } else { b"0" },
            &f("memory.useHierarchy"),
        )?;
    }
    Ok(())
}

/// Writes `cpu` (shares, CFS period/quota/burst, realtime, idle).
pub(crate) fn cpu_v1(d: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        fsutil::write_u64(d, "cpu.shares", s, &f("cpu.shares"))?;
    }
    let quota = c.quota().filter(|&q| q != 0);
    let mut period_pending = None;
    if let Some(p) = c.period().filter(|&p| p != 0) {
        if let Err(e) = fsutil::write_u64(d, "cpu.cfs_period_us", p, &f("cpu.period")) {
            // A smaller period can be refused until the quota is lowered.
            let einval = matches!(&e, Error::Write { source, .. } if source.raw_os_error() == Some(libc::EINVAL));
            if !einval || quota.is_none() {
                return Err(e);
            }
            period_pending = Some(p);
        }
    }
    if let Some(q) = quota {
        fsutil::write_i64(d, "cpu.cfs_quota_us", q, &f("cpu.quota"))?;
        if let Some(p) = period_pending {
            fsutil::write_u64(d, "cpu.cfs_period_us", p, &f("cpu.period"))?;
        }
    }
    if let Some(b) = c.burst() {
        if !exists(d, "cpu.cfs_burst_us") {
            return Err(Error::unsupported(
                f("cpu.burst"),
                "the kernel has no cpu.cfs_burst_us",
            ));
        }
        fsutil::write_u64(d, "cpu.cfs_burst_us", b, &f("cpu.burst"))?;
    }
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        fsutil::write_u64(d, "cpu.rt_period_us", p, &f("cpu.realtimePeriod"))?;
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        fsutil::write_i64(d, "cpu.rt_runtime_us", r, &f("cpu.realtimeRuntime"))?;
    }
    if let Some(i) = c.idle() {
        if !exists(d, "cpu.idle") {
            return Err(Error::unsupported(
                f("cpu.idle"),
                "the kernel has no cpu.idle",
            ));
        }
        fsutil::write_i64(d, "cpu.idle", i, &f("cpu.idle"))?;
    }
    Ok(())
}

/// Writes `blockIO` (weights, device weights, throttles).
pub(crate) fn blkio_v1(d: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    let weight_file = if exists(d, "blkio.weight") {
        Some(("blkio.weight", "blkio.weight_device"))
    } else if exists(d, "blkio.bfq.weight") {
        Some(("blkio.bfq.weight", "blkio.bfq.weight_device"))
    } else {
        None
    };
    let no_weights = |field: &str| {
        Error::unsupported(
            f(field),
            "this host has no blkio weight files (blkio.weight, blkio.bfq.weight): its I/O scheduler has no proportional weights",
        )
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        let (wf, _) = weight_file.ok_or_else(|| no_weights("blockIO.weight"))?;
        fsutil::write_u64(d, wf, w as u64, &f("blockIO.weight"))?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        if !exists(d, "blkio.leaf_weight") {
            return Err(no_weights("blockIO.leafWeight"));
        }
        fsutil::write_u64(d, "blkio.leaf_weight", w as u64, &f("blockIO.leafWeight"))?;
    }
    let mut line = String::with_capacity(48);
    for wd in b.weight_device().iter().flatten() {
        for (v, leaf) in [(wd.weight(), false), (wd.leaf_weight(), true)] {
            let Some(v) = v.filter(|&v| v != 0) else {
                continue;
            };
            let field = if leaf {
                "blockIO.weightDevice.leafWeight"
            } else {
                "blockIO.weightDevice"
            };
            let file = if leaf {
                if !exists(d, "blkio.leaf_weight_device") {
                    return Err(no_weights(field));
                }
                "blkio.leaf_weight_device"
            } else {
                weight_file.ok_or_else(|| no_weights(field))?.1
            };
            dev_line(&mut line, wd.major(), wd.minor(), v as u64);
            fsutil::write(d, file, line.as_bytes(), &f(field))?;
        }
    }
    for (field, file, list) in [
        (
            "blockIO.throttleReadBpsDevice",
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        for t in list.iter().flatten() {
            dev_line(&mut line, t.major(), t.minor(), t.rate());
            fsutil::write(d, file, line.as_bytes(), &f(field))?;
        }
    }
    Ok(())
}

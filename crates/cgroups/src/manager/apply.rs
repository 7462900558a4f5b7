//! `apply`: writes `linux.resources` section by section on the hierarchy
//! each controller is routed to (v1 or v2 files), after validation and
//! preflight.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxRdma,
    LinuxResources,
};

use super::{FsManager, C};
use crate::fsutil::{self, exists, field as f};
use crate::v1::{blkio_v1, cpu_v1, memory_v1};
use crate::v2::{cpu_v2, io_v2, memory_v2};
use crate::validate::validate_pure;
use crate::{devices, Error};

impl FsManager {
    /// The body of [`Manager::apply`]: validates, preflights (so a refused
    /// `apply` changes nothing), then writes `r` section by section.
    pub(super) fn apply_resources(&self, r: &LinuxResources) -> Result<(), Error> {
        validate_pure(r)?;
        self.preflight(r)?;
        if let Some(cpu) = r.cpu() {
            self.apply_cpuset(cpu, false)?;
        }
        if let Some(m) = r.memory() {
            if memory_set(m) {
                match self.need(C::Memory, "memory")? {
                    (d, false) => memory_v1(d, m)?,
                    (d, true) => memory_v2(d, m)?,
                }
            }
        }
        if let Some(c) = r.cpu() {
            if cpu_set(c) {
                match self.need(C::Cpu, "cpu")? {
                    (d, false) => cpu_v1(d, c)?,
                    (d, true) => cpu_v2(d, c)?,
                }
            }
        }
        if let Some(p) = r.pids() {
            let (d, _) = self.need(C::Pids, "pids.limit")?;
            if p.limit() > 0 {
                fsutil::write_i64(d, "pids.max", p.limit(), &f("pids.limit"))?;
            } else {
                fsutil::write(d, "pids.max", b"max", &f("pids.limit"))?;
            }
        }
        if let Some(b) = r.block_io() {
            if blkio_set(b) {
                match self.need(C::Blkio, "blockIO")? {
                    (d, false) => blkio_v1(d, b)?,
                    (d, true) => io_v2(d, b)?,
                }
            }
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|v| !v.is_empty()) {
            self.apply_hugetlb(limits)?;
        }
        if let Some(n) = r.network() {
            self.apply_network(n)?;
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            self.apply_rdma(rdma)?;
        }
        if let Some(rules) = r.devices().as_ref().filter(|_| !self.rootless) {
            match self.need(C::Devices, "devices")? {
                (d, false) => devices::apply_v1(d, rules)?,
                (d, true) => devices::apply_v2(d, rules)?,
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|m| !m.is_empty()) {
            self.apply_unified(u)?;
        }
        Ok(())
    }

    /// Writes the hugetlb limits (and their reservation limits when the kernel has them).
    fn apply_hugetlb(&self, limits: &[LinuxHugepageLimit]) -> Result<(), Error> {
        let (d, v2) = self.need(C::Hugetlb, "hugepageLimits")?;
        let mut name = String::with_capacity(40);
        for h in limits {
            let size = h.page_size();
            let (lim, rsvd) = if v2 {
                ("max", "rsvd.max")
            } else {
                ("limit_in_bytes", "rsvd.limit_in_bytes")
            };
            name.clear();
            name.push_str("hugetlb.");
            name.push_str(size);
            name.push('.');
            let base = name.len();
            name.push_str(lim);
            if !exists(d, &name) {
                return Err(Error::unsupported(
                    f("hugepageLimits.pageSize"),
                    format!(
                        "page size {size} is not supported by the kernel (no {name} in {})",
                        d.display()
                    ),
                ));
            }
            fsutil::write_i64(d, &name, h.limit(), &f("hugepageLimits.limit"))?;
            name.truncate(base);
            name.push_str(rsvd);
            if exists(d, &name) {
                fsutil::write_i64(d, &name, h.limit(), &f("hugepageLimits.limit"))?;
            }
        }
        Ok(())
    }

    /// Writes net_cls.classid and net_prio.ifpriomap.
    fn apply_network(&self, n: &LinuxNetwork) -> Result<(), Error> {
        if let Some(id) = n.class_id() {
            let (d, _) = self.need(C::NetCls, "network.classID")?;
            fsutil::write_u64(d, "net_cls.classid", id as u64, &f("network.classID"))?;
        }
        if let Some(prios) = n.priorities().as_ref().filter(|v| !v.is_empty()) {
            let (d, _) = self.need(C::NetPrio, "network.priorities")?;
            let mut line = String::with_capacity(32);
            for p in prios {
                use std::fmt::Write;
                line.clear();
                let _ = write!(line, "{} {}", p.name(), p.priority());
                fsutil::write(
                    d,
                    "net_prio.ifpriomap",
                    line.as_bytes(),
                    &f("network.priorities"),
                )?;
            }
        }
        Ok(())
    }

    /// Writes rdma.max, one line per device.
    fn apply_rdma(&self, rdma: &HashMap<String, LinuxRdma>) -> Result<(), Error> {
        let (d, _) = self.need(C::Rdma, "rdma")?;
        let mut line = String::with_capacity(64);
        for (dev, l) in rdma {
            use std::fmt::Write;
            line.clear();
            line.push_str(dev);
            if let Some(h) = l.hca_handles() {
                let _ = write!(line, " hca_handle={h}");
            }
            if let Some(o) = l.hca_objects() {
                let _ = write!(line, " hca_object={o}");
            }
            if line.len() > dev.len() {
                fsutil::write(d, "rdma.max", line.as_bytes(), &f("rdma"))?;
            }
        }
        Ok(())
    }

    /// Writes `unified` keys on the cgroup2 hierarchy, refusing controllers it does not have.
    fn apply_unified(&self, u: &HashMap<String, String>) -> Result<(), Error> {
        let Some(ix) = self.v2 else {
            return Err(Error::unsupported(
                f("unified"),
                "this host has no cgroup2 hierarchy (cgroup v1 only)",
            ));
        };
        let d = &self.hs[ix].path;
        for (k, v) in u {
            let ctrl = k.split('.').next().unwrap_or("");
            if ctrl != "cgroup" && !self.v2_controllers.split(',').any(|c| c == ctrl) {
                return Err(Error::unsupported(
                    f(&format!("unified.{k}")),
                    format!(
                        "controller {ctrl:?} is not available on the cgroup2 hierarchy at {} (available: {:?})",
                        self.hs[ix].mount_point.display(),
                        self.v2_controllers
                    ),
                ));
            }
            fsutil::write(d, k, v.as_bytes(), &f(&format!("unified.{k}")))?;
        }
        Ok(())
    }
}

pub(super) fn memory_set(m: &LinuxMemory) -> bool {
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
}

pub(super) fn cpu_set(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.realtime_period().is_some()
        || c.realtime_runtime().is_some()
        || c.idle().is_some()
}

pub(super) fn blkio_set(b: &LinuxBlockIo) -> bool {
    let some = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v: &Vec<_>| !v.is_empty());
    b.weight().is_some()
        || b.leaf_weight().is_some()
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || some(b.throttle_read_bps_device())
        || some(b.throttle_write_bps_device())
        || some(b.throttle_read_iops_device())
        || some(b.throttle_write_iops_device())
}

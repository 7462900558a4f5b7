//! Preflight of `apply`: everything that can be checked before the first
//! write (controllers routed, kernel files present for the fields that are
//! set, cpusets within the parent's), so a refused `apply` changes nothing;
//! and the cpuset writer shared with `apply`.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{blkio_set, cpu_set, memory_set, FsManager, C};
use crate::fsutil::{self, exists, field as f};
use crate::v2::swap_v2;
use crate::validate::subset_of;
use crate::{devices, Error};

impl FsManager {
    /// Everything `apply` can find out before writing: controllers present,
    /// host files present for the fields that are set, values that depend on
    /// the parent (cpuset). So a refused `apply` changes nothing.
    pub(super) fn preflight(&self, r: &LinuxResources) -> Result<(), Error> {
        if let Some(c) = r.cpu() {
            self.preflight_cpu(c)?;
        }
        if let Some(m) = r.memory().as_ref().filter(|m| memory_set(m)) {
            self.preflight_memory(m)?;
        }
        if r.pids().is_some() {
            self.need(C::Pids, "pids.limit")?;
        }
        if let Some(b) = r.block_io().as_ref().filter(|b| blkio_set(b)) {
            self.preflight_blkio(b)?;
        }
        if let Some(limits) = r.hugepage_limits().as_ref().filter(|v| !v.is_empty()) {
            self.preflight_hugetlb(limits)?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() {
                self.need(C::NetCls, "network.classID")?;
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                self.need(C::NetPrio, "network.priorities")?;
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            self.need(C::Rdma, "rdma")?;
        }
        if let Some(rules) = r.devices().as_ref().filter(|_| !self.rootless) {
            if let (_, true) = self.need(C::Devices, "devices")? {
                devices::program(rules)?;
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|m| !m.is_empty()) {
            self.preflight_unified(u)?;
        }
        Ok(())
    }

    fn preflight_cpu(&self, c: &LinuxCpu) -> Result<(), Error> {
        self.apply_cpuset(c, true)?;
        if !cpu_set(c) {
            return Ok(());
        }
        let (d, v2) = self.need(C::Cpu, "cpu")?;
        if v2 {
            if c.realtime_period().unwrap_or(0) != 0 || c.realtime_runtime().unwrap_or(0) != 0 {
                return Err(Error::unsupported(
                    f("cpu.realtimeRuntime"),
                    "cgroup v2 has no realtime scheduling limits",
                ));
            }
            return Ok(());
        }
        require_files(
            d,
            &[
                (c.burst().is_some(), "cpu.cfs_burst_us", "cpu.burst"),
                (c.idle().is_some(), "cpu.idle", "cpu.idle"),
                (
                    c.realtime_runtime().unwrap_or(0) != 0,
                    "cpu.rt_runtime_us",
                    "cpu.realtimeRuntime",
                ),
            ],
        )
    }

    fn preflight_memory(&self, m: &LinuxMemory) -> Result<(), Error> {
        let (d, v2) = self.need(C::Memory, "memory")?;
        if v2 {
            let swap = swap_v2(m.swap().unwrap_or(0), m.limit().unwrap_or(0))
                .map_err(|msg| Error::invalid(f("memory.swap"), msg))?;
            if swap != 0 && swap != -1 && !exists(d, "memory.swap.max") {
                return Err(Error::unsupported(
                    f("memory.swap"),
                    "swap accounting is off on this host (no memory.swap.max)",
                ));
            }
            return Ok(());
        }
        require_files(
            d,
            &[
                (
                    m.swap().unwrap_or(0) != 0,
                    "memory.memsw.limit_in_bytes",
                    "memory.swap",
                ),
                (
                    m.kernel().unwrap_or(0) != 0,
                    "memory.kmem.limit_in_bytes",
                    "memory.kernel",
                ),
                (
                    m.kernel_tcp().unwrap_or(0) != 0,
                    "memory.kmem.tcp.limit_in_bytes",
                    "memory.kernelTCP",
                ),
            ],
        )
    }

    fn preflight_blkio(&self, b: &LinuxBlockIo) -> Result<(), Error> {
        let (d, v2) = self.need(C::Blkio, "blockIO")?;
        let weights = b.weight().unwrap_or(0) != 0
            || b.weight_device()
                .iter()
                .flatten()
                .any(|w| w.weight().unwrap_or(0) != 0);
        let have = if v2 {
            exists(d, "io.weight") || exists(d, "io.bfq.weight")
        } else {
            exists(d, "blkio.weight") || exists(d, "blkio.bfq.weight")
        };
        if weights && !have {
            let field = if b.weight().unwrap_or(0) != 0 {
                "blockIO.weight"
            } else {
                "blockIO.weightDevice"
            };
            return Err(Error::unsupported(
                f(field),
                "this host has no blkio/io weight files: its I/O scheduler has no proportional weights",
            ));
        }
        let leaf = b.leaf_weight().unwrap_or(0) != 0
            || b.weight_device()
                .iter()
                .flatten()
                .any(|w| w.leaf_weight().unwrap_or(0) != 0);
        if leaf && !v2 && !exists(d, "blkio.leaf_weight") {
            return Err(Error::unsupported(
                f("blockIO.leafWeight"),
                "this host has no blkio.leaf_weight file (CFQ only)",
            ));
        }
        Ok(())
    }

    fn preflight_hugetlb(&self, limits: &[LinuxHugepageLimit]) -> Result<(), Error> {
        let (d, v2) = self.need(C::Hugetlb, "hugepageLimits")?;
        for h in limits {
            let size = h.page_size();
            let file = format!(
                "hugetlb.{size}.{}",
                if v2 { "max" } else { "limit_in_bytes" }
            );
            if !exists(d, &file) {
                return Err(Error::unsupported(
                    f("hugepageLimits.pageSize"),
                    format!(
                        "page size {size} is not supported by the kernel (no {file} in {})",
                        d.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn preflight_unified(&self, u: &HashMap<String, String>) -> Result<(), Error> {
        let Some(ix) = self.v2 else {
            return Err(Error::unsupported(
                f("unified"),
                "this host has no cgroup2 hierarchy (cgroup v1 only)",
            ));
        };
        for k in u.keys() {
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
        }
        Ok(())
    }

    /// Writes cpuset.cpus/mems, or with `check_only` checks them against the
    /// parent's effective sets.
    pub(super) fn apply_cpuset(&self, cpu: &LinuxCpu, check_only: bool) -> Result<(), Error> {
        let cpus = cpu.cpus().as_deref().filter(|s| !s.trim().is_empty());
        let mems = cpu.mems().as_deref().filter(|s| !s.trim().is_empty());
        if cpus.is_none() && mems.is_none() {
            return Ok(());
        }
        let field = if cpus.is_some() {
            "cpu.cpus"
        } else {
            "cpu.mems"
        };
        let (d, _) = self.need(C::Cpuset, field)?;
        let parent = d.parent().unwrap_or(d);
        for (field, list, file, eff) in [
            ("cpu.cpus", cpus, "cpuset.cpus", "cpuset.effective_cpus"),
            ("cpu.mems", mems, "cpuset.mems", "cpuset.effective_mems"),
        ] {
            let Some(list) = list else { continue };
            if check_only {
                if let Some(avail) = fsutil::read_opt(parent, eff)? {
                    let what = format!("the parent cgroup's {eff} of {}", parent.display());
                    subset_of(field, list, avail.trim(), &what)?;
                }
                continue;
            }
            fsutil::write(
                d,
                file,
                list.as_bytes(),
                &format!("linux.resources.{field}"),
            )?;
        }
        Ok(())
    }
}

/// Refuses the first set field (`(set, file, field)`) whose file the
/// kernel does not have in `dir`.
fn require_files(dir: &Path, checks: &[(bool, &str, &str)]) -> Result<(), Error> {
    for &(set, file, field) in checks {
        if set && !exists(dir, file) {
            return Err(Error::unsupported(
                f(field),
                format!("the kernel has no {file}"),
            ));
        }
    }
    Ok(())
}

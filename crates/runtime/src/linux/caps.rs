//! Capabilities of the container process: the five sets of
//! `process.capabilities` as bitmasks, computed in the runtime before fork
//! and applied in the init with plain syscalls (no allocation).

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::{Error, Result};

/// The five capability sets as bitmasks (bit n = capability n).
#[derive(Debug, Default, Clone, Copy)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

/// Highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn mask(set: &Option<Capabilities>, field: &str, last: u32) -> Result<u64> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cap = caps::Capability::from_str(&name).map_err(|_| {
            Error::Config(format!(
                "config.json: process.capabilities.{field}: unknown capability \"{name}\""
            ))
        })?;
        let idx = u32::from(cap.index());
        // Capabilities the kernel does not know are ignored (as runc does).
        if idx <= last {
            m |= 1 << idx;
        }
    }
    Ok(m)
}

impl CapSets {
    /// Converts the config's sets (missing sets are empty).
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets> {
        let last = last_cap();
        let Some(c) = c else {
            return Ok(CapSets::default());
        };
        Ok(CapSets {
            bounding: mask(c.bounding(), "bounding", last)?,
            effective: mask(c.effective(), "effective", last)?,
            permitted: mask(c.permitted(), "permitted", last)?,
            inheritable: mask(c.inheritable(), "inheritable", last)?,
            ambient: mask(c.ambient(), "ambient", last)?,
        })
    }

    /// Drops every capability not in the bounding set (needs CAP_SETPCAP).
    pub fn drop_bounding(&self) -> std::io::Result<()> {
        for cap in 0..=last_cap() {
            if self.bounding & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments only.
                let rc =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if rc != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets effective, permitted and inheritable, then raises ambient.
    pub fn apply(&self) -> std::io::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let split = |m: u64| (m as u32, (m >> 32) as u32);
        let (e0, e1) = split(self.effective);
        let (p0, p1) = split(self.permitted);
        let (i0, i1) = split(self.inheritable);
        let data = [
            Data {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            Data {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: capset reads a valid v3 header and two data structs.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The kernel only allows ambient capabilities that are permitted and
        // inheritable; others are skipped (runc's default spec lists ambient
        // capabilities without inheritable ones and runc accepts it).
        let ambient = self.ambient & self.permitted & self.inheritable;
        for cap in 0..=last_cap() {
            if ambient & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments only.
                let rc = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

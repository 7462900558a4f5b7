//! The systemd driver (`--systemd-cgroup`): the `slice:prefix:name` path
//! syntax and the check that a systemd is reachable.
//!
//! With systemd, the container's cgroup is a transient scope unit created by
//! systemd over D-Bus (`StartTransientUnit`), and limits are set as unit
//! properties. No systemd runs on the development host, so the D-Bus side is
//! designed (see docs/cgroups.md) but not written: [`unavailable`] names what
//! is missing, and the path expansion is available so the layout is known.

use std::path::Path;

use crate::{Config, Error};

/// Sockets through which systemd can be reached.
const SYSTEMD_PRIVATE: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// Expands `slice:prefix:name` into the cgroup path systemd uses.
pub(crate) fn expand(path: &str, id: &str) -> Result<String, Error> {
    let field = "linux.cgroupsPath";
    let parts: Vec<&str> = if path.is_empty() {
        vec!["", "skiff", id]
    } else {
        path.split(':').collect()
    };
    let [slice, prefix, name] = parts[..] else {
        return Err(Error::invalid(
            field,
            format!("{path:?} is not of the form slice:prefix:name required by the systemd driver"),
        ));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut out = expand_slice(slice).map_err(|m| Error::invalid(field, m))?;
    if name.ends_with(".slice") {
        // A slice as the container's unit: it must be a child of `slice`.
        out = expand_slice(name).map_err(|m| Error::invalid(field, m))?;
        return Ok(out);
    }
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid(
            field,
            format!("unit name {name:?} is not valid"),
        ));
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push('-');
    }
    out.push_str(name);
    out.push_str(".scope");
    Ok(out)
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` -> `/`.
fn expand_slice(slice: &str) -> Result<String, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice (must end in .slice)"));
    };
    if base == "-" {
        return Ok("/".into());
    }
    if base.is_empty()
        || base.contains('/')
        || base.starts_with('-')
        || base.ends_with('-')
        || base.contains("--")
    {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut out = String::new();
    let mut prefix = String::new();
    for comp in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(comp);
        out.push('/');
        out.push_str(&prefix);
        out.push_str(".slice");
    }
    Ok(out)
}

/// The error returned when the systemd driver is requested: names what is
/// missing on this host (or that the D-Bus transport is not written yet).
pub(crate) fn unavailable(cfg: &Config) -> Error {
    if let Err(e) = expand(cfg.cgroups_path.unwrap_or(""), cfg.id) {
        return e;
    }
    let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let init = init.trim();
    if !Path::new(SYSTEMD_PRIVATE).exists() && !Path::new(SYSTEM_BUS).exists() {
        return Error::Systemd(format!(
            "no systemd is reachable over D-Bus: neither {SYSTEMD_PRIVATE} nor {SYSTEM_BUS} exists \
             (PID 1 is {init:?}); run without --systemd-cgroup to use the cgroupfs driver"
        ));
    }
    Error::Systemd(format!(
        "a D-Bus socket exists but skiff's systemd transport (StartTransientUnit over D-Bus) is \
         not implemented yet (PID 1 is {init:?}); run without --systemd-cgroup"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn expands() {
        assert_eq!(
            expand("system.slice:docker:abc", "x").unwrap(),
            "/system.slice/docker-abc.scope"
        );
        assert_eq!(
            expand("a-b.slice:p:n", "x").unwrap(),
            "/a.slice/a-b.slice/p-n.scope"
        );
        assert_eq!(expand("", "id1").unwrap(), "/system.slice/skiff-id1.scope");
        assert_eq!(expand("-.slice:p:n", "x").unwrap(), "/p-n.scope");
        assert!(expand("/abs/path", "x").is_err());
        assert!(expand("bad:p:n", "x").is_err());
    }
}

//! Loading and validating a bundle's config.json.
//!
//! Parsing goes through `oci-spec` (with `serde_path_to_error`, so a type
//! error names the JSON path), then [`validate`] checks what the types cannot:
//! versions, paths, namespace combinations, ids. Every error names the field,
//! e.g. `config.json: linux.namespaces[2].type "foo" is not a namespace type`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{Error, Result};

/// Oldest and newest runtime-spec versions accepted in `ociVersion`.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// Newest runtime-spec version accepted (and implemented).
pub const OCI_VERSION_MAX: &str = "1.3.0";

const NS_TYPES: [&str; 8] = [
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];

fn err(msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("config.json: {msg}"))
}

/// Largest config.json accepted (16 MiB; real ones are a few KiB).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Reads, parses and validates `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    parse(&read_config(bundle)?)
}

/// The bytes of `<bundle>/config.json`: a regular file of at most
/// [`MAX_CONFIG_SIZE`] bytes. A FIFO, a device (a symlink to `/dev/zero`)
/// or a huge file is refused at once instead of hanging or filling memory.
pub fn read_config(bundle: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("config.json");
    let fail = |what: String| Error::Config(format!("{}: {what}", path.display()));
    // O_NONBLOCK: opening a FIFO does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| fail(format!("cannot read config.json: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read config.json: {e}")))?;
    if !meta.is_file() {
        return Err(fail("config.json is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_SIZE {
        return Err(fail(format!(
            "config.json is {} bytes, more than the limit of {MAX_CONFIG_SIZE} (16 MiB)",
            meta.len()
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut data)
        .map_err(|e| fail(format!("cannot read config.json: {e}")))?;
    if data.len() as u64 > MAX_CONFIG_SIZE {
        return Err(fail(format!(
            "config.json grew past the limit of {MAX_CONFIG_SIZE} bytes (16 MiB) while read"
        )));
    }
    Ok(data)
}

/// Parses and validates config.json bytes.
pub fn parse(data: &[u8]) -> Result<Spec> {
    // The common case, a valid config, takes one plain typed parse (this is
    // on every container's start path); only a failing config is parsed
    // again, as JSON and with field paths, to say exactly what is wrong.
    let spec = match serde_json::from_slice::<Spec>(data) {
        Ok(spec) => spec,
        Err(plain) => return Err(explain(data, plain)),
    };
    validate(&spec)?;
    refuse_memory_policy(data)?;
    Ok(spec)
}

/// The error for config.json bytes that did not parse as a `Spec`.
fn explain(data: &[u8], plain: serde_json::Error) -> Error {
    let value: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => return err(format_args!("invalid JSON: {e}")),
    };
    if let Err(e) = precheck(&value) {
        return e;
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    match serde_path_to_error::deserialize::<_, Spec>(de) {
        Err(e) => {
            let path = e.path().to_string();
            err(format_args!("{path}: {}", e.into_inner()))
        }
        Ok(_) => err(plain),
    }
}

/// Checks made on raw JSON, where a typed parse would give a vague message.
fn precheck(v: &serde_json::Value) -> Result<()> {
    if !v.is_object() {
        return Err(err("top level is not a JSON object"));
    }
    if let Some(nss) = v.pointer("/linux/namespaces").and_then(|n| n.as_array()) {
        for (i, ns) in nss.iter().enumerate() {
            match ns.get("type").and_then(|t| t.as_str()) {
                Some(t) if NS_TYPES.contains(&t) => {}
                Some(t) => {
                    return Err(err(format_args!(
                        "linux.namespaces[{i}].type \"{t}\" is not a namespace type"
                    )))
                }
                None => return Err(err(format_args!("linux.namespaces[{i}].type is missing"))),
            }
        }
    }
    Ok(())
}

/// `MAJOR.MINOR.PATCH[-pre][+build]` as numbers.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let t = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(t)
}

/// Validates a parsed spec (the bundle is not consulted; see [`validate_bundle`]).
pub fn validate(spec: &Spec) -> Result<()> {
    let version = spec.version();
    match parse_version(version) {
        Some((1, minor, _)) if minor <= 3 => {}
        _ => {
            return Err(err(format_args!(
                "ociVersion \"{version}\" is not supported (supported: {OCI_VERSION_MIN} to {OCI_VERSION_MAX})"
            )))
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| err("process is missing"))?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(err("process.args must name a program (it is empty)")),
    }
    if !process.cwd().is_absolute() {
        return Err(err(format_args!(
            "process.cwd \"{}\" is not an absolute path",
            process.cwd().display()
        )));
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') {
                return Err(err(format_args!(
                    "process.env[{i}] \"{e}\" is not KEY=VALUE"
                )));
            }
        }
    }
    if let Some(rl) = process.rlimits() {
        let mut seen = Vec::new();
        for (i, r) in rl.iter().enumerate() {
            if seen.contains(&r.typ()) {
                return Err(err(format_args!(
                    "process.rlimits[{i}]: duplicate type {:?}",
                    r.typ()
                )));
            }
            if r.soft() > r.hard() {
                return Err(err(format_args!(
                    "process.rlimits[{i}]: soft limit {} is above hard limit {}",
                    r.soft(),
                    r.hard()
                )));
            }
            seen.push(r.typ());
        }
    }
    if let Some(p) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&p) {
            return Err(err(format_args!(
                "process.oomScoreAdj {p} is outside -1000..1000"
            )));
        }
    }
    let root = spec.root().as_ref().ok_or_else(|| err("root is missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(err("root.path is empty"));
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(err(format_args!(
                    "mounts[{i}].destination \"{}\" is not an absolute path",
                    m.destination().display()
                )));
            }
            if let Some(opts) = m.options() {
                for o in opts {
                    crate::linux::mount_opts::check_option(o)
                        .map_err(|e| err(format_args!("mounts[{i}].options: {e}")))?;
                }
            }
        }
    }
    if let Some(hooks) = spec.hooks() {
        let kinds = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in kinds {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(err(format_args!(
                        "hooks.{kind}[{i}].path \"{}\" is not an absolute path",
                        h.path().display()
                    )));
                }
                if let Some(t) = h.timeout() {
                    if t <= 0 {
                        return Err(err(format_args!(
                            "hooks.{kind}[{i}].timeout must be positive"
                        )));
                    }
                }
            }
        }
    }
    let linux = match spec.linux() {
        Some(l) => l,
        None => return Ok(()),
    };
    let mut new_ns = HashSet::new();
    let mut all_ns = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !all_ns.insert(ns.typ()) {
            return Err(err(format_args!(
                "linux.namespaces[{i}]: duplicate namespace type \"{}\"",
                ns_name(ns.typ())
            )));
        }
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => {
                if !p.is_absolute() {
                    return Err(err(format_args!(
                        "linux.namespaces[{i}].path \"{}\" is not an absolute path",
                        p.display()
                    )));
                }
            }
            _ => {
                new_ns.insert(ns.typ());
            }
        }
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_ns.contains(&LinuxNamespaceType::User) && !has_maps {
        return Err(err(
            "linux.uidMappings/gidMappings are required with a new user namespace",
        ));
    }
    if has_maps && !all_ns.contains(&LinuxNamespaceType::User) {
        return Err(err(
            "linux.uidMappings/gidMappings are set but there is no user namespace",
        ));
    }
    if linux.time_offsets().is_some() && !new_ns.contains(&LinuxNamespaceType::Time) {
        return Err(err("linux.timeOffsets needs a new time namespace"));
    }
    if let Some(offs) = linux.time_offsets() {
        for k in offs.keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(err(format_args!(
                    "linux.timeOffsets: \"{k}\" is not a clock (monotonic or boottime)"
                )));
            }
        }
    }
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !all_ns.contains(&LinuxNamespaceType::Uts)
    {
        // As runc: a private uts namespace (new, or joined by path) is needed.
        return Err(err("hostname is set but there is no uts namespace"));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty())
        && !all_ns.contains(&LinuxNamespaceType::Uts)
    {
        return Err(err("domainname is set but there is no uts namespace"));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            let needs = if key.starts_with("net.") {
                Some(LinuxNamespaceType::Network)
            } else if key.starts_with("fs.mqueue.")
                || key.starts_with("kernel.msg")
                || key.starts_with("kernel.sem")
                || key.starts_with("kernel.shm")
            {
                Some(LinuxNamespaceType::Ipc)
            } else if key == "kernel.hostname" || key == "kernel.domainname" {
                Some(LinuxNamespaceType::Uts)
            } else {
                None
            };
            match needs {
                Some(ns) if all_ns.contains(&ns) => {}
                Some(ns) => {
                    return Err(err(format_args!(
                        "linux.sysctl \"{key}\" needs a {} namespace",
                        ns_name(ns)
                    )))
                }
                None => {
                    return Err(err(format_args!(
                        "linux.sysctl \"{key}\" is not namespaced and cannot be set for a container"
                    )))
                }
            }
            if key.contains("..") || key.contains('/') {
                return Err(err(format_args!(
                    "linux.sysctl \"{key}\" is not a valid key"
                )));
            }
        }
    }
    if let Some(devs) = linux.devices() {
        for (i, d) in devs.iter().enumerate() {
            if !d.path().is_absolute() {
                return Err(err(format_args!(
                    "linux.devices[{i}].path \"{}\" is not an absolute path",
                    d.path().display()
                )));
            }
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if !prop.is_empty()
            && ![
                "shared",
                "slave",
                "private",
                "unbindable",
                "rshared",
                "rslave",
                "rprivate",
                "runbindable",
            ]
            .contains(&prop.as_str())
        {
            return Err(err(format_args!(
                "linux.rootfsPropagation \"{prop}\" is not a propagation mode"
            )));
        }
    }
    if let Some(p) = linux.cgroups_path() {
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(err(format_args!(
                "linux.cgroupsPath \"{}\" must not contain \"..\"",
                p.display()
            )));
        }
    }
    if let Some(res) = linux.resources() {
        skiff_cgroups::validate(res).map_err(err)?;
    }
    refuse_unsupported(linux)
}

/// Fields this runtime does not implement are refused, never ignored (and
/// `skiff features` does not advertise them).
fn refuse_unsupported(linux: &oci_spec::runtime::Linux) -> Result<()> {
    if linux.intel_rdt().is_some() {
        return Err(err(
            "linux.intelRdt: Intel RDT (resctrl) is not supported by this runtime",
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(err(
            "linux.netDevices: moving network devices into the container is not supported by this runtime",
        ));
    }
    Ok(())
}

/// `linux.memoryPolicy` (runtime-spec 1.3) is not in the typed `Spec`: a
/// byte search keeps the common path free of a second parse, and a config
/// that names it is refused rather than run without the policy.
fn refuse_memory_policy(data: &[u8]) -> Result<()> {
    const KEY: &[u8] = b"\"memoryPolicy\"";
    if !data.windows(KEY.len()).any(|w| w == KEY) {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(data).map_err(err)?;
    if v.pointer("/linux/memoryPolicy")
        .is_some_and(|p| !p.is_null())
    {
        return Err(err(
            "linux.memoryPolicy: NUMA memory policies are not supported by this runtime",
        ));
    }
    Ok(())
}

/// Resolves `root.path` against the bundle and checks that it is a directory.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| err("root is missing"))?;
    let p = bundle.join(root.path());
    let canon = std::fs::canonicalize(&p)
        .map_err(|e| err(format_args!("root.path \"{}\": {e}", root.path().display())))?;
    if !canon.is_dir() {
        return Err(err(format_args!(
            "root.path \"{}\" is not a directory",
            root.path().display()
        )));
    }
    Ok(canon)
}

/// The spec's name of a namespace type.
pub fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// Validates a container id (runc's rule: letters, digits and `_+-.`, no `..`).
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "invalid container id \"{id}\": use letters, digits and _+-."
        )))
    }
}

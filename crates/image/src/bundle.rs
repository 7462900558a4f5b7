//! Image to runtime bundle (image-spec `conversion.md`): a runc-`spec`-like
//! default `config.json` filled from the image config (Entrypoint, Cmd, Env,
//! WorkingDir, User resolved via the image's `/etc/passwd` and `/etc/group`
//! read inside the rootfs with `RESOLVE_IN_ROOT`, ExposedPorts, Volumes,
//! Labels and StopSignal as annotations) and merged with the user's
//! overrides. Also mounts the rootfs: the layer snapshots stacked with
//! overlayfs, or a copy (layers applied in order) where overlayfs fails.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::manifest::{Compression, ImageConfig, Manifest};
use crate::store::Store;
use crate::unpack::{self, UnpackOptions, WhiteoutMode};

/// Errors building a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// I/O on a bundle path.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad user input or image content.
    #[error("{0}")]
    Invalid(String),
    /// Unpacking (copy mode) failed.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    /// Store error.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A bind mount requested with `-v SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Host path (absolute).
    pub source: PathBuf,
    /// Container path.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
}

impl Volume {
    /// Parses `SRC:DST[:ro|rw]`; a relative SRC is taken from the current directory.
    pub fn parse(s: &str) -> Result<Volume, BundleError> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, opt) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, o] => (*s, *d, *o),
            _ => {
                return Err(BundleError::Invalid(format!(
                    "-v {s:?}: expected SRC:DST[:ro]"
                )))
            }
        };
        if !dst.starts_with('/') {
            return Err(BundleError::Invalid(format!(
                "-v {s:?}: destination must be absolute"
            )));
        }
        let readonly = match opt {
            "" | "rw" => false,
            "ro" => true,
            o => {
                return Err(BundleError::Invalid(format!(
                    "-v {s:?}: unknown option {o:?}"
                )))
            }
        };
        let source = std::path::absolute(src).map_err(|e| BundleError::Io {
            path: src.into(),
            source: e,
        })?;
        Ok(Volume {
            source,
            destination: dst.into(),
            readonly,
        })
    }
}

/// Parses a memory size: bytes, or with a `k`, `m`, `g` suffix (binary units).
pub fn parse_memory(s: &str) -> Result<i64, BundleError> {
    let n = skiff_sys::size::parse_size(s).ok_or_else(|| {
        BundleError::Invalid(format!("--memory {s:?}: expected a size like 512m"))
    })?;
    if n <= 0 {
        return Err(BundleError::Invalid(format!(
            "--memory {s:?}: must be positive"
        )));
    }
    Ok(n)
}

/// The user's changes to the image defaults.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces Cmd (Entrypoint is kept) when not empty.
    pub cmd: Vec<String>,
    /// Replaces Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `K=V` (or `K` to take the value from our environment).
    pub env: Vec<String>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Allocate a terminal.
    pub tty: bool,
    /// User override (same syntax as the image's User).
    pub user: Option<String>,
    /// Working directory override.
    pub workdir: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Read-only rootfs.
    pub readonly: bool,
    /// The network namespace.
    pub network: NetworkNs,
    /// Seccomp, capabilities, privileged, no-new-privileges.
    pub security: crate::security::Security,
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkNs {
    /// A new, empty one (loopback only, down).
    #[default]
    New,
    /// The host's (no network namespace in the config).
    Host,
    /// Join this pinned namespace (set up beforehand, e.g. by CNI).
    Path(PathBuf),
}

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// Home directory (from passwd) if known.
    pub home: Option<String>,
}

/// Reads a file of the rootfs without leaving it (at most 4 MiB).
pub fn read_in_root(rootfs: &Path, path: &str) -> Option<String> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        root.as_fd(),
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// Resolves an image User string against the rootfs's passwd/group files.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, BundleError> {
    let passwd = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(rootfs, "/etc/group").unwrap_or_default();
    resolve_user_in(&passwd, &group, user)
}

/// [`resolve_user`] on file contents.
pub fn resolve_user_in(passwd: &str, group: &str, user: &str) -> Result<ResolvedUser, BundleError> {
    let user = user.trim();
    if user.is_empty() {
        return resolve_user_in(passwd, group, "0");
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 7)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    let entry = if let Ok(n) = u.parse::<u32>() {
        pw.iter().find(|f| f[2].parse::<u32>().ok() == Some(n))
    } else {
        Some(pw.iter().find(|f| f[0] == u).ok_or_else(|| {
            BundleError::Invalid(format!("user {u:?} not found in the image's /etc/passwd"))
        })?)
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| BundleError::Invalid(format!("bad uid for {u:?} in /etc/passwd")))?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    BundleError::Invalid(format!("group {g:?} not found in the image's /etc/group"))
                })?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0]);
    let mut additional_gids = Vec::new();
    if g.is_none() {
        if let Some(name) = name {
            for f in &gr {
                if f.len() >= 4 && f[3].split(',').any(|m| m.trim() == name) {
                    if let Ok(n) = f[2].parse::<u32>() {
                        if n != gid && !additional_gids.contains(&n) {
                            additional_gids.push(n);
                        }
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|f| f[5].to_string()),
    })
}

/// Default PATH when the image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn caps() -> Value {
    // Docker's default capability set.
    json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ])
}

/// The default config (runc `spec` plus a container-friendly capability set,
/// fresh pid/net/ipc/uts/mount/cgroup namespaces: the network namespace has
/// loopback only).
pub fn default_spec() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps(), "effective": caps(), "permitted": caps()},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "skiff",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(kv.to_string());
}

/// Generates the runtime config for `cfg` with `ov` applied; `rootfs` is the
/// mounted root (read for /etc/passwd and /etc/group).
pub fn generate_config(
    cfg: &ImageConfig,
    rootfs: &Path,
    ov: &Overrides,
) -> Result<Value, BundleError> {
    let ic = cfg.config.clone().unwrap_or_default();
    let mut spec = default_spec();
    // Args.
    let entrypoint = ov
        .entrypoint
        .clone()
        .or(ic.entrypoint.clone())
        .unwrap_or_default();
    let cmd = if !ov.cmd.is_empty() {
        ov.cmd.clone()
    } else if ov.entrypoint.is_some() {
        vec![]
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(BundleError::Invalid(
            "the image has no Entrypoint or Cmd: give a command after --".into(),
        ));
    }
    // Env.
    let mut env: Vec<String> = Vec::new();
    for e in ic.env.clone().unwrap_or_default() {
        set_env(&mut env, &e);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    for e in &ov.env {
        if e.contains('=') {
            set_env(&mut env, e);
        } else if let Ok(v) = std::env::var(e) {
            set_env(&mut env, &format!("{e}={v}"));
        }
    }
    // User.
    let user_s = ov.user.clone().or(ic.user.clone()).unwrap_or_default();
    let user = resolve_user(rootfs, &user_s)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    if ov.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = ov
        .workdir
        .clone()
        .or(ic.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(BundleError::Invalid(format!(
            "working directory {cwd:?} must be absolute"
        )));
    }
    let p = &mut spec["process"];
    p["args"] = json!(args);
    p["env"] = json!(env);
    p["cwd"] = json!(cwd);
    p["terminal"] = json!(ov.tty);
    p["user"] = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        p["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if let Some(h) = &ov.hostname {
        let h: String = h
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .take(63)
            .collect();
        spec["hostname"] = json!(h);
    }
    spec["root"]["readonly"] = json!(ov.readonly);
    // Annotations (conversion.md).
    let mut ann = serde_json::Map::new();
    for (k, v) in ic.labels.clone().unwrap_or_default() {
        ann.insert(k, json!(v));
    }
    if let Some(p) = &ic.exposed_ports {
        ann.insert(
            "org.opencontainers.image.exposedPorts".into(),
            json!(p.keys().cloned().collect::<Vec<_>>().join(",")),
        );
    }
    if let Some(v) = &ic.volumes {
        ann.insert(
            "org.opencontainers.image.volumes".into(),
            json!(v.keys().cloned().collect::<Vec<_>>().join(",")),
        );
    }
    if let Some(s) = &ic.stop_signal {
        ann.insert("org.opencontainers.image.stopSignal".into(), json!(s));
    }
    ann.insert("org.opencontainers.image.os".into(), json!(cfg.os));
    ann.insert(
        "org.opencontainers.image.architecture".into(),
        json!(cfg.architecture),
    );
    if let Some(v) = &cfg.variant {
        ann.insert("org.opencontainers.image.variant".into(), json!(v));
    }
    if let Some(a) = &cfg.author {
        ann.insert("org.opencontainers.image.author".into(), json!(a));
    }
    if let Some(c) = &cfg.created {
        ann.insert("org.opencontainers.image.created".into(), json!(c));
    }
    spec["annotations"] = Value::Object(ann);
    // Mounts.
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    for v in &ov.volumes {
        mounts.retain(|m| m["destination"] != json!(v.destination));
        let mut opts = vec!["rbind", "rprivate"];
        if v.readonly {
            opts.push("ro");
        }
        mounts.push(json!({"destination": v.destination, "type": "bind", "source": v.source, "options": opts}));
    }
    if let Some(m) = ov.memory {
        spec["linux"]["resources"]["memory"] = json!({"limit": m});
    }
    set_network(&mut spec, &ov.network);
    crate::security::apply(&mut spec, &ov.security)?;
    // Validate against the runtime-spec types.
    serde_json::from_value::<oci_spec::runtime::Spec>(spec.clone()).map_err(|e| {
        BundleError::Invalid(format!(
            "generated config.json does not parse as a runtime spec: {e}"
        ))
    })?;
    Ok(spec)
}

fn set_network(spec: &mut Value, net: &NetworkNs) {
    let Some(ns) = spec["linux"]["namespaces"].as_array_mut() else {
        return;
    };
    match net {
        NetworkNs::New => {}
        NetworkNs::Host => ns.retain(|n| n["type"] != "network"),
        NetworkNs::Path(p) => {
            for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                n["path"] = json!(p);
            }
        }
    }
}

/// How a container's rootfs was prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    /// Snapshots stacked with overlayfs (upper/work in the bundle).
    Overlay,
    /// Layers applied into a private copy.
    Copy,
}

/// Prepares `<bundle>/rootfs` for an image whose layer snapshots are
/// `chains` (base first): overlayfs when possible (set `SKIFF_SNAPSHOTTER=copy`
/// to force the copy), else the layers applied in order from the store.
pub fn prepare_rootfs(
    store: &Store,
    m: &Manifest,
    chains: &[Digest],
    bundle: &Path,
) -> Result<RootfsMode, BundleError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| BundleError::Io { path: p, source: e }
    };
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(io(&rootfs))?;
    let force_copy = std::env::var("SKIFF_SNAPSHOTTER").is_ok_and(|v| v == "copy");
    if !force_copy && !chains.is_empty() {
        let upper = bundle.join("upper");
        let work = bundle.join("work");
        std::fs::create_dir_all(&upper).map_err(io(&upper))?;
        std::fs::create_dir_all(&work).map_err(io(&work))?;
        let lower: Vec<String> = chains
            .iter()
            .rev()
            .map(|c| store.snapshot_path(c).display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        if data.len() < 4000 {
            let cdata = std::ffi::CString::new(data.clone())
                .map_err(|_| BundleError::Invalid("NUL in snapshot path".into()))?;
            match rustix::mount::mount(
                "overlay",
                &rootfs,
                "overlay",
                rustix::mount::MountFlags::empty(),
                Some(cdata.as_c_str()),
            ) {
                Ok(()) => return Ok(RootfsMode::Overlay),
                Err(_) => {
                    let _ = std::fs::remove_dir(&upper);
                    let _ = std::fs::remove_dir_all(&work);
                }
            }
        }
    }
    for layer in &m.layers {
        let c = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
            BundleError::Invalid(format!(
                "layer {}: unsupported media type {}",
                layer.digest, layer.media_type
            ))
        })?;
        let f = store.open_blob(&layer.digest)?;
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Apply,
            max_bytes: unpack::size_limit(layer.size, 64 << 30),
            ..Default::default()
        };
        unpack::unpack(f, c, &rootfs, &opts)?;
    }
    Ok(RootfsMode::Copy)
}

/// Unmounts `<bundle>/rootfs` if it is a mount (lazy detach).
pub fn release_rootfs(bundle: &Path) {
    let _ = rustix::mount::unmount(bundle.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
}

/// Writes `<bundle>/config.json`.
pub fn write_config(bundle: &Path, spec: &Value) -> Result<(), BundleError> {
    let p = bundle.join("config.json");
    // 0600: the config holds the container's environment (secrets).
    skiff_sys::fs::write_private(&p, &serde_json::to_vec_pretty(spec).expect("spec json"))
        .map_err(|e| BundleError::Io { path: p, source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nstaff:x:50:\n";

    #[test]
    fn users() {
        let u = resolve_user_in(PASSWD, GROUP, "app").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_deref()),
            (1000, 1000, vec![10], Some("/home/app"))
        );
        let u = resolve_user_in(PASSWD, GROUP, "app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = resolve_user_in(PASSWD, GROUP, "4242:7").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 7));
        let u = resolve_user_in(PASSWD, GROUP, "1000").unwrap();
        assert_eq!(u.gid, 1000);
        assert!(resolve_user_in(PASSWD, GROUP, "nobody").is_err());
        assert!(resolve_user_in(PASSWD, GROUP, "app:nogroup").is_err());
    }

    #[test]
    fn sizes_and_volumes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
        let v = Volume::parse("/src:/dst:ro").unwrap();
        assert!(v.readonly);
        assert!(Volume::parse("/src:rel").is_err());
    }

    #[test]
    fn config_conversion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        let cfg: ImageConfig = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "config": {"User": "app", "Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/bin/ep"], "Cmd": ["x"],
                       "WorkingDir": "/w", "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"l": "v"},
                       "Volumes": {"/data": {}}, "StopSignal": "SIGINT"},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let ov = Overrides {
            cmd: vec!["y".into()],
            env: vec!["A=2".into()],
            memory: Some(1 << 20),
            tty: true,
            volumes: vec![Volume::parse("/tmp:/mnt:ro").unwrap()],
            hostname: Some("c1".into()),
            ..Default::default()
        };
        let s = generate_config(&cfg, dir.path(), &ov).unwrap();
        assert_eq!(s["process"]["args"], json!(["/bin/ep", "y"]));
        assert_eq!(
            s["process"]["env"],
            json!(["PATH=/bin", "A=2", "HOME=/home/app", "TERM=xterm"])
        );
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10]})
        );
        assert_eq!(s["process"]["cwd"], "/w");
        assert_eq!(s["process"]["terminal"], true);
        assert_eq!(s["hostname"], "c1");
        assert_eq!(
            s["annotations"]["org.opencontainers.image.exposedPorts"],
            "53/udp,80/tcp"
        );
        assert_eq!(
            s["annotations"]["org.opencontainers.image.stopSignal"],
            "SIGINT"
        );
        assert_eq!(s["annotations"]["l"], "v");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 1 << 20);
        let netns = |s: &Value| {
            s["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
        };
        assert_eq!(netns(&s), Some(json!({"type": "network"})));
        let host = Overrides {
            network: NetworkNs::Host,
            ..ov.clone()
        };
        assert_eq!(
            netns(&generate_config(&cfg, dir.path(), &host).unwrap()),
            None
        );
        let pinned = Overrides {
            network: NetworkNs::Path("/run/n/x".into()),
            ..ov.clone()
        };
        assert_eq!(
            netns(&generate_config(&cfg, dir.path(), &pinned).unwrap()),
            Some(json!({"type": "network", "path": "/run/n/x"}))
        );
        let m = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/mnt")
            .unwrap();
        assert_eq!(m["options"], json!(["rbind", "rprivate", "ro"]));
        // A symlinked /etc/passwd pointing outside resolves inside the rootfs.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc/shadow", dir.path().join("etc/passwd"))
            .unwrap();
        assert!(read_in_root(dir.path(), "/etc/passwd").is_none());
    }
}

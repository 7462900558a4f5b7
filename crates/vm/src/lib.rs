//! skiff-vm: the host side of VM isolation.
//!
//! A VM container is an OCI container whose process runs in its own QEMU
//! microvm. [`create`] prepares a bootable kernel ([`kernel`]) and an
//! initramfs holding the static `skiff-agent` as `/init` ([`initramfs`]),
//! picks KVM or TCG ([`qemu`]), then forks a *shim*: a host process
//! (`setsid`) that launches QEMU in its own process group (killed with the
//! shim), talks to the agent over a [`channel::Channel`] with the versioned
//! protocol in [`proto`], relays stdio, forwards signals and exits with the
//! container's exit status. The shim's pid is what the runtime records as
//! the container's pid, so `state`, `kill` and `--pid-file` need no VM
//! knowledge. [`start`], [`exec`], [`stats`], [`pause`], [`resume`] talk to the shim over a unix
//! socket in the container's state dir; [`delete`] kills it all.
//!
//! Files in the state dir: `agent.sock` (QEMU chardev), `shim.sock`
//! (control), `qmp.sock` (QEMU monitor of a VM restored from a
//! [`template`]), `console.log` (guest serial console), `vmm.log` (QEMU's
//! own messages), `vmm.pid`, `shim.pid`, `timings.json` (boot breakdown),
//! and with a virtio-fs rootfs `virtiofs.sock` and `virtiofsd.pid`.
//!
//! A VM is normally restored from a [`template`] (a guest saved once per
//! machine right before the agent's hello) instead of booting its kernel;
//! see that module.
//!
//! This crate does not depend on `skiff-runtime`: the CLI decides which of
//! the two to call ([`wants_vm`]).

pub mod channel;
pub mod initramfs;
pub mod kernel;
pub use skiff_vm_proto as proto;
mod initramfs_memo;
pub mod qemu;
mod qmp;
mod seccomp;
mod shares;
mod shim;
pub mod template;

#[cfg(test)]
use seccomp::precompile_seccomp_in;
pub use seccomp::{precompile_seccomp, valid_seccomp_entry_name, SECCOMP_BPF_KEY};
pub(crate) use shares::unshare_files;
pub use shares::{share_binds, FILE_SHARE_DIR};

use initramfs_memo::agent_initramfs;

use oci_spec::runtime::{Process, Spec};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Annotation choosing the isolation of one container (`vm` or `namespace`).
pub const ISOLATION_ANNOTATION: &str = "run.skiff.isolation";
/// Annotation overriding guest RAM in MiB.
pub const MEMORY_ANNOTATION: &str = "run.skiff.vm.memory_mib";
/// Annotation overriding the vCPU count.
pub const VCPUS_ANNOTATION: &str = "run.skiff.vm.vcpus";
/// Annotation overriding the boot deadline in seconds.
pub const BOOT_TIMEOUT_ANNOTATION: &str = "run.skiff.vm.boot_timeout";
/// Annotation choosing how the rootfs reaches the guest: `9p` (default) or
/// `virtiofs` (QEMU's virtiofsd; no VM templates: vhost-user-fs devices
/// cannot be migrated). `$SKIFF_VM_ROOTFS` sets the default.
pub const ROOTFS_ANNOTATION: &str = "run.skiff.vm.rootfs";
/// Annotation turning VM templates off (`false`) for one container: it then
/// boots its kernel instead of being restored from a template
/// (`$SKIFF_VM_TEMPLATE=0` does the same for every container).
pub const TEMPLATE_ANNOTATION: &str = "run.skiff.vm.template";

/// Errors of VM isolation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `context` says on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Something needed is missing (QEMU, kernel, agent, module, socket).
    #[error("not found: {0}")]
    NotFound(String),
    /// The kernel image could not be used.
    #[error("kernel: {0}")]
    Kernel(String),
    /// The spec asks for something invalid.
    #[error("spec field {field}: {message}")]
    Spec {
        /// Field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// The guest did not come up; the console log is attached.
    #[error("VM boot failed: {reason}\n--- guest console ({console_path}) ---\n{console}")]
    Boot {
        /// Why it failed.
        reason: String,
        /// Path of the console log.
        console_path: PathBuf,
        /// Tail of the console log.
        console: String,
    },
    /// The agent refused or failed a request.
    #[error("agent: {0}")]
    Agent(String),
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(String),
}

pub(crate) fn io_err(context: &str, source: io::Error) -> Error {
    Error::Io {
        context: context.to_owned(),
        source,
    }
}

/// Options of [`create`].
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions<'a> {
    /// Container id.
    pub id: &'a str,
    /// Bundle directory (the rootfs path in the spec is relative to it).
    pub bundle: &'a Path,
    /// Parsed config.json.
    pub spec: &'a Spec,
    /// The container's private dir under the runtime root, already created
    /// and locked by the runtime; sockets, logs and pid files go here.
    pub state_dir: &'a Path,
    /// Where to send the terminal master when `process.terminal` is set.
    pub console_socket: Option<&'a Path>,
    /// Verbose output (accelerator, paths, boot breakdown) on stderr.
    pub debug: bool,
}

/// True when the container asks for VM isolation: annotation
/// `run.skiff.isolation=vm`, or the spec has a `vm` object, or the global
/// default is `vm` (an explicit `run.skiff.isolation=namespace` wins over
/// the global default).
pub fn wants_vm(spec: &Spec, global_isolation: Option<&str>) -> bool {
    if let Some(v) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ISOLATION_ANNOTATION))
    {
        return v == "vm";
    }
    spec.vm().is_some() || global_isolation == Some("vm")
}

/// Cache dir for extracted kernels and initramfs images:
/// `$SKIFF_VM_CACHE`, else `/var/cache/skiff/vm` (root), else `$XDG_CACHE_HOME|~/.cache/skiff/vm`.
pub fn cache_dir() -> Result<PathBuf, Error> {
    let dir = if let Some(d) = std::env::var_os("SKIFF_VM_CACHE") {
        PathBuf::from(d)
    } else if rustix_is_root() {
        PathBuf::from("/var/cache/skiff/vm")
    } else if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(x).join("skiff/vm")
    } else {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/skiff/vm")
    };
    fs::create_dir_all(&dir)
        .map_err(|e| io_err(&format!("create cache dir {}", dir.display()), e))?;
    Ok(dir)
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Writes `data` to `path` through a temporary file and a rename, so
/// concurrent builders never see a partial file.
/// Cache files (kernels, initramfs images) are 0644: QEMU and other users'
/// VMs read them.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    skiff_sys::fs::write_atomic(path, data, 0o644, skiff_sys::fs::Durability::Process)
        .map_err(|e| io_err("cache", e))
}

/// Writes a file of a container's state directory (0600: only its owner
/// reads it; the directory also holds the console log and the VM's config).
pub(crate) fn write_state(path: &Path, data: impl AsRef<[u8]>) -> io::Result<()> {
    skiff_sys::fs::write_private(path, data.as_ref())
}

/// Creates (or truncates) a log file of a container's state directory, 0600.
pub(crate) fn create_state_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or(None)
}

fn annotation<T: std::str::FromStr>(spec: &Spec, key: &str) -> Result<Option<T>, Error> {
    match spec.annotations().as_ref().and_then(|a| a.get(key)) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Error::Spec {
            field: format!("annotations.{key}"),
            message: format!("cannot parse {v:?}"),
        }),
    }
}

/// Guest RAM in MiB: the annotation, else the memory limit plus room for the
/// guest kernel and agent, else 256 MiB.
pub fn guest_memory_mib(spec: &Spec) -> Result<u64, Error> {
    if let Some(m) = annotation::<u64>(spec, MEMORY_ANNOTATION)? {
        return Ok(m.max(64));
    }
    let limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0);
    Ok(match limit {
        Some(l) => ((l as u64).div_ceil(1 << 20) + 160).max(256),
        None => 256,
    })
}

/// Kernel parameters skiff adds in front of the spec's `vm.kernel.parameters`
/// (which come last, so they can override them).
///
/// `tsc=reliable` (as Kata sets it): the guest's clocksource watchdog
/// compares the TSC with the tick, which under emulation on a loaded host
/// lags behind; it then marks the TSC unstable and the guest falls back to
/// `refined-jiffies` for good: 10 ms clock resolution, every sleep and
/// timer rounded up to a tick. A VM template built at such a moment made
/// every container restored from it slow (seen here: a template booted at
/// load ~5 ran on `refined-jiffies`, create 1.8-2.4 s instead of ~0.5 s).
/// The TSC that QEMU gives a guest is monotonic, also across a restore.
pub const GUEST_KERNEL_PARAMS: &[&str] = &["tsc=reliable"];

fn guest_kernel_params(spec_params: Vec<String>) -> Vec<String> {
    GUEST_KERNEL_PARAMS
        .iter()
        .map(|s| s.to_string())
        .chain(spec_params)
        .collect()
}

/// vCPUs: the annotation, else ceil(cpu quota / period), else 1; at most the host's CPUs.
pub fn guest_vcpus(spec: &Spec) -> Result<u32, Error> {
    let host = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    if let Some(v) = annotation::<u32>(spec, VCPUS_ANNOTATION)? {
        return Ok(v.clamp(1, host));
    }
    let cpu = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.cpu().as_ref());
    let n = match cpu.and_then(|c| Some((c.quota()?, c.period()?))) {
        Some((q, p)) if q > 0 && p > 0 => (q as u64).div_ceil(p) as u32,
        _ => 1,
    };
    Ok(n.clamp(1, host))
}

/// Socket path for `name` in `state_dir`; falls back to a short path in
/// /tmp (derived from the state dir) when the unix socket path limit would be hit.
pub(crate) fn sock_path(state_dir: &Path, name: &str) -> PathBuf {
    let p = state_dir.join(name);
    if p.as_os_str().len() < 100 {
        return p;
    }
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(state_dir.as_os_str().as_encoded_bytes())[..8]);
    PathBuf::from(format!("/tmp/skiff-vm-{h}-{name}"))
}

/// Boots the VM and creates the container inside it (its process blocked
/// until [`start`]). Returns the pid of the host shim that stands for the
/// container: it lives as long as the container, forwards the signals it
/// receives, relays the caller's stdio and exits with the container's status.
pub fn create(opts: &CreateOptions) -> Result<i32, Error> {
    let spec = opts.spec;
    let vm = spec.vm().as_ref();
    let qemu_name = vm
        .and_then(|v| v.hypervisor().as_ref())
        .map(|h| h.path().to_string_lossy().into_owned())
        .or_else(|| std::env::var("SKIFF_QEMU").ok())
        .unwrap_or_else(|| "qemu-system-x86_64".into());
    let qemu = find_in_path(&qemu_name)
        .ok_or_else(|| Error::NotFound(format!("hypervisor {qemu_name}")))?;
    let kernel_path = match vm
        .map(|v| v.kernel().path())
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(p) => p.clone(),
        None => kernel::default_kernel()?,
    };
    let kernel = kernel::prepare(&kernel_path)?;
    let initrd = match vm.and_then(|v| v.kernel().initrd().as_ref()) {
        Some(i) => PathBuf::from(i),
        None => agent_initramfs(&initramfs::find_agent()?, kernel.modules.as_deref())?,
    };
    let accel = qemu::choose_accel(&qemu, &kernel, &initrd)?;
    let root = spec.root().as_ref().ok_or_else(|| Error::Spec {
        field: "root".into(),
        message: "missing".into(),
    })?;
    let rootfs = resolve_rootfs(root.path(), opts.bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(Error::Spec {
            field: "process.terminal".into(),
            message: "set, but no console socket given".into(),
        });
    }
    let boot_secs = annotation::<u64>(spec, BOOT_TIMEOUT_ANNOTATION)?
        .or_else(|| {
            std::env::var("SKIFF_VM_BOOT_TIMEOUT")
                .ok()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(90);
    let cfg = qemu::VmConfig {
        qemu,
        extra_args: vm
            .and_then(|v| v.hypervisor().as_ref())
            .and_then(|h| h.parameters().clone())
            .unwrap_or_default(),
        kernel: kernel.vmlinux.clone(),
        initrd,
        kernel_params: guest_kernel_params(
            vm.and_then(|v| v.kernel().parameters().clone())
                .unwrap_or_default(),
        ),
        memory_mib: guest_memory_mib(spec)?,
        vcpus: guest_vcpus(spec)?,
        accel,
        rootfs,
        virtiofs: None,
        channel: shim::StateDir::new(opts.state_dir).agent_socket(),
        console_log: shim::StateDir::new(opts.state_dir).console_log(),
        debug: opts.debug,
        cmdline_devices: kernel.cmdline_devices,
        shares: Vec::new(),
        template: false,
    };
    if opts.debug {
        print_config(&cfg, kernel.release.as_deref());
    }
    let mut spec_json = serde_json::to_value(spec).map_err(|e| Error::Spec {
        field: "(config.json)".into(),
        message: e.to_string(),
    })?;
    let shares = share_binds(&mut spec_json, opts.bundle, opts.state_dir)?;
    let mut cfg = cfg;
    cfg.shares = shares;
    let (rootfs_kind, virtiofsd) = rootfs_share(spec, opts.state_dir, &mut cfg)?;
    let template_key = template_key_for(spec, &cfg, &rootfs_kind, opts.debug)?;
    if let Some((file, prog)) = precompile_seccomp(spec) {
        spec_json[SECCOMP_BPF_KEY] = serde_json::json!({"file": file, "data": hex::encode(prog)});
    }
    shim::launch(shim::Plan {
        vm: cfg,
        container_id: opts.id.to_owned(),
        spec: spec_json,
        state_dir: shim::StateDir::new(opts.state_dir),
        boot_timeout: Duration::from_secs(boot_secs),
        request_timeout: Duration::from_secs(60),
        console_socket: opts.console_socket.map(Path::to_path_buf),
        terminal,
        debug: opts.debug,
        template_key,
        virtiofsd,
    })
}

/// The rootfs directory: `root.path`, relative to the bundle unless
/// absolute, canonicalised.
fn resolve_rootfs(path: &Path, bundle: &Path) -> Result<PathBuf, Error> {
    let rootfs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        bundle.join(path)
    };
    rootfs
        .canonicalize()
        .map_err(|e| io_err(&format!("root.path {}", rootfs.display()), e))
}

/// `--debug`: the VM about to start.
fn print_config(cfg: &qemu::VmConfig, release: Option<&str>) {
    eprintln!(
        "skiff-vm: accel={} kernel={} ({}, {}) initramfs={} memory={}M vcpus={} rootfs={}",
        cfg.accel.name(),
        cfg.kernel.display(),
        release.unwrap_or("?"),
        if cfg.cmdline_devices {
            "cmdline virtio devices, acpi=off"
        } else {
            "acpi=on"
        },
        cfg.initrd.display(),
        cfg.memory_mib,
        cfg.vcpus,
        cfg.rootfs.display()
    );
}

/// How the rootfs is shared (annotation `run.skiff.vm.rootfs` or
/// `$SKIFF_VM_ROOTFS`: `9p`, the default, or `virtiofs`); for virtio-fs
/// the virtiofsd binary, with its socket set in `cfg`.
fn rootfs_share(
    spec: &Spec,
    state_dir: &Path,
    cfg: &mut qemu::VmConfig,
) -> Result<(String, Option<PathBuf>), Error> {
    let kind = annotation::<String>(spec, ROOTFS_ANNOTATION)?
        .or_else(|| std::env::var("SKIFF_VM_ROOTFS").ok())
        .unwrap_or_else(|| "9p".into());
    let virtiofsd = match kind.as_str() {
        "9p" => None,
        "virtiofs" => {
            let bin = std::env::var("SKIFF_VIRTIOFSD")
                .ok()
                .map(PathBuf::from)
                .or_else(|| {
                    let d = PathBuf::from("/usr/lib/qemu/virtiofsd");
                    d.exists().then_some(d)
                })
                .or_else(|| find_in_path("virtiofsd"))
                .ok_or_else(|| {
                    Error::NotFound(
                        "virtiofsd (/usr/lib/qemu/virtiofsd, $SKIFF_VIRTIOFSD or PATH) for \
                         run.skiff.vm.rootfs=virtiofs"
                            .into(),
                    )
                })?;
            cfg.virtiofs = Some(shim::StateDir::new(state_dir).virtiofs_socket());
            Some(bin)
        }
        other => {
            return Err(Error::Spec {
                field: format!("annotations.{ROOTFS_ANNOTATION}"),
                message: format!("{other:?}: expected 9p or virtiofs"),
            })
        }
    };
    Ok((kind, virtiofsd))
}

/// The VM template this container may use: none when templates are off
/// (annotation `run.skiff.vm.template=false`, `$SKIFF_VM_TEMPLATE=0`) or
/// the machine cannot be saved and restored.
fn template_key_for(
    spec: &Spec,
    cfg: &qemu::VmConfig,
    rootfs_kind: &str,
    debug: bool,
) -> Result<Option<String>, Error> {
    let templates_on = annotation::<bool>(spec, TEMPLATE_ANNOTATION)?.unwrap_or(true)
        && !matches!(
            std::env::var("SKIFF_VM_TEMPLATE").as_deref(),
            Ok("0" | "off" | "false")
        );
    let template_key = templates_on.then(|| template::key(cfg)).flatten();
    if debug {
        eprintln!(
            "skiff-vm: rootfs share {rootfs_kind}; template key {}",
            template_key
                .as_deref()
                .unwrap_or(if cfg.virtiofs.is_some() {
                    "none (virtio-fs rootfs: vhost-user-fs devices cannot be migrated)"
                } else if templates_on {
                    "none (hypervisor parameters given)"
                } else {
                    "none (templates off)"
                })
        );
    }
    Ok(template_key)
}

/// Lets the container's process run (the user program is exec'd in the guest).
pub fn start(state_dir: &Path) -> Result<(), Error> {
    shim::control(state_dir, proto::Request::Start).map(|_| ())
}

/// Resource usage of the VM container as JSON (`guest` memory, container
/// cgroup `memory`, `pids` of the processes the agent started, `frozen`).
pub fn stats(state_dir: &Path) -> Result<serde_json::Value, Error> {
    shim::control(state_dir, proto::Request::Stats)
}

/// Freezes the container's processes in the guest (its cgroup's
/// `cgroup.freeze`); returns once the guest reports them frozen.
pub fn pause(state_dir: &Path) -> Result<(), Error> {
    shim::control(state_dir, proto::Request::Pause).map(|_| ())
}

/// Thaws a container frozen by [`pause`].
pub fn resume(state_dir: &Path) -> Result<(), Error> {
    shim::control(state_dir, proto::Request::Resume).map(|_| ())
}

/// Runs `process` in the running VM container. Without `detach`, relays the
/// caller's stdio and returns the process's exit status; with `detach`,
/// returns the pid of a host relay process that exits with that status.
pub fn exec(
    state_dir: &Path,
    process: &Process,
    console_socket: Option<&Path>,
    detach: bool,
) -> Result<i32, Error> {
    let value = serde_json::to_value(process).map_err(|e| Error::Spec {
        field: "process".into(),
        message: e.to_string(),
    })?;
    shim::exec(state_dir, value, console_socket, detach)
}

/// Stops the VM (kills the shim and QEMU's process group) and removes the
/// sockets, logs and pid files this crate put in `state_dir`. Idempotent.
pub fn delete(state_dir: &Path) -> Result<(), Error> {
    shim::delete(state_dir)
}

/// Path of the guest console log of a VM container.
pub fn console_log(state_dir: &Path) -> PathBuf {
    shim::StateDir::new(state_dir).console_log()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_precompiled_on_the_host_is_what_the_guest_cache_looks_up() {
        let tmp = tempfile::tempdir().unwrap();
        let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap();
        let memo_dir = tmp.path().join("memo");
        let (name, data) = precompile_seccomp_in(&profile, &memo_dir).expect("compiles");
        assert!(valid_seccomp_entry_name(&name), "{name}");
        assert!(data.starts_with(b"SKFBPF01"));
        // Memoised: one entry file, and the same answer again.
        let entries: Vec<_> = fs::read_dir(&memo_dir).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            precompile_seccomp_in(&profile, &memo_dir).unwrap(),
            (name.clone(), data.clone())
        );
        // The agent writes the entry into the runtime's cache: compiling
        // there finds it (no second file, the bytes untouched).
        let guest = tmp.path().join("guest");
        fs::create_dir(&guest).unwrap();
        fs::write(guest.join(&name), &data).unwrap();
        skiff_seccomp::compile_cached(&profile, &guest).unwrap();
        let files: Vec<_> = fs::read_dir(&guest)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from(&name)]);
        assert_eq!(fs::read(guest.join(&name)).unwrap(), data);
        // No profile, no entry; names are checked.
        assert!(!valid_seccomp_entry_name("../x.bpf"));
        assert!(!valid_seccomp_entry_name("abc"));
        assert!(!valid_seccomp_entry_name(".bpf"));
    }

    #[test]
    fn tsc_reliable_comes_before_the_specs_kernel_parameters() {
        assert_eq!(guest_kernel_params(vec![]), vec!["tsc=reliable"]);
        assert_eq!(
            guest_kernel_params(vec!["tsc=unstable".into(), "quiet".into()]),
            vec!["tsc=reliable", "tsc=unstable", "quiet"]
        );
    }

    #[test]
    fn bind_sources_become_shares_or_content() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("data")).unwrap();
        fs::write(tmp.path().join("hosts"), "127.0.0.1 x\n").unwrap();
        let mut spec = serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "none", "source": tmp.path().join("hosts"), "options": ["bind"]},
            {"destination": "/dev/null2", "type": "bind", "source": "/dev/null"}
        ]});
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: sharing file bind mounts needs root (host bind mounts)");
            return;
        }
        let state = tmp.path().join("state");
        fs::create_dir(&state).unwrap();
        let shares = share_binds(&mut spec, tmp.path(), &state).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].tag, "bind0");
        assert!(shares[0].readonly);
        assert_eq!(
            shares[0].path,
            tmp.path().join("data").canonicalize().unwrap()
        );
        assert_eq!(spec["mounts"][1]["x-skiff-share"], "bind0");
        // the file: a host bind mount in the state dir's share, both ways
        assert_eq!(shares[1].tag, "bind1");
        assert_eq!(shares[1].path, state.join(FILE_SHARE_DIR));
        assert_eq!(spec["mounts"][2]["x-skiff-share"], "bind1");
        assert_eq!(spec["mounts"][2]["x-skiff-share-file"], "f2");
        let entry = state.join(FILE_SHARE_DIR).join("f2");
        assert_eq!(fs::read_to_string(&entry).unwrap(), "127.0.0.1 x\n");
        fs::write(&entry, "10.0.0.1 y\n").unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("hosts")).unwrap(),
            "10.0.0.1 y\n"
        );
        assert!(spec["mounts"][3].get("x-skiff-share").is_none());
        assert!(spec["mounts"][0].get("x-skiff-share").is_none());
        // only the sources are in the share
        assert_eq!(fs::read_dir(state.join(FILE_SHARE_DIR)).unwrap().count(), 1);
        unshare_files(&state);
        assert!(!state.join(FILE_SHARE_DIR).exists());
        assert_eq!(
            fs::read_to_string(tmp.path().join("hosts")).unwrap(),
            "10.0.0.1 y\n"
        );
    }

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn isolation_choice() {
        let plain = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert!(!wants_vm(&plain, None));
        assert!(wants_vm(&plain, Some("vm")));
        let ann = spec(r#"{"ociVersion":"1.0.2","annotations":{"run.skiff.isolation":"vm"}}"#);
        assert!(wants_vm(&ann, None));
        let ns =
            spec(r#"{"ociVersion":"1.0.2","annotations":{"run.skiff.isolation":"namespace"}}"#);
        assert!(!wants_vm(&ns, Some("vm")));
        let vmobj = spec(r#"{"ociVersion":"1.0.2","vm":{"kernel":{"path":"/boot/vmlinuz"}}}"#);
        assert!(wants_vm(&vmobj, None));
    }

    #[test]
    fn sizes_derive_from_resources() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":536870912},"cpu":{"quota":150000,"period":100000}}}}"#,
        );
        assert_eq!(guest_memory_mib(&s).unwrap(), 512 + 160);
        let host = std::thread::available_parallelism().unwrap().get() as u32;
        assert_eq!(guest_vcpus(&s).unwrap(), 2.min(host));
        let d = spec(r#"{"ociVersion":"1.0.2"}"#);
        assert_eq!(guest_memory_mib(&d).unwrap(), 256);
        assert_eq!(guest_vcpus(&d).unwrap(), 1);
        let bad = spec(r#"{"ociVersion":"1.0.2","annotations":{"run.skiff.vm.vcpus":"x"}}"#);
        assert!(matches!(guest_vcpus(&bad), Err(Error::Spec { .. })));
    }

    #[test]
    fn long_state_dirs_get_short_sockets() {
        let long = PathBuf::from(format!("/run/{}", "x".repeat(120)));
        let p = sock_path(&long, "agent.sock");
        assert!(p.as_os_str().len() < 100);
        assert_eq!(p, sock_path(&long, "agent.sock"));
        assert_eq!(
            sock_path(Path::new("/run/s/c1"), "agent.sock"),
            Path::new("/run/s/c1/agent.sock")
        );
    }
}

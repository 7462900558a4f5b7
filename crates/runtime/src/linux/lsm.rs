//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel`
//! and `linux.mountLabel`.
//!
//! Three parts, used at different times:
//! - **detection** ([`Lsms::detect`]), done the way runc 1.1 does it
//!   (`libcontainer/apparmor.isEnabled`, go-selinux `GetEnabled`);
//! - **validation** before anything is created ([`check`] for `create`,
//!   [`check_exec`] for `exec`; [`check_config`] and [`check_process`] take
//!   the host's [`Lsms`] as an argument): a label or profile that cannot be
//!   applied on this host is refused with an error naming the field, so a
//!   refused container leaves nothing behind. Which configurations fail is
//!   exactly what runc 1.1.5 does on a host without the LSM (see
//!   docs/security.md);
//! - **application** in the container init ([`apply_apparmor_profile`],
//!   [`set_exec_label`], [`set_key_label`], [`reset_key_label`],
//!   [`set_file_label`]) and in mount data ([`mount_data`],
//!   [`format_mount_label`]).
//!
//! The init writes its own `/proc/thread-self/attr/...` files after
//! `pivot_root`, so `/proc` is the container's: every attr file is opened
//! beneath a `/proc` handle verified to be procfs, with `RESOLVE_NO_XDEV`
//! (nothing mounted over it) and `RESOLVE_NO_MAGICLINKS` (CVE-2019-16884
//! class: a fake procfs cannot swallow the label).

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Process, Spec};

use super::fs;
use super::mount_opts;

/// selinuxfs magic number (linux/magic.h).
const SELINUX_MAGIC: i64 = 0xf97c_ff8c;
/// cgroup2 magic number (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Errors of this module. Each names the config field and the value.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    /// The config asks for something this host cannot do.
    #[error("config.json: {field} \"{value}\": {reason}")]
    Config {
        /// The config field (`process.apparmorProfile`, ...).
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Applying a profile or label failed in the kernel.
    #[error("{field} \"{value}\": writing {path}: {source}")]
    Apply {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The file written.
        path: String,
        /// What the kernel said.
        source: io::Error,
    },
}

/// Which LSMs are enabled on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lsms {
    /// AppArmor is enabled (securityfs shows it and its module says `Y`).
    pub apparmor: bool,
    /// SELinux is enabled (a writable selinuxfs is mounted and the process
    /// label is not `kernel`).
    pub selinux: bool,
}

impl Lsms {
    /// Detects the enabled LSMs once per process (runc caches it too).
    pub fn detect() -> Lsms {
        static HOST: OnceLock<Lsms> = OnceLock::new();
        *HOST.get_or_init(|| Lsms {
            apparmor: apparmor_enabled_at(
                Path::new("/sys/kernel/security/apparmor"),
                Path::new("/sys/module/apparmor/parameters/enabled"),
            ),
            selinux: detect_selinux(),
        })
    }
}

/// True if AppArmor is enabled on this host ([`Lsms::detect`]).
pub fn apparmor_enabled() -> bool {
    Lsms::detect().apparmor
}

/// True if SELinux is enabled on this host ([`Lsms::detect`]).
pub fn selinux_enabled() -> bool {
    Lsms::detect().selinux
}

/// runc's `apparmor.isEnabled`: the securityfs directory of AppArmor exists
/// and the module parameter `enabled` starts with `Y` (and is more than one
/// byte, i.e. `Y\n`).
pub fn apparmor_enabled_at(securityfs_dir: &Path, enabled_param: &Path) -> bool {
    if !securityfs_dir.exists() {
        return false;
    }
    match std::fs::read(enabled_param) {
        Ok(b) => b.len() > 1 && b[0] == b'Y',
        Err(_) => false,
    }
}

/// go-selinux's `GetEnabled` (what runc 1.1 uses): a writable selinuxfs at
/// `/sys/fs/selinux` (or, if `/proc/filesystems` lists selinuxfs, anywhere in
/// `/proc/self/mountinfo`), and the current process label is not `kernel`.
fn detect_selinux() -> bool {
    let mut found = selinuxfs_ok(Path::new("/sys/fs/selinux"));
    if !found {
        let listed = std::fs::read("/proc/filesystems")
            .map(|f| f.windows(11).any(|w| w == b"\tselinuxfs\n"))
            .unwrap_or(false);
        if listed {
            found = std::fs::read_to_string("/proc/self/mountinfo")
                .map(|m| {
                    selinuxfs_mount_points(&m)
                        .iter()
                        .any(|p| selinuxfs_ok(Path::new(p)))
                })
                .unwrap_or(false);
        }
    }
    if !found {
        return false;
    }
    let current = std::fs::read("/proc/thread-self/attr/current").unwrap_or_default();
    let current = String::from_utf8_lossy(&current);
    current.trim_end_matches(['\0', '\n']) != "kernel"
}

/// The filesystem magic of a statfs result (its C type differs by arch).
#[allow(clippy::unnecessary_cast)]
fn fs_magic(st: &nix::sys::statfs::Statfs) -> i64 {
    st.filesystem_type().0 as i64
}

fn selinuxfs_ok(p: &Path) -> bool {
    match nix::sys::statfs::statfs(p) {
        Ok(st) => {
            fs_magic(&st) == SELINUX_MAGIC
                && !nix::sys::statvfs::statvfs(p)
                    .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        }
        Err(_) => false,
    }
}

/// Mount points of `selinuxfs` filesystems in a mountinfo text.
fn selinuxfs_mount_points(mountinfo: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').next() != Some("selinuxfs") {
            continue;
        }
        if let Some(mp) = left.split(' ').nth(4) {
            out.push(skiff_sys::mountinfo::unescape_lossy(mp));
        }
    }
    out
}

fn cgroup2_unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|st| fs_magic(&st) == CGROUP2_SUPER_MAGIC)
}

/// How `linux.mountLabel` applies to a mount, as runc 1.1's
/// `mountToRootfs` does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountLabel {
    /// `context="<label>"` is appended to the mount data (tmpfs, devpts and
    /// every other filesystem not listed below; the tmpfs under a cgroup v1
    /// `cgroup` mount; tmpfs over masked directories).
    Context,
    /// The mount root is labelled with the `security.selinux` xattr after
    /// mounting, and only where SELinux is enabled (`mqueue`).
    FileLabel,
    /// Not labelled: `proc`, `sysfs` ("SELinux kernels do not support
    /// labeling of /proc or /sys"), bind mounts (the kernel ignores their
    /// data), `cgroup2`, and the per-hierarchy binds of a v1 `cgroup` mount.
    None,
}

/// How `linux.mountLabel` applies to a mount of type `typ` with `options`.
pub fn mount_label_kind(typ: &str, options: &[String]) -> MountLabel {
    if typ == "bind" || mount_opts::parse(options).is_bind() {
        return MountLabel::None;
    }
    match typ {
        "proc" | "sysfs" | "cgroup2" => MountLabel::None,
        "mqueue" => MountLabel::FileLabel,
        // Everything else, including `cgroup`: the cgroup v1 layout is a
        // tmpfs holding per-hierarchy binds, and that tmpfs gets the label
        // (a cgroup2 host mounts cgroup2 instead, see `check_config`).
        _ => MountLabel::Context,
    }
}

/// go-selinux's `label.FormatMountLabel` (runc 1.1.5 vendors v1.10):
/// appends `context="<label>"` to mount data; an empty label changes nothing.
/// It does not look at whether SELinux is enabled: on a host without it the
/// kernel refuses the option (EINVAL), as it does for runc.
pub fn format_mount_label(data: &str, mount_label: &str) -> String {
    if mount_label.is_empty() {
        return data.to_string();
    }
    if data.is_empty() {
        format!("context=\"{mount_label}\"")
    } else {
        format!("{data},context=\"{mount_label}\"")
    }
}

/// The data to pass to mount(2) for a config mount of type `typ` (with its
/// `options`) whose filesystem data is `data`: `data` with the mount label
/// appended where [`mount_label_kind`] says [`MountLabel::Context`].
pub fn mount_data(typ: &str, options: &[String], data: &str, mount_label: Option<&str>) -> String {
    match (mount_label, mount_label_kind(typ, options)) {
        (Some(l), MountLabel::Context) => format_mount_label(data, l),
        _ => data.to_string(),
    }
}

/// The config's mount label, `None` when absent or empty.
pub fn mount_label(spec: &Spec) -> Option<&str> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref())
        .filter(|l| !l.is_empty())
}

/// Checks the process fields (`apparmorProfile`, `selinuxLabel`) against the
/// host. Used by `create` (with [`check_config`]) and by `exec`.
///
/// An empty value is ignored; `selinuxLabel` without SELinux is refused
/// (runc: "selinux label is specified in config, but selinux is disabled or
/// not supported"); `apparmorProfile` without AppArmor is refused, except
/// `unconfined`, which is what the process is there anyway (skiff's
/// rule; runc 1.1.5 writes `exec unconfined` regardless and fails with
/// EINVAL in its init).
pub fn check_process(process: &Process, host: Lsms) -> Result<(), LsmError> {
    if let Some(p) = process.apparmor_profile().as_deref() {
        if !p.is_empty() && p != "unconfined" && !host.apparmor {
            return Err(LsmError::Config {
                field: "process.apparmorProfile",
                value: p.to_string(),
                reason: "AppArmor is not enabled on this host".into(),
            });
        }
    }
    if let Some(l) = process.selinux_label().as_deref() {
        if !l.is_empty() && !host.selinux {
            return Err(LsmError::Config {
                field: "process.selinuxLabel",
                value: l.to_string(),
                reason: "SELinux is not enabled on this host".into(),
            });
        }
    }
    Ok(())
}

/// Checks the whole config for `create`: [`check_process`] on
/// `spec.process`, and `linux.mountLabel`.
///
/// A mount label without SELinux is refused when a config mount would get
/// `context=` in its data, since the kernel refuses that mount (runc 1.1.5
/// fails in its init with EINVAL there). Other configurations run, as with
/// runc; a label that still reaches the kernel (a masked directory's tmpfs)
/// fails there, as with runc.
pub fn check_config(spec: &Spec, host: Lsms) -> Result<(), LsmError> {
    if let Some(p) = spec.process().as_ref() {
        check_process(p, host)?;
    }
    let Some(label) = mount_label(spec) else {
        return Ok(());
    };
    if host.selinux {
        return Ok(());
    }
    let unified = cgroup2_unified();
    for (i, m) in spec.mounts().as_deref().unwrap_or(&[]).iter().enumerate() {
        let typ = m.typ().as_deref().unwrap_or("");
        if typ == "cgroup" && unified {
            continue;
        }
        let opts = m.options().as_deref().unwrap_or(&[]);
        if mount_label_kind(typ, opts) == MountLabel::Context {
            return Err(LsmError::Config {
                field: "linux.mountLabel",
                value: label.to_string(),
                reason: format!(
                    "SELinux is not enabled on this host (mounts[{i}], {typ} on {}, would be \
                     mounted with context=\"{label}\", which the kernel refuses)",
                    m.destination().display()
                ),
            });
        }
    }
    Ok(())
}

/// True if any LSM field of the process is set (non-empty).
pub fn process_wants_lsm(process: &Process) -> bool {
    process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        || process
            .selinux_label()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
}

/// [`check_config`] against this host, detecting the LSMs only when the
/// config sets an LSM field (the common case costs no syscall). What
/// `create` calls, before anything is created.
pub fn check(spec: &Spec) -> Result<(), LsmError> {
    let wants =
        spec.process().as_ref().is_some_and(process_wants_lsm) || mount_label(spec).is_some();
    if !wants {
        return Ok(());
    }
    check_config(spec, Lsms::detect())
}

/// [`check_process`] against this host, detecting the LSMs only when the
/// process sets an LSM field. What `exec` calls.
pub fn check_exec(process: &Process) -> Result<(), LsmError> {
    if !process_wants_lsm(process) {
        return Ok(());
    }
    check_process(process, Lsms::detect())
}

/// Opens `/proc/thread-self/attr/<sub>` for writing, beneath a verified
/// procfs handle, crossing no mount and no magic link.
fn open_attr(sub: &str) -> io::Result<OwnedFd> {
    let proc = nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    fs::check_fs_magic(proc.as_fd(), fs::PROC_SUPER_MAGIC, "/proc")?;
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let path = format!("thread-self/attr/{sub}");
    let fd = match openat2(proc.as_fd(), path.as_str(), how) {
        // Before Linux 5.6: no openat2. The filesystem check below still
        // proves the file is procfs's.
        Err(nix::errno::Errno::ENOSYS) => nix::fcntl::openat(
            proc.as_fd(),
            path.as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ),
        r => r,
    }
    .map_err(io::Error::from)?;
    fs::check_fs_magic(fd.as_fd(), fs::PROC_SUPER_MAGIC, "attr file")?;
    Ok(fd)
}

/// Writes `value` to `/proc/thread-self/attr/<sub>` in one write(2).
fn write_attr(sub: &str, value: &[u8]) -> io::Result<()> {
    write_fd(open_attr(sub)?, value)
}

fn write_fd(fd: OwnedFd, value: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::from(fd);
    let n = f.write(value)?;
    if n != value.len() {
        return Err(io::Error::other(format!(
            "short write ({n} of {} bytes)",
            value.len()
        )));
    }
    Ok(())
}

/// Makes the next execve of this thread enter AppArmor profile `profile`
/// (libapparmor's `aa_change_onexec`): writes `exec <profile>` to
/// `/proc/thread-self/attr/apparmor/exec`, or to `/proc/thread-self/attr/exec`
/// on kernels without the per-LSM directory. An empty profile does nothing.
///
/// Called in the init after the rootfs is entered (it needs the container's
/// `/proc`), before the exec fifo, as runc does. It does not check that
/// AppArmor is enabled ([`check_process`] did); the kernel refuses the write
/// if it is not.
pub fn apply_apparmor_profile(profile: &str) -> Result<(), LsmError> {
    if profile.is_empty() || (profile == "unconfined" && !apparmor_enabled()) {
        return Ok(());
    }
    let value = format!("exec {profile}");
    let mut path = "/proc/thread-self/attr/apparmor/exec";
    // Fall back only when the per-LSM file is missing (a write to it fails
    // with ENOENT too, when the profile is not loaded).
    let fd = match open_attr("apparmor/exec") {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            path = "/proc/thread-self/attr/exec";
            open_attr("exec")
        }
        r => r,
    };
    fd.and_then(|fd| write_fd(fd, value.as_bytes()))
        .map_err(|source| LsmError::Apply {
            field: "process.apparmorProfile",
            value: profile.to_string(),
            path: path.into(),
            source,
        })
}

/// Sets the SELinux label of the next execve of this thread
/// (`setexeccon`): writes `label` to `/proc/thread-self/attr/exec`. An empty
/// label does nothing.
pub fn set_exec_label(label: &str) -> Result<(), LsmError> {
    if label.is_empty() {
        return Ok(());
    }
    write_attr("exec", label.as_bytes()).map_err(|source| LsmError::Apply {
        field: "process.selinuxLabel",
        value: label.to_string(),
        path: "/proc/thread-self/attr/exec".into(),
        source,
    })
}

/// Sets the SELinux label of keyrings this thread creates (`setkeycreatecon`),
/// as runc does around joining the session keyring: call it with the
/// process label before `KEYCTL_JOIN_SESSION_KEYRING`, then
/// [`reset_key_label`]. An empty label does nothing (nothing to reset then);
/// a missing attr file is ignored, as in go-selinux.
pub fn set_key_label(label: &str) -> Result<(), LsmError> {
    if label.is_empty() {
        return Ok(());
    }
    match write_attr("keycreate", label.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(LsmError::Apply {
            field: "process.selinuxLabel",
            value: label.to_string(),
            path: "/proc/thread-self/attr/keycreate".into(),
            source,
        }),
    }
}

/// Resets the keyring creation label after a non-empty [`set_key_label`].
/// Errors are ignored, as runc ignores them (`defer selinux.SetKeyLabel("")`).
pub fn reset_key_label() {
    let _ = write_attr("keycreate", b"");
}

/// Labels a mounted filesystem's root with `label` (the `security.selinux`
/// xattr), for [`MountLabel::FileLabel`] mounts (`mqueue`). `path` must name
/// the mount (e.g. `/proc/self/fd/N` of an fd opened after mounting). Does
/// nothing when SELinux is not enabled or the label is empty, like
/// go-selinux's `label.SetFileLabel`.
pub fn set_file_label(path: &Path, label: &str) -> Result<(), LsmError> {
    if label.is_empty() || !selinux_enabled() {
        return Ok(());
    }
    let err = |source: io::Error| LsmError::Apply {
        field: "linux.mountLabel",
        value: label.to_string(),
        path: format!("{} (security.selinux)", path.display()),
        source,
    };
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|e| err(e.into()))?;
    // SAFETY: setxattr with NUL-terminated path and name and a buffer of the
    // given length that outlives the call.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"security.selinux".as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("test spec")
    }

    fn base(process: serde_json::Value, linux: serde_json::Value) -> Spec {
        spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": process,
            "linux": linux,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "mode=755"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
            ],
        }))
    }

    fn proc(extra: serde_json::Value) -> serde_json::Value {
        let mut p = serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }

    const NONE: Lsms = Lsms {
        apparmor: false,
        selinux: false,
    };
    const BOTH: Lsms = Lsms {
        apparmor: true,
        selinux: true,
    };

    #[test]
    fn format_mount_label_matches_go_selinux() {
        assert_eq!(format_mount_label("", ""), "");
        assert_eq!(format_mount_label("mode=755", ""), "mode=755");
        assert_eq!(
            format_mount_label("", "system_u:object_r:container_file_t:s0"),
            "context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(
            format_mount_label("mode=755,size=65536k", "s0:c1,c2"),
            "mode=755,size=65536k,context=\"s0:c1,c2\""
        );
    }

    #[test]
    fn mount_label_kind_follows_runc() {
        let no: Vec<String> = Vec::new();
        let bind = vec!["rbind".to_string(), "ro".to_string()];
        assert_eq!(mount_label_kind("tmpfs", &no), MountLabel::Context);
        assert_eq!(mount_label_kind("devpts", &no), MountLabel::Context);
        assert_eq!(mount_label_kind("overlay", &no), MountLabel::Context);
        assert_eq!(mount_label_kind("cgroup", &no), MountLabel::Context);
        assert_eq!(mount_label_kind("mqueue", &no), MountLabel::FileLabel);
        assert_eq!(mount_label_kind("proc", &no), MountLabel::None);
        assert_eq!(mount_label_kind("sysfs", &no), MountLabel::None);
        assert_eq!(mount_label_kind("cgroup2", &no), MountLabel::None);
        assert_eq!(mount_label_kind("bind", &no), MountLabel::None);
        assert_eq!(mount_label_kind("none", &bind), MountLabel::None);
        assert_eq!(mount_label_kind("tmpfs", &bind), MountLabel::None);
    }

    #[test]
    fn mount_data_appends_only_where_runc_does() {
        let no: Vec<String> = Vec::new();
        assert_eq!(
            mount_data("tmpfs", &no, "mode=755", Some("l")),
            "mode=755,context=\"l\""
        );
        assert_eq!(mount_data("devpts", &no, "", Some("l")), "context=\"l\"");
        assert_eq!(mount_data("proc", &no, "", Some("l")), "");
        assert_eq!(mount_data("mqueue", &no, "", Some("l")), "");
        assert_eq!(mount_data("tmpfs", &no, "mode=755", None), "mode=755");
    }

    #[test]
    fn empty_values_are_accepted_everywhere() {
        let s = base(
            proc(serde_json::json!({"apparmorProfile": "", "selinuxLabel": ""})),
            serde_json::json!({"mountLabel": ""}),
        );
        check_config(&s, NONE).unwrap();
        check_config(&s, BOTH).unwrap();
        assert_eq!(mount_label(&s), None);
    }

    #[test]
    fn apparmor_profile_needs_apparmor_except_unconfined() {
        let unconfined = base(
            proc(serde_json::json!({"apparmorProfile": "unconfined"})),
            serde_json::json!({}),
        );
        check_config(&unconfined, NONE).unwrap();
        for p in ["docker-default", "skiff-test"] {
            let s = base(
                proc(serde_json::json!({"apparmorProfile": p})),
                serde_json::json!({}),
            );
            let e = check_config(&s, NONE).unwrap_err().to_string();
            assert_eq!(
                e,
                format!(
                    "config.json: process.apparmorProfile \"{p}\": AppArmor is not enabled on \
                     this host"
                )
            );
            check_config(
                &s,
                Lsms {
                    apparmor: true,
                    selinux: false,
                },
            )
            .unwrap();
        }
    }

    #[test]
    fn selinux_label_needs_selinux() {
        let s = base(
            proc(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"})),
            serde_json::json!({}),
        );
        let e = check_process(s.process().as_ref().unwrap(), NONE)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config.json: process.selinuxLabel \"system_u:system_r:container_t:s0\": SELinux is \
             not enabled on this host"
        );
        check_config(&s, BOTH).unwrap();
    }

    #[test]
    fn mount_label_refused_when_a_mount_would_carry_it() {
        let s = base(
            proc(serde_json::json!({})),
            serde_json::json!({"mountLabel": "s0"}),
        );
        let e = check_config(&s, NONE).unwrap_err().to_string();
        assert!(
            e.starts_with("config.json: linux.mountLabel \"s0\": SELinux is not enabled"),
            "{e}"
        );
        assert!(e.contains("mounts[1], tmpfs on /dev"), "{e}");
        check_config(&s, BOTH).unwrap();
        // Only proc, mqueue and bind mounts: runc runs it, so do we.
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": proc(serde_json::json!({})),
            "linux": {"mountLabel": "s0"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
                {"destination": "/data", "type": "none", "source": "/tmp", "options": ["rbind"]},
            ],
        }));
        check_config(&s, NONE).unwrap();
    }

    #[test]
    fn check_without_lsm_fields_passes_on_any_host() {
        let s = base(proc(serde_json::json!({})), serde_json::json!({}));
        check(&s).unwrap();
        check_exec(s.process().as_ref().unwrap()).unwrap();
        let s = base(
            proc(serde_json::json!({"apparmorProfile": ""})),
            serde_json::json!({"mountLabel": ""}),
        );
        check(&s).unwrap();
    }

    #[test]
    fn apparmor_detection_reads_securityfs_and_the_module_parameter() {
        let d = std::env::temp_dir().join(format!("skiff-lsm-{}", std::process::id()));
        let sfs = d.join("security-apparmor");
        let param = d.join("enabled");
        std::fs::create_dir_all(&d).unwrap();
        assert!(!apparmor_enabled_at(&sfs, &param));
        std::fs::create_dir_all(&sfs).unwrap();
        assert!(!apparmor_enabled_at(&sfs, &param));
        std::fs::write(&param, "Y\n").unwrap();
        assert!(apparmor_enabled_at(&sfs, &param));
        std::fs::write(&param, "N\n").unwrap();
        assert!(!apparmor_enabled_at(&sfs, &param));
        std::fs::write(&param, "Y").unwrap();
        assert!(
            !apparmor_enabled_at(&sfs, &param),
            "runc wants more than one byte"
        );
        std::fs::remove_dir(&sfs).unwrap();
        assert!(!apparmor_enabled_at(&sfs, &param), "securityfs is required");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn selinuxfs_found_in_mountinfo() {
        let mi = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                  30 22 0:27 / /sys/fs/selinux rw,relatime shared:4 - selinuxfs selinuxfs rw\n\
                  31 22 0:28 / /mnt/se\\040x rw - selinuxfs none rw\n";
        assert_eq!(
            selinuxfs_mount_points(mi),
            vec!["/sys/fs/selinux".to_string(), "/mnt/se x".to_string()]
        );
    }

    #[test]
    fn empty_profile_and_labels_write_nothing() {
        apply_apparmor_profile("").unwrap();
        set_exec_label("").unwrap();
        set_file_label(Path::new("/nonexistent"), "").unwrap();
        set_key_label("").unwrap();
    }

    /// The kernel refuses a profile/label that the host cannot apply, and
    /// the error names the field and the attr file. On this thread only: the
    /// test thread never execs, and a refused write changes nothing.
    #[test]
    fn kernel_refusal_names_field_and_file() {
        let e = apply_apparmor_profile("skiff-test-no-such-profile")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("process.apparmorProfile \"skiff-test-no-such-profile\": writing /proc/thread-self/attr/"),
            "{e}"
        );
        let e = set_exec_label("skiff-not-a-context")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "process.selinuxLabel \"skiff-not-a-context\": writing /proc/thread-self/attr/exec"
            ),
            "{e}"
        );
    }

    #[test]
    fn this_host_detection_is_consistent() {
        let h = Lsms::detect();
        assert_eq!(h, Lsms::detect());
        if !Path::new("/sys/fs/selinux").exists() && !Path::new("/proc/filesystems").exists() {
            assert!(!h.selinux);
        }
        if !Path::new("/sys/module/apparmor").exists() {
            assert!(!h.apparmor);
        }
    }
}

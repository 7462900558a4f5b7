//! Mount options of config.json `mounts[].options`, parsed as runc does:
//! flags (`ro`, `nosuid`, ...), their clearing forms (`rw`, `suid`, ...),
//! propagation (`rprivate`, `shared`, ...), recursive attributes
//! (`rro`, `rnosuid`, ... applied with mount_setattr), `bind`/`rbind`,
//! `idmap`/`ridmap`, and everything else passed to the filesystem as data.

/// MOUNT_ATTR_* values (linux/mount.h).
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// No setuid.
    pub const NOSUID: u64 = 0x2;
    /// No devices.
    pub const NODEV: u64 = 0x4;
    /// No exec.
    pub const NOEXEC: u64 = 0x8;
    /// Atime mask.
    pub const ATIME_MASK: u64 = 0x70;
    /// relatime.
    pub const RELATIME: u64 = 0x0;
    /// noatime.
    pub const NOATIME: u64 = 0x10;
    /// strictatime.
    pub const STRICTATIME: u64 = 0x20;
    /// nodiratime.
    pub const NODIRATIME: u64 = 0x80;
    /// idmapped.
    pub const IDMAP: u64 = 0x100000;
    /// nosymfollow.
    pub const NOSYMFOLLOW: u64 = 0x200000;
}

/// Parsed mount options.
#[derive(Debug, Default, Clone)]
pub struct MountOpts {
    /// MS_* flags to set.
    pub flags: libc::c_ulong,
    /// MS_* flags explicitly cleared (`rw`, `suid`, ...).
    pub clear: libc::c_ulong,
    /// Propagation flags, applied in order after the mount.
    pub propagation: Vec<libc::c_ulong>,
    /// Recursive attributes to set (MOUNT_ATTR_*).
    pub rec_set: u64,
    /// Recursive attributes to clear.
    pub rec_clear: u64,
    /// Filesystem-specific data, comma-joined.
    pub data: String,
    /// `idmap` or `ridmap` was given (recursive for ridmap).
    pub idmap: Option<bool>,
    /// `tmpcopyup`: copy the directory's contents into the new tmpfs.
    pub tmpcopyup: bool,
}

impl MountOpts {
    /// True for bind or rbind mounts.
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

enum Opt {
    Set(libc::c_ulong),
    Clear(libc::c_ulong),
    Prop(libc::c_ulong),
    RecSet(u64),
    RecClear(u64),
    /// An atime mode: the modes are an enum, so mount_setattr needs the
    /// whole MOUNT_ATTR__ATIME mask in attr_clr and one mode in attr_set.
    RecAtime(u64),
    Idmap(bool),
}

fn lookup(o: &str) -> Option<Opt> {
    use libc::*;
    use Opt::*;
    Some(match o {
        "async" => Clear(MS_SYNCHRONOUS),
        "atime" => Clear(MS_NOATIME),
        "bind" => Set(MS_BIND),
        "defaults" => Set(0),
        "dev" => Clear(MS_NODEV),
        "diratime" => Clear(MS_NODIRATIME),
        "dirsync" => Set(MS_DIRSYNC),
        "exec" => Clear(MS_NOEXEC),
        "iversion" => Set(MS_I_VERSION),
        "lazytime" => Set(MS_LAZYTIME),
        "loud" => Clear(MS_SILENT),
        "mand" => Set(MS_MANDLOCK),
        "noatime" => Set(MS_NOATIME),
        "nodev" => Set(MS_NODEV),
        "nodiratime" => Set(MS_NODIRATIME),
        "noexec" => Set(MS_NOEXEC),
        "noiversion" => Clear(MS_I_VERSION),
        "nolazytime" => Clear(MS_LAZYTIME),
        "nomand" => Clear(MS_MANDLOCK),
        "norelatime" => Clear(MS_RELATIME),
        "nostrictatime" => Clear(MS_STRICTATIME),
        "nosuid" => Set(MS_NOSUID),
        "nosymfollow" => Set(0x100), // MS_NOSYMFOLLOW
        "rbind" => Set(MS_BIND | MS_REC),
        "relatime" => Set(MS_RELATIME),
        "remount" => Set(MS_REMOUNT),
        "ro" => Set(MS_RDONLY),
        "rw" => Clear(MS_RDONLY),
        "silent" => Set(MS_SILENT),
        "strictatime" => Set(MS_STRICTATIME),
        "suid" => Clear(MS_NOSUID),
        "sync" => Set(MS_SYNCHRONOUS),
        "private" => Prop(MS_PRIVATE),
        "shared" => Prop(MS_SHARED),
        "slave" => Prop(MS_SLAVE),
        "unbindable" => Prop(MS_UNBINDABLE),
        "rprivate" => Prop(MS_PRIVATE | MS_REC),
        "rshared" => Prop(MS_SHARED | MS_REC),
        "rslave" => Prop(MS_SLAVE | MS_REC),
        "runbindable" => Prop(MS_UNBINDABLE | MS_REC),
        "rro" => RecSet(attr::RDONLY),
        "rrw" => RecClear(attr::RDONLY),
        "rnosuid" => RecSet(attr::NOSUID),
        "rsuid" => RecClear(attr::NOSUID),
        "rnodev" => RecSet(attr::NODEV),
        "rdev" => RecClear(attr::NODEV),
        "rnoexec" => RecSet(attr::NOEXEC),
        "rexec" => RecClear(attr::NOEXEC),
        "rnodiratime" => RecSet(attr::NODIRATIME),
        "rdiratime" => RecClear(attr::NODIRATIME),
        "rrelatime" => RecAtime(attr::RELATIME),
        "rnorelatime" => RecAtime(attr::STRICTATIME),
        "rnoatime" => RecAtime(attr::NOATIME),
        "ratime" => RecAtime(attr::RELATIME),
        "rstrictatime" => RecAtime(attr::STRICTATIME),
        "rnostrictatime" => RecAtime(attr::RELATIME),
        "rnosymfollow" => RecSet(attr::NOSYMFOLLOW),
        "rsymfollow" => RecClear(attr::NOSYMFOLLOW),
        "idmap" => Idmap(false),
        "ridmap" => Idmap(true),
        _ => return None,
    })
}

/// Checks one option for config validation (unknown options are filesystem
/// data and accepted; this rejects only malformed ones).
pub fn check_option(o: &str) -> Result<(), String> {
    if o.is_empty() {
        return Err("empty option".into());
    }
    if o.contains('\0') {
        return Err(format!("option {o:?} contains a NUL byte"));
    }
    Ok(())
}

/// Parses a mount's option list.
pub fn parse(options: &[String]) -> MountOpts {
    let mut m = MountOpts::default();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        match lookup(o) {
            Some(Opt::Set(f)) => {
                m.flags |= f;
                m.clear &= !f;
            }
            Some(Opt::Clear(f)) => {
                m.flags &= !f;
                m.clear |= f;
            }
            Some(Opt::Prop(p)) => m.propagation.push(p),
            Some(Opt::RecSet(a)) => {
                m.rec_set |= a;
                m.rec_clear &= !a;
            }
            Some(Opt::RecAtime(mode)) => {
                m.rec_set = (m.rec_set & !attr::ATIME_MASK) | mode;
                m.rec_clear |= attr::ATIME_MASK;
            }
            Some(Opt::RecClear(a)) => {
                // (never an atime bit: those are RecAtime)
                m.rec_clear |= a;
                m.rec_set &= !a;
            }
            Some(Opt::Idmap(r)) => m.idmap = Some(r),
            None if o == "tmpcopyup" => m.tmpcopyup = true,
            None => data.push(o),
        }
    }
    m.data = data.join(",");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data() {
        let o: Vec<String> = [
            "nosuid", "ro", "mode=755", "size=1k", "rbind", "rprivate", "rro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = parse(&o);
        assert_eq!(
            m.flags,
            libc::MS_NOSUID | libc::MS_RDONLY | libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(m.data, "mode=755,size=1k");
        assert_eq!(m.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(m.rec_set, attr::RDONLY);
        for (opt, mode) in [
            ("rnoatime", attr::NOATIME),
            ("rstrictatime", attr::STRICTATIME),
            ("rrelatime", attr::RELATIME),
            ("ratime", attr::RELATIME),
            ("rnostrictatime", attr::RELATIME),
            ("rnorelatime", attr::STRICTATIME),
        ] {
            let m = parse(&["rnodev".into(), opt.into()]);
            assert_eq!(m.rec_clear & attr::ATIME_MASK, attr::ATIME_MASK, "{opt}");
            assert_eq!(m.rec_set, mode | attr::NODEV, "{opt}");
        }
        let m = parse(&["ro".into(), "rw".into()]);
        assert_eq!(m.flags & libc::MS_RDONLY, 0);
    }
}

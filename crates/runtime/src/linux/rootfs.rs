//! The container's root filesystem, set up by the init inside its new mount
//! namespace: config mounts in order, default devices and /dev symlinks,
//! pivot_root (or MS_MOVE + chroot), masked and read-only paths.
//! Destinations are resolved inside the rootfs (see [`super::fs`]).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, Mount};

use super::devices::{create_devices, setup_dev_symlinks};
use super::fs::{self, fd_path};
use super::mount_opts::{self, MountOpts};
use super::Hierarchy;

pub(super) type R<T> = std::result::Result<T, String>;

pub(super) fn e<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

fn ms(bits: libc::c_ulong) -> MsFlags {
    MsFlags::from_bits_retain(bits)
}

/// Raw mount(2) on paths (strings: /proc/self/fd/N or host paths).
pub(super) fn do_mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let data = data.filter(|d| !d.is_empty());
    mount(src, target, fstype, ms(flags), data).map_err(io::Error::from)
}

/// Flags of an existing mount that an unprivileged remount must keep.
fn locked_flags(target: &str) -> libc::c_ulong {
    let Ok(st) = nix::sys::statvfs::statvfs(target) else {
        return 0;
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = 0;
    for (sv, m) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(sv) {
            out |= m;
        }
    }
    out
}

/// Remount a bind mount with `flags`; retries keeping locked flags (EPERM in
/// user namespaces).
fn remount_bind(target: &str, flags: libc::c_ulong) -> io::Result<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    let f = flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    match do_mount(None, target, None, base | f, None) {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
            let locked = locked_flags(target) & !libc::MS_RDONLY;
            do_mount(None, target, None, base | f | locked, None)
        }
        r => r,
    }
}

fn mount_setattr(fd: BorrowedFd, set: u64, clear: u64, userns_fd: Option<i32>) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let mut a = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns_fd.unwrap_or(0) as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr with a valid fd, an empty NUL-terminated path and
    // a correctly sized mount_attr struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &mut a as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Everything rootfs setup needs.
pub struct RootfsPlan<'a> {
    /// Absolute rootfs path on the host.
    pub rootfs: &'a Path,
    /// config.json mounts.
    pub mounts: &'a [Mount],
    /// linux.devices.
    pub devices: &'a [LinuxDevice],
    /// linux.rootfsPropagation.
    pub propagation: Option<&'a str>,
    /// The container's cgroup hierarchies (for `cgroup` mounts).
    pub cgroups: &'a [Hierarchy],
    /// A new cgroup namespace is created.
    pub cgroupns: bool,
    /// The init is in a new user namespace (mknod is not allowed).
    pub userns: bool,
    /// process.terminal: create /dev/console.
    pub terminal: bool,
    /// process.cwd to create.
    pub cwd: &'a Path,
    /// Detached idmapped trees by mount index (see `super::idmap`).
    pub idmap_trees: &'a [(usize, OwnedFd)],
    /// No mount namespace of its own (see [`super::Plan::host_mntns`]).
    pub host_mntns: bool,
    /// linux.mountLabel (non-empty), see `super::lsm`.
    pub mount_label: Option<&'a str>,
}

/// Prepares mounts and devices under the rootfs (before pivot_root).
pub fn prepare(p: &RootfsPlan, before_cgroup: &dyn Fn() -> R<()>) -> R<OwnedFd> {
    let prop = match p.propagation {
        Some("shared") | Some("rshared") => libc::MS_SHARED | libc::MS_REC,
        Some("private") | Some("rprivate") => libc::MS_PRIVATE | libc::MS_REC,
        Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    let rootfs = p.rootfs.to_str().ok_or("rootfs path is not UTF-8")?;
    if !p.host_mntns {
        prepare_root(rootfs, prop)?;
    }
    let root =
        fs::open_in_root_host(p.rootfs).map_err(e(format_args!("opening rootfs {rootfs}")))?;
    mount_all(p, root.as_fd(), before_cgroup)?;
    Ok(root)
}

/// In the container's own mount namespace: nothing propagates back to the
/// host, and the rootfs becomes a mount point (pivot_root needs one).
/// As runc: `/` gets the configured propagation (rslave by default), so
/// that with `rshared` the host's shared mounts stay peers and an `rshared`
/// bind propagates both ways; the mount holding the rootfs is made private
/// first so the rootfs bind itself does not reach the host.
fn prepare_root(rootfs: &str, prop: libc::c_ulong) -> R<()> {
    // Only sharing must happen before the binds; the others (unbindable
    // would refuse the rootfs bind) are applied after pivot_root.
    let early = if prop & libc::MS_SHARED != 0 {
        prop
    } else {
        libc::MS_SLAVE | libc::MS_REC
    };
    do_mount(None, "/", None, early, None).map_err(e("applying rootfsPropagation to /"))?;
    if prop & libc::MS_SHARED != 0 {
        let parent = mount_point_of(Path::new(rootfs))?;
        do_mount(None, &parent, None, libc::MS_PRIVATE, None).map_err(e(format_args!(
            "making {parent} (holding the rootfs) private"
        )))?;
    }
    do_mount(
        Some(rootfs),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(e(format_args!("bind-mounting rootfs {rootfs}")))?;
    if prop & libc::MS_SHARED != 0 {
        // pivot_root refuses a shared new root: make the parent private, the root itself shared.
        do_mount(None, rootfs, None, libc::MS_PRIVATE, None).map_err(e("rootfs propagation"))?;
    }
    Ok(())
}

/// The mount point of the mount that holds `path` (the longest mount point
/// in mountinfo that is an ancestor of it).
fn mount_point_of(path: &Path) -> R<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(e("reading mountinfo"))?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(skiff_cgroups::unescape_mountinfo)
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .map(|mp| mp.to_string_lossy().into_owned())
        .ok_or_else(|| format!("no mount holds {}", path.display()))
}

/// `mounts` in order, then devices, /dev symlinks, /dev/console and cwd.
fn mount_all(p: &RootfsPlan, root: BorrowedFd, before_cgroup: &dyn Fn() -> R<()>) -> R<()> {
    let mut dev_is_bind = false;
    for (i, m) in p.mounts.iter().enumerate() {
        let opts = mount_opts::parse(m.options().as_deref().unwrap_or(&[]));
        if m.destination() == Path::new("/dev")
            && (opts.is_bind() || m.typ().as_deref() == Some("bind"))
        {
            dev_is_bind = true;
        }
        if matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2")) {
            before_cgroup()?;
        }
        mount_one(root, i, m, &opts, p).map_err(|err| {
            format!(
                "mounts[{i}] ({} on {}): {err}",
                m.source().as_deref().unwrap_or(Path::new("none")).display(),
                m.destination().display()
            )
        })?;
    }
    if !dev_is_bind {
        create_devices(root, p.devices, p.userns, true)?;
        setup_dev_symlinks(root)?;
    } else {
        create_devices(root, p.devices, p.userns, false)?;
    }
    if p.terminal {
        fs::create_file(root, Path::new("/dev/console")).map_err(e("creating /dev/console"))?;
    }
    fs::mkdir_all(root, p.cwd)
        .map_err(e(format_args!("creating process.cwd {}", p.cwd.display())))?;
    Ok(())
}

fn mount_one(root: BorrowedFd, index: usize, m: &Mount, opts: &MountOpts, p: &RootfsPlan) -> R<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, dest, opts, p);
    }
    if opts.idmap.is_some() {
        return mount_idmapped(root, index, dest, opts, p);
    }
    let dest_fd = if opts.is_bind() || typ == "bind" {
        mount_bind(root, m, dest, typ, opts)?
    } else {
        mount_fs(root, m, dest, typ, opts, p)?
    };
    drop(dest_fd);
    set_propagation(root, dest, opts)
}

/// An `idmap`/`ridmap` bind mount: attaches the tree prepared by the
/// runtime (see [`RootfsPlan::idmap_trees`]).
fn mount_idmapped(
    root: BorrowedFd,
    index: usize,
    dest: &Path,
    opts: &MountOpts,
    p: &RootfsPlan,
) -> R<()> {
    let tree = p
        .idmap_trees
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, t)| t)
        .ok_or("idmap mount was not prepared")?;
    let dest_fd = if fs::is_dir(tree.as_fd()) {
        fs::mkdir_all(root, dest)
    } else {
        fs::create_file(root, dest)
    }
    .map_err(e("creating destination"))?;
    super::idmap::attach(tree, dest_fd.as_fd()).map_err(e("attaching idmapped mount"))?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra != 0 {
        let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
        remount_bind(&fd_path(top.as_fd()), extra).map_err(e("remount"))?;
    }
    Ok(())
}

/// A bind mount (`bind` type or option); returns the destination's fd.
fn mount_bind(root: BorrowedFd, m: &Mount, dest: &Path, typ: &str, opts: &MountOpts) -> R<OwnedFd> {
    let src = m.source().as_deref().ok_or("bind mount without source")?;
    let src_fd = fs::open_path(src).map_err(e(format_args!("source {}", src.display())))?;
    let dest_fd = if fs::is_dir(src_fd.as_fd()) {
        fs::mkdir_all(root, dest)
    } else {
        fs::create_file(root, dest)
    }
    .map_err(e("creating destination"))?;
    let mut flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
    if typ == "bind" && !opts.is_bind() {
        flags |= libc::MS_REC;
    }
    do_mount(
        Some(&fd_path(src_fd.as_fd())),
        &fd_path(dest_fd.as_fd()),
        None,
        flags,
        None,
    )
    .map_err(e("bind mount"))?;
    let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra != 0 {
        let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
        remount_bind(&fd_path(top.as_fd()), extra).map_err(e("remount"))?;
    }
    Ok(dest_fd)
}

/// A filesystem mount (proc, sysfs, tmpfs, ...), with tmpcopyup, a
/// read-only remount, the host's sysfs/mqueue as a fallback and the mount
/// label; returns the destination's fd.
fn mount_fs(
    root: BorrowedFd,
    m: &Mount,
    dest: &Path,
    typ: &str,
    opts: &MountOpts,
    p: &RootfsPlan,
) -> R<OwnedFd> {
    if typ == "proc" || typ == "sysfs" {
        refuse_non_directory(root, dest, typ)?;
    }
    let dest_fd = fs::mkdir_all(root, dest).map_err(e("creating destination"))?;
    let src = m
        .source()
        .as_deref()
        .and_then(|s| s.to_str())
        .unwrap_or(typ)
        .to_string();
    let target = fd_path(dest_fd.as_fd());
    let mut data = opts.data.clone();
    if typ == "tmpfs" || typ == "devpts" || typ == "mqueue" {
        // keep data as given
    } else if typ == "proc" || typ == "sysfs" {
        data.clear();
        if !opts.data.is_empty() {
            data = opts.data.clone();
        }
    }
    let data = super::lsm::mount_data(
        typ,
        m.options().as_deref().unwrap_or(&[]),
        &data,
        p.mount_label,
    );
    // tmpcopyup: keep a handle on the directory being covered.
    let copy_from = if opts.tmpcopyup && typ == "tmpfs" {
        Some(
            fs::open_in_root(root, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(e("tmpcopyup"))?,
        )
    } else {
        None
    };
    let r = do_mount(
        Some(&src),
        &target,
        Some(typ),
        opts.flags & !libc::MS_RDONLY,
        Some(&data),
    );
    if let (Ok(()), Some(from)) = (&r, copy_from) {
        let to = fs::open_in_root(root, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(e("tmpcopyup"))?;
        copy_tree(from.as_fd(), to.as_fd())
            .map_err(e("tmpcopyup: copying the directory into the tmpfs"))?;
    }
    let r = match r {
        Ok(()) if opts.flags & libc::MS_RDONLY != 0 => {
            let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
            do_mount(
                None,
                &fd_path(top.as_fd()),
                None,
                libc::MS_REMOUNT | opts.flags,
                Some(&data),
            )
        }
        r => r,
    };
    match r {
        Ok(()) => {}
        // sysfs and mqueue cannot be mounted fresh in some user/net
        // namespace combinations: bind the host's, as runc does.
        Err(err)
            if err.raw_os_error() == Some(libc::EPERM) && (typ == "sysfs" || typ == "mqueue") =>
        {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            do_mount(
                Some(host),
                &target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(e(format_args!("mounting {typ} (and binding {host})")))?;
            let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
            remount_bind(&fd_path(top.as_fd()), opts.flags).map_err(e("remount"))?;
        }
        Err(err) => return Err(format!("mount {typ}: {err}")),
    }
    if let (Some(label), super::lsm::MountLabel::FileLabel) = (
        p.mount_label,
        super::lsm::mount_label_kind(typ, m.options().as_deref().unwrap_or(&[])),
    ) {
        let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
        super::lsm::set_file_label(Path::new(&fd_path(top.as_fd())), label)
            .map_err(|e| e.to_string())?;
    }
    Ok(dest_fd)
}

/// The mount's propagation options and recursive attributes.
fn set_propagation(root: BorrowedFd, dest: &Path, opts: &MountOpts) -> R<()> {
    if !opts.propagation.is_empty() || opts.rec_set != 0 || opts.rec_clear != 0 {
        let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
        for prop in &opts.propagation {
            do_mount(None, &fd_path(top.as_fd()), None, *prop, None)
                .map_err(e("setting propagation"))?;
        }
        if opts.rec_set != 0 || opts.rec_clear != 0 {
            mount_setattr(top.as_fd(), opts.rec_set, opts.rec_clear, None)
                .map_err(e("recursive mount attributes (mount_setattr)"))?;
        }
    }
    Ok(())
}

/// `cgroup` mounts: the container's own cgroup directories, bound from the
/// host (a tmpfs with one directory per v1 hierarchy; cgroup2 directly).
fn mount_cgroup(root: BorrowedFd, dest: &Path, opts: &MountOpts, p: &RootfsPlan) -> R<()> {
    let flags = opts.flags & !(libc::MS_BIND | libc::MS_REC);
    let dest_fd = fs::mkdir_all(root, dest).map_err(e("creating destination"))?;
    let only_v2 = p.cgroups.len() == 1 && p.cgroups[0].version == 2;
    if only_v2 || p.cgroups.is_empty() {
        let target = fd_path(dest_fd.as_fd());
        let r = if p.cgroupns || p.cgroups.is_empty() {
            do_mount(Some("cgroup2"), &target, Some("cgroup2"), flags, None)
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        };
        if r.is_err() {
            if let Some(h) = p.cgroups.first() {
                let src = h.path.to_str().ok_or("cgroup path is not UTF-8")?;
                do_mount(Some(src), &target, None, libc::MS_BIND | libc::MS_REC, None)
                    .map_err(e("binding cgroup2"))?;
                let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
                remount_bind(&fd_path(top.as_fd()), flags).map_err(e("remount cgroup2"))?;
            } else {
                r.map_err(e("mounting cgroup2"))?;
            }
        }
        return Ok(());
    }
    do_mount(
        Some("tmpfs"),
        &fd_path(dest_fd.as_fd()),
        Some("tmpfs"),
        flags & !libc::MS_RDONLY,
        Some(&super::lsm::format_mount_label(
            "mode=755",
            p.mount_label.unwrap_or(""),
        )),
    )
    .map_err(e("mounting cgroup tmpfs"))?;
    // The tmpfs is new and no container process exists yet: nothing in it
    // can be a symlink, so its entries are made and opened relative to it.
    let tmpfs = fs::open_in_root(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(e("reopening cgroup tmpfs"))?;
    let at = |name: &str, dir: bool| -> io::Result<OwnedFd> {
        let mut fl = OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        if dir {
            fl |= OFlag::O_DIRECTORY;
        }
        nix::fcntl::openat(tmpfs.as_fd(), name, fl, nix::sys::stat::Mode::empty())
            .map_err(io::Error::from)
    };
    for h in p.cgroups {
        let name = if h.version == 2 {
            "unified".to_string()
        } else {
            h.controllers.trim_start_matches("name=").to_string()
        };
        fs::mkdir_in(tmpfs.as_fd(), name.as_ref())
            .map_err(e(format_args!("creating {}", dest.join(&name).display())))?;
        let sub_fd = at(&name, true).map_err(e(format_args!("opening cgroup dir {name}")))?;
        let src = h.path.to_str().ok_or("cgroup path is not UTF-8")?;
        do_mount(
            Some(src),
            &fd_path(sub_fd.as_fd()),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(e(format_args!("binding cgroup {name}")))?;
        let top = at(&name, false).map_err(e("reopening"))?;
        remount_bind(
            &fd_path(top.as_fd()),
            flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )
        .map_err(e(format_args!("remount cgroup {name}")))?;
        // Combined controllers (cpu,cpuacct) get a symlink per controller.
        if h.controllers.contains(',') {
            for c in h.controllers.split(',') {
                let _ = symlinkat(&name, tmpfs.as_fd(), c);
            }
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let top = fs::open_in_root(root, dest, OFlag::O_PATH).map_err(e("reopening"))?;
        remount_bind(&fd_path(top.as_fd()), flags).map_err(e("remount cgroup tmpfs read-only"))?;
    }
    Ok(())
}

pub(super) fn symlinkat(target: &str, dir: BorrowedFd, name: &str) -> io::Result<()> {
    let t = CString::new(target)?;
    let n = CString::new(name)?;
    // SAFETY: symlinkat with NUL-terminated strings and a valid dir fd.
    let rc = unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the rootfs the process's root: pivot_root, or MS_MOVE + chroot.
pub fn enter(rootfs: &Path, no_pivot: bool, host_mntns: bool) -> R<()> {
    nix::unistd::chdir(rootfs).map_err(e("chdir to rootfs"))?;
    if host_mntns {
        // The host's mount namespace: neither pivot_root nor MS_MOVE.
        nix::unistd::chroot(".").map_err(e("chroot"))?;
    } else if no_pivot {
        do_mount(Some("."), "/", None, libc::MS_MOVE, None).map_err(e("moving rootfs to /"))?;
        nix::unistd::chroot(".").map_err(e("chroot"))?;
    } else {
        let old = nix::fcntl::open(
            "/",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(e("opening old root"))?;
        nix::unistd::pivot_root(".", ".").map_err(e("pivot_root"))?;
        nix::unistd::fchdir(old.as_fd()).map_err(e("fchdir"))?;
        do_mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(e("making old root rslave"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(e("unmounting old root"))?;
    }
    nix::unistd::chdir("/").map_err(e("chdir /"))?;
    Ok(())
}

/// proc and sysfs go on a directory, never through a symlink or onto a
/// file (an old attack: a container image whose /proc is a symlink); the
/// words are runc's.
fn refuse_non_directory(root: BorrowedFd, dest: &Path, typ: &str) -> R<()> {
    let fd = match fs::open_in_root(root, dest, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(err) => return Err(format!("destination: {err}")),
    };
    if fs::is_dir(fd.as_fd()) {
        return Ok(());
    }
    Err(format!(
        "filesystem \"{typ}\" must be mounted on ordinary directory"
    ))
}

/// After entering the root: masked paths, read-only paths, propagation of
/// `/` and a read-only root.
pub fn finish(
    masked: &[String],
    readonly: &[String],
    propagation: Option<&str>,
    root_ro: bool,
    mount_label: Option<&str>,
) -> R<()> {
    let root = fs::open_path(Path::new("/")).map_err(e("opening /"))?;
    for p in masked {
        let fd = match fs::open_in_root(root.as_fd(), Path::new(p), OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(format!("masking {p}: {err}")),
        };
        let target = fd_path(fd.as_fd());
        // A directory gets an empty read-only tmpfs that can be listed (runc
        // does the same), a file /dev/null.
        let r = if fs::is_dir(fd.as_fd()) {
            do_mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                libc::MS_RDONLY,
                Some(&super::lsm::format_mount_label(
                    "mode=555",
                    mount_label.unwrap_or(""),
                )),
            )
        } else {
            do_mount(Some("/dev/null"), &target, None, libc::MS_BIND, None)
        };
        r.map_err(e(format_args!("masking {p}")))?;
    }
    for p in readonly {
        let fd = match fs::open_in_root(root.as_fd(), Path::new(p), OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(err) => return Err(format!("read-only path {p}: {err}")),
        };
        let target = fd_path(fd.as_fd());
        do_mount(
            Some(&target),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(e(format_args!("read-only path {p}")))?;
        let top =
            fs::open_in_root(root.as_fd(), Path::new(p), OFlag::O_PATH).map_err(e("reopening"))?;
        remount_bind(&fd_path(top.as_fd()), libc::MS_RDONLY | libc::MS_REC)
            .map_err(e(format_args!("read-only path {p}")))?;
    }
    let prop = match propagation {
        Some("shared") | Some("rshared") => Some(libc::MS_SHARED | libc::MS_REC),
        Some("slave") | Some("rslave") => Some(libc::MS_SLAVE | libc::MS_REC),
        Some("private") | Some("rprivate") => Some(libc::MS_PRIVATE | libc::MS_REC),
        Some("unbindable") | Some("runbindable") => Some(libc::MS_UNBINDABLE | libc::MS_REC),
        _ => None,
    };
    if let Some(p) = prop {
        do_mount(None, "/", None, p, None).map_err(e("rootfsPropagation"))?;
    }
    if root_ro {
        remount_bind("/", libc::MS_RDONLY).map_err(e("making root read-only"))?;
    }
    Ok(())
}

/// Copies the tree under `from` into `to` (files, directories, symlinks,
/// device nodes; modes and owners kept), for `tmpcopyup`. Works on fds only,
/// never following symlinks.
fn copy_tree(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    use nix::sys::stat::{fstatat, FileStat};
    let dir = nix::dir::Dir::from_fd(from.try_clone_to_owned()?).map_err(io::Error::from)?;
    let raw_to = to.as_raw_fd();
    let mut names = Vec::new();
    for ent in dir {
        let ent = ent.map_err(io::Error::from)?;
        let name = ent.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    for name in names {
        let st: FileStat = fstatat(
            from,
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
        let kind = st.st_mode & libc::S_IFMT;
        let n = name.as_ptr();
        // SAFETY: *at syscalls on valid dir fds with a NUL-terminated
        // single-component name.
        unsafe {
            match kind {
                libc::S_IFDIR => {
                    if libc::mkdirat(raw_to, n, st.st_mode & 0o7777) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let sub_from = nix::fcntl::openat(
                        from,
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(io::Error::from)?;
                    let sub_to = nix::fcntl::openat(
                        to,
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(io::Error::from)?;
                    copy_tree(sub_from.as_fd(), sub_to.as_fd())?;
                }
                libc::S_IFREG => {
                    let src = nix::fcntl::openat(
                        from,
                        name.as_c_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(io::Error::from)?;
                    let dst = nix::fcntl::openat(
                        to,
                        name.as_c_str(),
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o7777),
                    )
                    .map_err(io::Error::from)?;
                    std::io::copy(&mut std::fs::File::from(src), &mut std::fs::File::from(dst))?;
                }
                libc::S_IFLNK => {
                    let target =
                        nix::fcntl::readlinkat(from, name.as_c_str()).map_err(io::Error::from)?;
                    let t = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                        target.as_os_str(),
                    ))?;
                    if libc::symlinkat(t.as_ptr(), raw_to, n) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                _ => {
                    if libc::mknodat(raw_to, n, st.st_mode, st.st_rdev) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            if libc::fchownat(raw_to, n, st.st_uid, st.st_gid, libc::AT_SYMLINK_NOFOLLOW) != 0 {
                return Err(io::Error::last_os_error());
            }
            if kind != libc::S_IFLNK && libc::fchmodat(raw_to, n, st.st_mode & 0o7777, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

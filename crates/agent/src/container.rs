//! Minimal container setup inside the guest, until `skiff-runtime` is usable here.
//!
//! [`spawn`] forks a process that enters (or creates) the container's mount,
//! UTS and IPC namespaces, mounts the spec's mounts under the rootfs, moves
//! the rootfs onto `/` and chroots (the initramfs root cannot be
//! `pivot_root`ed, the same reason runc has `--no-pivot`), sets hostname,
//! rlimits, user and cwd, reports "ready" and blocks until the agent releases
//! it, then execs the program with the spec's environment.
//!
//! Everything the child does between `fork` and `execve` is a raw syscall on
//! memory prepared before the fork (the agent is multi-threaded). The whole
//! module is one function boundary so it can be swapped for
//! `skiff_runtime::create` without touching the protocol side.

use serde_json::Value;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What the process of a container runs (the parts of an OCI `process` we honour).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv.
    pub args: Vec<String>,
    /// KEY=VALUE pairs.
    pub env: Vec<String>,
    /// Working directory inside the rootfs.
    pub cwd: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// Allocate a terminal.
    pub terminal: bool,
    /// (resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Set no_new_privs.
    pub no_new_privileges: bool,
}

/// One mount of the spec.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Destination inside the rootfs.
    pub destination: String,
    /// Filesystem type.
    pub fstype: String,
    /// Source.
    pub source: String,
    /// MS_* flags.
    pub flags: libc::c_ulong,
    /// Remaining options joined with ','.
    pub data: String,
}

/// The container-wide part of the spec.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Absolute path of the rootfs in the guest.
    pub rootfs: String,
    /// Hostname to set, if any.
    pub hostname: Option<String>,
    /// Mounts, in spec order.
    pub mounts: Vec<MountSpec>,
    /// Remount the rootfs read-only.
    pub readonly: bool,
}

fn bad(field: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("spec field {field}: {why}"),
    )
}

fn strings(v: &Value, field: &str) -> io::Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(field, "expected strings"))
            })
            .collect(),
        _ => Err(bad(field, "expected an array")),
    }
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Parses an OCI `process` object.
pub fn parse_process(p: &Value) -> io::Result<ProcessSpec> {
    let args = strings(&p["args"], "process.args")?;
    if args.is_empty() {
        return Err(bad("process.args", "must not be empty"));
    }
    let user = &p["user"];
    let mut rlimits = Vec::new();
    if let Value::Array(a) = &p["rlimits"] {
        for r in a {
            let t = r["type"].as_str().unwrap_or_default();
            let res = rlimit_resource(t).ok_or_else(|| bad("process.rlimits.type", t))?;
            rlimits.push((
                res,
                r["soft"].as_u64().unwrap_or(0),
                r["hard"].as_u64().unwrap_or(0),
            ));
        }
    }
    Ok(ProcessSpec {
        args,
        env: strings(&p["env"], "process.env")?,
        cwd: p["cwd"].as_str().unwrap_or("/").to_owned(),
        uid: user["uid"].as_u64().unwrap_or(0) as u32,
        gid: user["gid"].as_u64().unwrap_or(0) as u32,
        additional_gids: match &user["additionalGids"] {
            Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_u64())
                .map(|g| g as u32)
                .collect(),
            _ => Vec::new(),
        },
        terminal: p["terminal"].as_bool().unwrap_or(false),
        rlimits,
        no_new_privileges: p["noNewPrivileges"].as_bool().unwrap_or(false),
    })
}

fn mount_flags(options: &[String]) -> (libc::c_ulong, String) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "noatime" => flags |= libc::MS_NOATIME,
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {}
            other => data.push(other.to_owned()),
        }
    }
    (flags, data.join(","))
}

/// Parses the container-wide part of a spec; `rootfs` is where the agent mounted the root.
pub fn parse_container(spec: &Value, rootfs: &str) -> io::Result<ContainerSpec> {
    let mut mounts = Vec::new();
    if let Value::Array(a) = &spec["mounts"] {
        for m in a {
            let destination = m["destination"]
                .as_str()
                .ok_or_else(|| bad("mounts.destination", "missing"))?
                .to_owned();
            let (flags, data) = mount_flags(&strings(&m["options"], "mounts.options")?);
            mounts.push(MountSpec {
                destination,
                fstype: m["type"].as_str().unwrap_or("").to_owned(),
                source: m["source"].as_str().unwrap_or("").to_owned(),
                flags,
                data,
            });
        }
    }
    Ok(ContainerSpec {
        rootfs: rootfs.to_owned(),
        hostname: spec["hostname"].as_str().map(str::to_owned),
        mounts,
        readonly: spec["root"]["readonly"].as_bool().unwrap_or(false),
    })
}

/// A forked container process waiting for [`Pending::release`].
pub struct Pending {
    /// Its pid in the guest.
    pub pid: i32,
    /// Write end of its stdin (the pty master when it has a terminal).
    pub stdin: Option<File>,
    /// Read end of stdout (the pty master when it has a terminal).
    pub stdout: Option<File>,
    /// Read end of stderr (none with a terminal).
    pub stderr: Option<File>,
    start: Option<File>,
    sync: Option<File>,
}

impl Pending {
    /// A process that is already running (nothing to release).
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub fn started(pid: i32, stdin: File, stdout: File, stderr: File) -> Self {
        Pending {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
            start: None,
            sync: None,
        }
    }

    /// A process already running whose stdio is the pty `master` (the
    /// runtime's console-socket path).
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub fn terminal(pid: i32, master: File) -> io::Result<Self> {
        Ok(Pending {
            pid,
            stdin: Some(master.try_clone()?),
            stdout: Some(master),
            stderr: None,
            start: None,
            sync: None,
        })
    }

    /// Lets the process exec; returns the exec error, if any.
    pub fn release(self) -> io::Result<()> {
        let Pending { start, sync, .. } = self;
        drop(start); // EOF on the start pipe releases the child
        match sync {
            Some(mut sync) => read_child_report(&mut sync, true),
            None => Ok(()),
        }
    }
}

fn cstr(s: &str, what: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| bad(what, "contains NUL"))
}

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array; pipe2 fills it on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { Ok((File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))) }
}

/// Steps of the child, reported with the errno on failure.
const STEPS: &[&str] = &[
    "setns/unshare",
    "make / private",
    "mount",
    "move rootfs to /",
    "chroot",
    "sethostname",
    "setrlimit",
    "setgroups/setgid/setuid",
    "chdir to process.cwd",
    "execve process.args[0]",
    "wait for start",
    "terminal setup",
    "remount rootfs read-only",
];

/// Reports a failed step with errno to the agent and exits (child side only).
///
/// # Safety
/// Only async-signal-safe calls; to be called in the forked child.
unsafe fn child_fail(sync_fd: RawFd, step: u8) -> ! {
    // SAFETY: errno location is valid for the calling thread; write/_exit are async-signal-safe.
    unsafe {
        let e = *libc::__errno_location();
        let mut b = [b'E', 0, 0, 0, 0, step];
        b[1..5].copy_from_slice(&e.to_ne_bytes());
        libc::write(sync_fd, b.as_ptr().cast(), b.len());
        libc::_exit(127);
    }
}

fn read_child_report(sync: &mut File, after_start: bool) -> io::Result<()> {
    let mut b = [0u8; 6];
    let mut n = 0;
    while n < b.len() {
        match sync.read(&mut b[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if b[0] == b'R' && !after_start {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return if after_start {
            Ok(()) // CLOEXEC pipe closed by a successful execve
        } else {
            Err(io::Error::other("container process died during setup"))
        };
    }
    if b[0] == b'E' && n == 6 {
        let errno = i32::from_ne_bytes([b[1], b[2], b[3], b[4]]);
        let step = STEPS.get(b[5] as usize).copied().unwrap_or("?");
        return Err(io::Error::new(
            io::Error::from_raw_os_error(errno).kind(),
            format!("{step}: {}", io::Error::from_raw_os_error(errno)),
        ));
    }
    Err(io::Error::other("garbled report from container process"))
}

struct PreparedMount {
    target: CString,
    source: CString,
    fstype: CString,
    flags: libc::c_ulong,
    data: CString,
    /// Read-only bind mounts need a remount to take effect.
    remount_ro: bool,
    /// Directories to create (in the child) before mounting: the mount point
    /// may lie inside an earlier mount (e.g. /dev/pts on the /dev tmpfs).
    dirs: Vec<CString>,
}

/// Where the new process lives.
pub enum Target<'a> {
    /// A new container: new namespaces, mounts, root switch.
    #[cfg_attr(feature = "runtime", allow(dead_code))]
    Init(&'a ContainerSpec),
    /// Join the namespaces of the container's init process (exec).
    Join(i32),
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Forks the process and leaves it blocked before `execve` (see module docs).
pub fn spawn(target: Target<'_>, p: &ProcessSpec) -> io::Result<Pending> {
    // ---- everything allocated before fork ----
    let argv_c: Vec<CString> = p
        .args
        .iter()
        .map(|a| cstr(a, "process.args"))
        .collect::<io::Result<_>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env_c: Vec<CString> = p
        .env
        .iter()
        .map(|e| cstr(e, "process.env"))
        .collect::<io::Result<_>>()?;
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let path_var = p
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let prog = &p.args[0];
    let candidates: Vec<CString> = if prog.contains('/') {
        vec![cstr(prog, "process.args")?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(&format!("{d}/{prog}"), "process.args"))
            .collect::<io::Result<_>>()?
    };
    let cwd = cstr(&p.cwd, "process.cwd")?;
    let mut gids: Vec<libc::gid_t> = p.additional_gids.clone();
    if gids.is_empty() {
        gids.push(p.gid);
    }

    let mut mounts = Vec::new();
    let mut rootfs_c = None;
    let mut hostname = None;
    let mut ns_fds: Vec<OwnedFd> = Vec::new();
    let mut readonly = false;
    match &target {
        Target::Init(c) => {
            rootfs_c = Some(cstr(&c.rootfs, "root.path")?);
            hostname = c.hostname.clone();
            readonly = c.readonly;
            for m in &c.mounts {
                let target_path = format!("{}/{}", c.rootfs, m.destination.trim_start_matches('/'));
                // Create mount points now (the rootfs is ours to prepare; the
                // child only mounts).
                let is_file_bind = m.flags & libc::MS_BIND != 0
                    && std::fs::metadata(&m.source)
                        .map(|md| !md.is_dir())
                        .unwrap_or(false);
                if is_file_bind {
                    if let Some(parent) = std::path::Path::new(&target_path).parent() {
                        let _ = std::fs::create_dir_all(parent);
                    }
                    let _ = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&target_path);
                } else {
                    let _ = std::fs::create_dir_all(&target_path);
                }
                if m.flags & libc::MS_BIND != 0 && !std::path::Path::new(&m.source).exists() {
                    eprintln!(
                        "skiff-agent: skipping bind mount {}: source {} not shared into the VM",
                        m.destination, m.source
                    );
                    continue;
                }
                let mut dirs = Vec::new();
                let mut acc = c.rootfs.trim_end_matches('/').to_string();
                let comps: Vec<&str> = m.destination.split('/').filter(|s| !s.is_empty()).collect();
                let keep = if is_file_bind {
                    comps.len().saturating_sub(1)
                } else {
                    comps.len()
                };
                for comp in &comps[..keep] {
                    acc.push('/');
                    acc.push_str(comp);
                    dirs.push(cstr(&acc, "mounts.destination")?);
                }
                // The guest mounts cgroup2 only: a `cgroup` mount means the
                // container's cgroup filesystem.
                let (fstype, source) = if m.fstype == "cgroup" {
                    ("cgroup2".to_string(), "cgroup2".to_string())
                } else {
                    (m.fstype.clone(), m.source.clone())
                };
                mounts.push(PreparedMount {
                    dirs,
                    target: cstr(&target_path, "mounts.destination")?,
                    source: cstr(
                        if source.is_empty() { &fstype } else { &source },
                        "mounts.source",
                    )?,
                    fstype: cstr(&fstype, "mounts.type")?,
                    flags: m.flags,
                    data: cstr(&m.data, "mounts.options")?,
                    remount_ro: m.flags & libc::MS_BIND != 0 && m.flags & libc::MS_RDONLY != 0,
                });
            }
        }
        Target::Join(pid) => {
            for ns in ["ipc", "uts", "mnt"] {
                let f = File::open(format!("/proc/{pid}/ns/{ns}"))?;
                ns_fds.push(f.into());
            }
        }
    }
    let dev_base = rootfs_c
        .as_ref()
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dev_dir = cstr(&format!("{dev_base}/dev"), "")?;
    let dev_nodes: Vec<(CString, u32, u32)> = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(n, a, b)| Ok((cstr(&format!("{dev_base}/dev/{n}"), "")?, *a, *b)))
    .collect::<io::Result<_>>()?;
    let dev_links: Vec<(CString, CString)> = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ]
    .iter()
    .map(|(l, t)| Ok((cstr(&format!("{dev_base}/dev/{l}"), "")?, cstr(t, "")?)))
    .collect::<io::Result<_>>()?;
    let hostname_c = hostname.map(|h| cstr(&h, "hostname")).transpose()?;
    let dot = cstr(".", "")?;
    let slash = cstr("/", "")?;

    let (sync_r, sync_w) = pipe()?;
    let (start_r, start_w) = pipe()?;
    let (stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w, pty_slave);
    if p.terminal {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        // SAFETY: out-pointers are valid; name/termios/winsize may be null.
        if unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created by openpty.
        let (m, s) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
        // SAFETY: fcntl on fds we own.
        unsafe {
            libc::fcntl(m.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(s.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        }
        stdin_w = Some(m.try_clone()?);
        stdout_r = m;
        stderr_r = None;
        stdin_r = None;
        stdout_w = None;
        stderr_w = None;
        pty_slave = Some(s);
    } else {
        let (a, b) = pipe()?;
        let (c, d) = pipe()?;
        let (e, f) = pipe()?;
        stdin_r = Some(a);
        stdin_w = Some(b);
        stdout_r = c;
        stdout_w = Some(d);
        stderr_r = Some(e);
        stderr_w = Some(f);
        pty_slave = None;
    }
    let fd = |f: &Option<File>| f.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let (in_fd, out_fd, err_fd, slave_fd) =
        (fd(&stdin_r), fd(&stdout_w), fd(&stderr_w), fd(&pty_slave));
    let (sync_fd, start_fd) = (sync_w.as_raw_fd(), start_r.as_raw_fd());
    // The child must not hold the parent's ends, or it would never see EOF on `start`.
    let (start_w_fd, sync_r_fd) = (start_w.as_raw_fd(), sync_r.as_raw_fd());
    let ns_raw: Vec<RawFd> = ns_fds.iter().map(|f| f.as_raw_fd()).collect();

    // SAFETY: fork in a multi-threaded process: the child below only makes
    // raw syscalls on memory prepared above, then execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: child side; only async-signal-safe calls until execve/_exit.
        unsafe {
            let fail = |step: u8| child_fail(sync_fd, step);
            libc::close(start_w_fd);
            libc::close(sync_r_fd);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            libc::setsid();
            if slave_fd >= 0 {
                if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    fail(11);
                }
                for t in 0..3 {
                    libc::dup2(slave_fd, t);
                }
            } else {
                libc::dup2(in_fd, 0);
                libc::dup2(out_fd, 1);
                libc::dup2(err_fd, 2);
            }
            if let Some(root) = &rootfs_c {
                if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) < 0 {
                    fail(0);
                }
                if libc::mount(
                    std::ptr::null(),
                    slash.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) < 0
                {
                    fail(1);
                }
                for m in &mounts {
                    for d in &m.dirs {
                        // EEXIST is the common case; a real failure shows
                        // up as the mount's ENOENT below.
                        libc::mkdir(d.as_ptr(), 0o755);
                    }
                    let is_dev = m.target.as_bytes() == dev_dir.as_bytes();
                    let data = if m.data.as_bytes().is_empty() {
                        std::ptr::null()
                    } else {
                        m.data.as_ptr().cast()
                    };
                    if libc::mount(
                        m.source.as_ptr(),
                        m.target.as_ptr(),
                        m.fstype.as_ptr(),
                        m.flags,
                        data,
                    ) < 0
                    {
                        fail(2);
                    }
                    if m.remount_ro
                        && libc::mount(
                            std::ptr::null(),
                            m.target.as_ptr(),
                            std::ptr::null(),
                            m.flags | libc::MS_REMOUNT,
                            std::ptr::null(),
                        ) < 0
                    {
                        fail(2);
                    }
                    if is_dev {
                        for (path, major, minor) in &dev_nodes {
                            libc::mknod(
                                path.as_ptr(),
                                libc::S_IFCHR | 0o666,
                                libc::makedev(*major, *minor),
                            );
                            libc::chmod(path.as_ptr(), 0o666);
                        }
                        for (link, to) in &dev_links {
                            libc::symlink(to.as_ptr(), link.as_ptr());
                        }
                    }
                }
                if libc::chdir(root.as_ptr()) < 0 {
                    fail(3);
                }
                if libc::mount(
                    root.as_ptr(),
                    slash.as_ptr(),
                    std::ptr::null(),
                    libc::MS_MOVE,
                    std::ptr::null(),
                ) < 0
                {
                    fail(3);
                }
                if libc::chroot(dot.as_ptr()) < 0 {
                    fail(4);
                }
                if libc::chdir(slash.as_ptr()) < 0 {
                    fail(4);
                }
                if readonly
                    && libc::mount(
                        std::ptr::null(),
                        slash.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ) < 0
                {
                    fail(12);
                }
                if let Some(h) = &hostname_c {
                    if libc::sethostname(h.as_ptr(), h.as_bytes().len()) < 0 {
                        fail(5);
                    }
                }
            } else {
                for &f in &ns_raw {
                    if libc::setns(f, 0) < 0 {
                        fail(0);
                    }
                }
            }
            for &(res, soft, hard) in &p.rlimits {
                let rl = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(res as _, &rl) < 0 {
                    fail(6);
                }
            }
            if libc::setgroups(gids.len(), gids.as_ptr()) < 0
                || libc::setgid(p.gid) < 0
                || libc::setuid(p.uid) < 0
            {
                fail(7);
            }
            if libc::chdir(cwd.as_ptr()) < 0 {
                fail(8);
            }
            if p.no_new_privileges {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            }
            libc::write(sync_fd, b"R".as_ptr().cast(), 1);
            let mut b = 0u8;
            loop {
                let r = libc::read(start_fd, (&mut b as *mut u8).cast(), 1);
                if r >= 0 || *libc::__errno_location() != libc::EINTR {
                    break;
                }
            }
            let mut last = libc::ENOENT;
            for c in &candidates {
                libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                let e = *libc::__errno_location();
                if e != libc::ENOENT {
                    last = e;
                }
            }
            *libc::__errno_location() = last;
            fail(9);
        }
    }
    // ---- parent ----
    drop((sync_w, start_r, stdin_r, stdout_w, stderr_w, pty_slave));
    let mut sync_r = sync_r;
    read_child_report(&mut sync_r, false)?;
    Ok(Pending {
        pid,
        stdin: stdin_w,
        stdout: Some(stdout_r),
        stderr: stderr_r,
        start: Some(start_w),
        sync: Some(sync_r),
    })
}

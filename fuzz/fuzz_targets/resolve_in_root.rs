//! Fuzz target `resolve_in_root`: the in-rootfs path resolver of
//! `skiff_runtime::linux::fs` (`open_in_root`, `mkdir_all`, `create_file`).
//!
//! The input is a small program. Its first instructions build a tree in a
//! scratch rootfs: directories, files, and symlinks whose targets are
//! absolute, relative, full of `..`, loops, host paths of the scratch area
//! itself, or `/proc` magic links. The rest resolve, create directories in and
//! create files at random paths through the resolver.
//!
//! Properties checked after every call:
//! - a returned fd's real path (`readlink /proc/self/fd/N`) is the rootfs or
//!   below it, never a host path;
//! - `mkdir_all` returns a directory, and `mkdir_all`/`create_file` return
//!   the very object that `open_in_root` of the same path resolves to after
//!   the call;
//! - nothing changes outside the rootfs: the scratch area holds only `root`
//!   and `outside`, and `outside` keeps exactly its canary file and directory.
//!
//! Safety of the host while fuzzing: as root the process first enters a
//! private mount namespace and puts the scratch area on its own tmpfs, with a
//! procfs mounted at `root/proc` (so magic links exist inside the rootfs). The
//! tree is built with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` parents and
//! single-component `*at` calls, so building never follows what it built.
//! Names created through the resolver all start with `fz`, so a leak onto the
//! host would be obvious.
#![no_main]

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use skiff_runtime::linux::fs;

struct Scratch {
    /// The scratch area (tmpfs when root).
    top: PathBuf,
    /// `top/root`: the rootfs under test.
    root: PathBuf,
    /// Whether `root/proc` is a procfs mount to keep across inputs.
    proc_mounted: bool,
}

/// Names the tree is built from (all real entries start with `fz`).
const NAMES: [&str; 5] = ["fza", "fzb", "fzc", "fzd", "fze"];
/// Components of resolved paths and symlink targets.
const COMPONENTS: [&str; 16] = [
    "fza",
    "fzb",
    "fzc",
    "fzd",
    "..",
    ".",
    "",
    "proc",
    "self",
    "root",
    "cwd",
    "fd",
    "3",
    "outside",
    "thread-self",
    "1",
];

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let top = std::env::temp_dir().join(format!("skiff-fuzz-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&top).expect("scratch dir");
        // SAFETY: geteuid cannot fail.
        let root_user = unsafe { libc::geteuid() } == 0;
        let mut proc_mounted = false;
        if root_user {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount ns");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / private");
            mount(
                Some("tmpfs"),
                &top,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=64m"),
            )
            .expect("scratch tmpfs");
        }
        let root = top.join("root");
        std::fs::create_dir_all(root.join("proc")).expect("root");
        std::fs::create_dir_all(top.join("outside/sub")).expect("outside");
        std::fs::write(top.join("outside/canary"), b"host").expect("canary");
        if root_user {
            use nix::mount::{mount, MsFlags};
            proc_mounted = mount(
                Some("proc"),
                &root.join("proc"),
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .is_ok();
        }
        Scratch {
            top,
            root,
            proc_mounted,
        }
    })
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }
    fn pick<'s>(&mut self, list: &[&'s str]) -> &'s str {
        list[self.byte().unwrap_or(0) as usize % list.len()]
    }
    /// A path of up to 7 components, absolute or relative.
    fn path(&mut self, s: &Scratch) -> String {
        let head = self.byte().unwrap_or(0);
        let n = (head >> 1) % 8;
        let mut out = String::new();
        if head & 1 == 1 {
            out.push('/');
        }
        match head >> 4 {
            // Host paths of the scratch area, absolute and from the rootfs.
            13 => return format!("{}/outside/{}", s.top.display(), self.pick(&COMPONENTS)),
            14 => return s.root.display().to_string(),
            15 => out.push_str("../../../../../../.."),
            _ => {}
        }
        for i in 0..n {
            if i > 0 || (!out.is_empty() && !out.ends_with('/')) {
                out.push('/');
            }
            out.push_str(self.pick(&COMPONENTS));
        }
        out
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in generated names")
}

/// Opens a directory of the tree built so far, never following a symlink
/// and never leaving the rootfs.
fn open_built_dir(root: BorrowedFd, rel: &Path) -> Option<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let p = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(root, p, how).ok()
}

/// The real path of an fd, as the kernel reports it.
fn real_path(fd: BorrowedFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink of own fd")
}

fn assert_inside(s: &Scratch, fd: BorrowedFd, what: &str, path: &str) {
    let real = real_path(fd);
    assert!(
        real == s.root || real.starts_with(&s.root),
        "{what}({path:?}) escaped the rootfs {}: fd is {}",
        s.root.display(),
        real.display()
    );
}

fn is_dir(fd: BorrowedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn ino(fd: BorrowedFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd).expect("fstat");
    (st.st_dev, st.st_ino)
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Empties the rootfs, keeping the procfs mount point.
fn reset(s: &Scratch) {
    for e in std::fs::read_dir(&s.root).expect("read root") {
        let e = e.expect("entry");
        if e.file_name() == OsStr::new("proc") {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.expect("cleaning the rootfs");
    }
    if !s.proc_mounted {
        // Without root, `proc` is a plain directory: keep it empty.
        let _ = std::fs::remove_dir_all(s.root.join("proc"));
        let _ = std::fs::create_dir(s.root.join("proc"));
    }
}

fn check_outside_unchanged(s: &Scratch) {
    assert_eq!(
        list(&s.top),
        ["outside", "root"],
        "something was created next to the rootfs"
    );
    assert_eq!(
        list(&s.top.join("outside")),
        ["canary", "sub"],
        "outside was changed"
    );
    assert!(
        list(&s.top.join("outside/sub")).is_empty(),
        "outside/sub was changed"
    );
    assert_eq!(
        std::fs::read(s.top.join("outside/canary")).expect("canary"),
        b"host"
    );
    // Names the resolver creates never appear on the host.
    for dir in [
        Path::new("/"),
        &std::env::temp_dir(),
        s.top.parent().unwrap_or(Path::new("/")),
    ] {
        for n in NAMES {
            assert!(
                !dir.join(n).exists(),
                "{} was created on the host",
                dir.join(n).display()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    reset(s);
    let root = fs::open_in_root_host(&s.root).expect("open rootfs");
    let mut input = Input { data };
    // Directories of the built tree (relative to the root), root first.
    let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
    let n_build = input.byte().unwrap_or(0) % 24;
    for _ in 0..n_build {
        let op = input.byte().unwrap_or(0);
        let parent = dirs[input.byte().unwrap_or(0) as usize % dirs.len()].clone();
        let name = input.pick(&NAMES);
        let Some(dir) = open_built_dir(root.as_fd(), &parent) else {
            continue;
        };
        let cname = cstr(name);
        match op % 4 {
            0 => {
                // SAFETY: mkdirat on a valid dir fd with a one-component name.
                if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o755) } == 0 {
                    dirs.push(parent.join(name));
                }
            }
            1 | 2 => {
                let target = match input.byte().unwrap_or(0) % 10 {
                    0 => "/".to_string(),
                    1 => "..".to_string(),
                    2 => format!("{}/outside", s.top.display()),
                    3 => "/proc/self/root".to_string(),
                    4 => "/proc/self/cwd/..".to_string(),
                    5 => format!("/proc/self/fd/{}", root.as_raw_fd()),
                    6 => name.to_string(), // a loop
                    _ => input.path(s),
                };
                let ct = cstr(&target);
                // SAFETY: symlinkat with NUL-terminated strings on a valid dir fd.
                unsafe { libc::symlinkat(ct.as_ptr(), dir.as_raw_fd(), cname.as_ptr()) };
            }
            _ => {
                // SAFETY: openat creating a new file (never following), then closed.
                let fd = unsafe {
                    libc::openat(
                        dir.as_raw_fd(),
                        cname.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_WRONLY
                            | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd >= 0 {
                    // SAFETY: closing the fd just opened.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }
    while !input.data.is_empty() {
        let op = input.byte().unwrap_or(0);
        let path = input.path(s);
        let p = Path::new(&path);
        match op % 6 {
            0 | 1 => {
                let flags = [OFlag::O_PATH, OFlag::O_PATH | OFlag::O_DIRECTORY][op as usize % 2];
                if let Ok(fd) = fs::open_in_root(root.as_fd(), p, flags) {
                    assert_inside(s, fd.as_fd(), "open_in_root", &path);
                }
            }
            2 => {
                if let Ok(fd) =
                    fs::open_in_root(root.as_fd(), p, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
                {
                    assert_inside(s, fd.as_fd(), "open_in_root(O_RDONLY)", &path);
                }
            }
            3 | 4 => {
                if let Ok(fd) = fs::mkdir_all(root.as_fd(), p) {
                    assert_inside(s, fd.as_fd(), "mkdir_all", &path);
                    assert!(
                        is_dir(fd.as_fd()),
                        "mkdir_all({path:?}) returned a non-directory"
                    );
                    // The directory made is the one the kernel resolves now.
                    let again =
                        fs::open_in_root(root.as_fd(), p, OFlag::O_PATH | OFlag::O_DIRECTORY)
                            .unwrap_or_else(|e| {
                                panic!("mkdir_all({path:?}) succeeded, reopening fails: {e}")
                            });
                    assert_eq!(
                        ino(fd.as_fd()),
                        ino(again.as_fd()),
                        "mkdir_all({path:?}) returned another directory"
                    );
                }
            }
            _ => {
                if let Ok(fd) = fs::create_file(root.as_fd(), p) {
                    assert_inside(s, fd.as_fd(), "create_file", &path);
                    let again =
                        fs::open_in_root(root.as_fd(), p, OFlag::O_PATH).unwrap_or_else(|e| {
                            panic!("create_file({path:?}) succeeded, reopening fails: {e}")
                        });
                    assert_eq!(
                        ino(fd.as_fd()),
                        ino(again.as_fd()),
                        "create_file({path:?}) returned another object"
                    );
                }
            }
        }
    }
    check_outside_unchanged(s);
});

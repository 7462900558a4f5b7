//! The last step of a container's init: exec the container's program
//! through skiff's exec trampoline (`crates/runtime/dmz/dmz.rs`) held in a
//! sealed memfd, so that no container process ever sees the host's `skiff`
//! binary as `/proc/<pid>/exe` after setup (CVE-2019-5736).
//!
//! The init is a clone of `skiff` (no re-exec), so until its final
//! `execve` its `/proc/self/exe` is the host binary. Exec'ing the
//! container's program directly would let a `#!/proc/self/exe` script (or
//! an ELF whose interpreter is `/proc/self/exe`) run the host binary inside
//! the container, where a container process can open it through
//! `/proc/<pid>/exe` and rewrite it once it is no longer busy. Through the
//! trampoline, `/proc/self/exe` at that moment is the sealed 6 KiB memfd.
//! Cost: one memfd and one extra exec of a 6 KiB static program.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The trampoline, built by `build.rs` (empty when it could not be built).
static DMZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dmz"));

/// A sealed, close-on-exec memfd holding the trampoline, at an fd number
/// `>= min_fd` (so that it never lands among the fds passed to the
/// container). None when there is no trampoline or memfds are unavailable.
pub fn trampoline(min_fd: i32) -> Option<OwnedFd> {
    if DMZ.is_empty() {
        return None;
    }
    let name = c"skiff-dmz";
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps vm.memfd_noexec=1 from sealing it noexec.
    const MFD_EXEC: libc::c_uint = 0x10;
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
    let mut raw = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if raw < 0 {
        // SAFETY: as above, for kernels without MFD_EXEC.
        raw = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a fresh fd we own.
    let mut fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut off = 0;
    while off < DMZ.len() {
        // SAFETY: write from a valid slice to our memfd.
        let n = unsafe { libc::write(fd.as_raw_fd(), DMZ[off..].as_ptr().cast(), DMZ.len() - off) };
        if n <= 0 {
            return None;
        }
        off += n as usize;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our memfd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return None;
    }
    if fd.as_raw_fd() < min_fd {
        // SAFETY: F_DUPFD_CLOEXEC of our fd; the result is checked.
        let hi = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min_fd) };
        if hi < 0 {
            return None;
        }
        // SAFETY: hi is a fresh fd we own; the old one is dropped.
        fd = unsafe { OwnedFd::from_raw_fd(hi) };
    }
    Some(fd)
}

/// Execs `exe` with `argv`/`envp` (NULL-terminated pointer arrays), through
/// the trampoline when there is one. Returns only on failure, with errno
/// set by the last attempt.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of pointers to
/// NUL-terminated strings, valid for the duration of the call.
pub unsafe fn exec(
    trampoline: Option<&OwnedFd>,
    exe: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) {
    if let Some(t) = trampoline {
        // The trampoline's argv: the program's path, then its argv.
        let mut targv = Vec::with_capacity(argv.len() + 1);
        targv.push(exe.as_ptr());
        targv.extend_from_slice(argv);
        // SAFETY: execveat(fd, "", ..., AT_EMPTY_PATH) of our sealed memfd
        // with NULL-terminated arrays that outlive the call.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                t.as_raw_fd(),
                c"".as_ptr(),
                targv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        // A seccomp profile may allow execve but not execveat.
        let path = format!("/proc/self/fd/{}\0", t.as_raw_fd());
        // SAFETY: as above, through the fd's /proc path.
        unsafe { libc::execve(path.as_ptr().cast(), targv.as_ptr(), envp.as_ptr()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        if !matches!(
            errno,
            Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::ENOSYS) | Some(libc::ENOENT)
        ) {
            return;
        }
        // Both blocked (by the config's own seccomp profile or a noexec
        // /proc): exec directly rather than fail the container.
    }
    // SAFETY: the caller's contract.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
}

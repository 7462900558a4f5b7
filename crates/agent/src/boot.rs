//! Boot of the guest: the base mounts, the kernel modules the host put in
//! the initramfs, the channel to the host (virtio-serial port or vsock),
//! the container's rootfs share, and the end of the VM.

use crate::log::{debug, log, monotonic_ms};
use crate::pool;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PORT_NAME: &str = "skiff.0";
const MODULE_DIR: &str = "/lib/modules/skiff";
/// Modules of the vsock channel (Debian's kernel), loaded only when the
/// channel is vsock (`skiff.vsock=<port>` on the command line).
const VSOCK_MODULE_DIR: &str = "/lib/modules/skiff-vsock";
/// Where the container's rootfs is mounted in the guest.
pub const ROOTFS: &str = "/run/skiff/rootfs";
/// The 9p tag of the container's rootfs in a VM restored from a template.
pub const ROOTFS_TAG: &str = "rootfs";
/// Mount options of every 9p share.
pub const NINEP_OPTS: &str = "trans=virtio,version=9p2000.L,msize=512000,cache=mmap";

/// mount(2) of `src` on `target` (created first), with the error naming
/// the file system and the target.
pub fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    // An existing target is fine; a missing one makes mount(2) fail with
    // the error reported below.
    let _ = fs::create_dir_all(target);
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let (src_c, target_c, fstype_c, data_c) = (c(src)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings alive for the call.
    let r = unsafe {
        libc::mount(
            src_c.as_ptr(),
            target_c.as_ptr(),
            fstype_c.as_ptr(),
            flags,
            data_c.as_ptr().cast(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount {fstype} on {target}: {e}"),
        ));
    }
    Ok(())
}

/// The guest's base file systems: `/proc`, `/sys`, `/dev`, `/dev/pts`, the
/// cgroup2 hierarchy and `/run`. A failure is logged, not fatal: what
/// needs a missing one fails later with its own error.
pub fn mount_base() {
    let (nosuid, nodev, noexec) = (libc::MS_NOSUID, libc::MS_NODEV, libc::MS_NOEXEC);
    let mounts: [(&str, &str, &str, libc::c_ulong, &str); 6] = [
        ("proc", "/proc", "proc", nosuid | nodev | noexec, ""),
        ("sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""),
        ("devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            nosuid | noexec,
            "newinstance,ptmxmode=0666,mode=0620",
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid | nodev | noexec,
            "",
        ),
        ("tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"),
    ];
    for (src, target, fstype, flags, data) in mounts {
        if let Err(e) = mount(src, target, fstype, flags, data) {
            debug(&e.to_string());
        }
    }
}

/// Loads the modules of the initramfs's `/lib/modules/skiff` with
/// `finit_module` (file names sort in `modprobe --show-depends` order).
pub fn load_modules() -> io::Result<()> {
    load_modules_from(MODULE_DIR)
}

fn load_modules_from(dir: &str) -> io::Result<()> {
    let mut names: Vec<_> = match fs::read_dir(dir) {
        Ok(d) => d.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    names.sort();
    for path in names {
        let f = File::open(&path)?;
        let empty = CString::default();
        // SAFETY: f is an open module file; params is an empty C string.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), empty.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("finit_module {}: {e}", path.display()),
                ));
            }
        }
        debug(&format!("loaded {}", path.display()));
    }
    Ok(())
}

/// Whether `word` is an argument of the kernel command line.
pub fn cmdline_has(word: &str) -> bool {
    fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|a| a == word)
}

/// The channel to the host: the virtio-serial port `skiff.0`, or with
/// `skiff.vsock=<port>` on the kernel command line the connection the host
/// makes to our AF_VSOCK listener on that port.
pub fn open_port(deadline: Duration) -> io::Result<File> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(port) = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("skiff.vsock="))
    {
        let port = port
            .parse()
            .map_err(|_| io::Error::other(format!("skiff.vsock={port}: not a port")))?;
        return vsock_accept(port);
    }
    let start = Instant::now();
    loop {
        if let Ok(dir) = fs::read_dir("/sys/class/virtio-ports") {
            for e in dir.flatten() {
                let name = fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == PORT_NAME {
                    let dev = format!("/dev/{}", e.file_name().to_string_lossy());
                    if let Ok(f) = OpenOptions::new().read(true).write(true).open(&dev) {
                        return Ok(f);
                    }
                }
            }
        }
        if start.elapsed() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("virtio port {PORT_NAME} not found"),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Loads the vsock modules the host put in [`VSOCK_MODULE_DIR`] (file
/// names sort in dependency order), listens on AF_VSOCK `port` (any CID)
/// and returns the first connection: the host's (kernel vhost-vsock, or
/// vhost-device-vsock forwarding a hybrid `CONNECT`).
fn vsock_accept(port: u32) -> io::Result<File> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, VsockAddr};
    load_modules_from(VSOCK_MODULE_DIR)?;
    let ctx =
        |what: &str, e: nix::Error| io::Error::other(format!("vsock port {port}: {what}: {e}"));
    let l = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ctx("socket", e))?;
    socket::bind(l.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_ANY, port))
        .map_err(|e| ctx("bind", e))?;
    socket::listen(&l, Backlog::new(1).map_err(|e| ctx("backlog", e))?)
        .map_err(|e| ctx("listen", e))?;
    // The host's hybrid vsock channel connects when it sees this on the
    // console (skiff-vm `channel::vsock::LISTENING_MARKER`).
    log(&format!(
        "SKIFF-VSOCK-LISTENING port {port} at {} ms",
        monotonic_ms()
    ));
    let fd = loop {
        match socket::accept4(l.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => break fd,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(ctx("accept", e)),
        }
    };
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The rootfs mount started as soon as the host's hello arrives in a guest
/// restored from a template (whose rootfs is always the 9p share
/// [`ROOTFS_TAG`]): the mount waits for QEMU's 9p server on the host
/// (several round trips), and meanwhile the guest answers the hello and
/// reads the create request.
static PREMOUNT: Mutex<Option<mpsc::Receiver<io::Result<()>>>> = Mutex::new(None);

/// Starts mounting the template's rootfs share in the background.
pub fn premount_rootfs() {
    let (tx, rx) = mpsc::channel();
    *PREMOUNT.lock().unwrap() = Some(rx);
    pool::spawn(move || {
        // The receiver lives in PREMOUNT until create takes it; if it is
        // gone, nobody wants the result.
        let _ = tx.send(mount(ROOTFS_TAG, ROOTFS, "9p", 0, NINEP_OPTS));
    });
}

/// The result of [`premount_rootfs`] (waiting for it), if it was started.
fn premounted() -> Option<io::Result<()>> {
    let rx = PREMOUNT.lock().unwrap().take()?;
    Some(
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("rootfs pre-mount lost"))),
    )
}

/// Mounts the container's rootfs share `tag` (file system `fstype`, 9p by
/// default) on [`ROOTFS`], reusing the pre-mount when it is that share.
pub fn mount_rootfs(tag: &str, fstype: Option<&str>) -> io::Result<()> {
    let kind = fstype.unwrap_or("9p");
    match premounted() {
        Some(Ok(())) if kind == "9p" && tag == ROOTFS_TAG => Ok(()),
        pre => {
            if let Some(Ok(())) = pre {
                // Not the share the host wants after all.
                let target = CString::new(ROOTFS).unwrap_or_default();
                // SAFETY: umount2 of our own mount with a valid path.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
            match kind {
                "virtiofs" => mount(tag, ROOTFS, "virtiofs", 0, ""),
                _ => mount(tag, ROOTFS, "9p", 0, NINEP_OPTS),
            }
        }
    }
}

/// Ends the VM. A reboot, not a power-off: QEMU runs with `-no-reboot`
/// and the kernel with `reboot=t` (triple fault), which works with and
/// without ACPI (a power-off needs ACPI, and the minimal kernel has none).
pub fn power_off() -> ! {
    // SAFETY: sync and reboot(2) take no pointers; we are PID 1 in a VM we own.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

//! Container consoles: a pty created inside the container's devpts, whose
//! master is sent to the caller over `--console-socket` (SCM_RIGHTS, as runc)
//! and whose slave becomes the process's stdio and /dev/console. The
//! helpers live in skiff-sys (the VM shim uses the same ones).

pub use skiff_sys::fdpass::{recv_fd, send_fd};
pub use skiff_sys::pty::{make_stdio, open_pty};

//! skiff's exec trampoline ("dmz"), a tiny static program with no libc.
//!
//! It is NOT part of the skiff-runtime crate: `build.rs` compiles it on its
//! own and the runtime embeds the bytes. The container's init (a clone of
//! the host's `skiff` binary, so its `/proc/self/exe` is that binary) runs
//! this program from a sealed memfd as its last step, and the trampoline
//! `execve`s the container's program. So at the moment the container's
//! program is exec'd, `/proc/self/exe` is the sealed memfd, never the host
//! binary: a program whose interpreter is `/proc/self/exe` (a `#!` line or
//! an ELF PT_INTERP) gets the trampoline, and no container process can ever
//! open the host's `skiff` for writing (CVE-2019-5736). runc closes the
//! same hole by copying its whole binary into a memfd; this copy is 6 KiB.
//!
//! Arguments: `argv[0]` is the program to exec, `argv[1..]` its argv; the
//! environment is passed on as it is. On failure it prints
//! `skiff: exec <path>: <reason>` to stderr and exits 127.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym dmz_main,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x0, sp",
    "bl {main}",
    "brk #0",
    main = sym dmz_main,
);

#[cfg(target_arch = "x86_64")]
unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let r: isize;
    asm!("syscall", inlateout("rax") n as isize => r, in("rdi") a, in("rsi") b, in("rdx") c,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    r
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
    let r: isize;
    asm!("svc 0", in("x8") n, inlateout("x0") a as isize => r, in("x1") b, in("x2") c, options(nostack));
    r
}

#[cfg(target_arch = "x86_64")]
const SYS_WRITE: usize = 1;
#[cfg(target_arch = "x86_64")]
const SYS_EXECVE: usize = 59;
#[cfg(target_arch = "x86_64")]
const SYS_EXIT_GROUP: usize = 231;
#[cfg(target_arch = "aarch64")]
const SYS_WRITE: usize = 64;
#[cfg(target_arch = "aarch64")]
const SYS_EXECVE: usize = 221;
#[cfg(target_arch = "aarch64")]
const SYS_EXIT_GROUP: usize = 94;

unsafe fn write_all(p: *const u8, n: usize) {
    syscall3(SYS_WRITE, 2, p as usize, n);
}

unsafe fn cstr_len(p: *const u8) -> usize {
    let mut n = 0;
    // read_volatile: keeps the compiler from turning the loop into a call
    // to strlen, which does not exist here.
    while core::ptr::read_volatile(p.add(n)) != 0 {
        n += 1;
    }
    n
}

unsafe extern "C" fn dmz_main(sp: *const usize) -> ! {
    let argc = *sp;
    let argv = sp.add(1) as *const *const u8;
    if argc >= 2 {
        let envp = argv.add(argc + 1);
        let r = syscall3(
            SYS_EXECVE,
            *argv as usize,
            argv.add(1) as usize,
            envp as usize,
        );
        let msg = b"skiff: exec ";
        write_all(msg.as_ptr(), msg.len());
        write_all(*argv, cstr_len(*argv));
        let mut digits = [0u8; 24];
        let mut i = digits.len();
        let mut e = (-r) as usize;
        i -= 1;
        digits[i] = b'\n';
        loop {
            i -= 1;
            digits[i] = b'0' + (e % 10) as u8;
            e /= 10;
            if e == 0 {
                break;
            }
        }
        let reason: &[u8] = match -r {
            1 => b": operation not permitted\n",
            2 => b": no such file or directory\n",
            7 => b": argument list too long\n",
            8 => b": exec format error\n",
            12 => b": cannot allocate memory\n",
            13 => b": permission denied\n",
            20 => b": not a directory\n",
            26 => b": text file busy\n",
            40 => b": too many levels of symbolic links\n",
            _ => b": errno ",
        };
        write_all(reason.as_ptr(), reason.len());
        if reason.ends_with(b" ") {
            write_all(digits.as_ptr().add(i), digits.len() - i);
        }
    }
    if argc < 2 {
        let msg = b"skiff: exec trampoline: no program to exec\n";
        write_all(msg.as_ptr(), msg.len());
    }
    syscall3(SYS_EXIT_GROUP, 127, 0, 0);
    loop {}
}

/// libcore refers to it; with panic=abort it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unsafe { syscall3(SYS_EXIT_GROUP, 127, 0, 0) };
    loop {}
}

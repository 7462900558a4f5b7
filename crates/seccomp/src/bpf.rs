//! Classic-BPF helpers: the `-ENOSYS` stub placed in front of libseccomp's program,
//! kernel flag probes, and the raw `seccomp(2)` load.
//!
//! Loading is a single `seccomp(SECCOMP_SET_MODE_FILTER)` call on a program that was
//! fully built in the parent, so it allocates nothing and is safe in a forked child
//! of a multi-threaded process. It also lets us pass every filter flag the kernel
//! knows (libseccomp 2.5 cannot set `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`).
//!
//! The stub follows the idea of runc's `patchbpf`: a profile with a non-permissive
//! default action would answer syscalls it has never heard of (newer than the profile)
//! with that default, typically `EPERM`, which makes libc fall back badly (e.g. glibc
//! treats `EPERM` from `clone3` as fatal but `ENOSYS` as "use clone"). So for each
//! architecture, syscall numbers above the largest one the profile names return
//! `ENOSYS` before the real filter runs.

use std::os::fd::{FromRawFd, OwnedFd};

use libc::sock_filter;
use libseccomp::ScmpArch;
use nix::errno::Errno;

/// `SECCOMP_SET_MODE_FILTER` operation of seccomp(2).
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
/// seccomp(2) filter flags (linux/seccomp.h).
pub(crate) const FLAG_TSYNC: u32 = 1 << 0;
pub(crate) const FLAG_LOG: u32 = 1 << 1;
pub(crate) const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub(crate) const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub(crate) const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub(crate) const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Kernel limit on the number of instructions of one filter (BPF_MAXINSNS).
pub(crate) const MAX_INSNS: usize = 4096;

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// `SECCOMP_RET_ERRNO | ENOSYS`.
const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// x32 syscalls carry this bit in their number on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Kernel `AUDIT_ARCH_*` value of a libseccomp architecture (x32 shares x86_64's).
pub(crate) fn audit_arch(arch: ScmpArch) -> Option<u32> {
    use ScmpArch as A;
    Some(match arch {
        A::Native => return audit_arch(ScmpArch::native()),
        A::X86 => 0x4000_0003,
        A::X8664 | A::X32 => AUDIT_ARCH_X86_64,
        A::Arm => 0x4000_0028,
        A::Aarch64 => 0xc000_00b7,
        A::Loongarch64 => 0xc000_0102,
        A::M68k => 0x0000_0004,
        A::Mips => 0x0000_0008,
        A::Mips64 => 0x8000_0008,
        A::Mips64N32 => 0xa000_0008,
        A::Mipsel => 0x4000_0008,
        A::Mipsel64 => 0xc000_0008,
        A::Mipsel64N32 => 0xe000_0008,
        A::Ppc => 0x0000_0014,
        A::Ppc64 => 0x8000_0015,
        A::Ppc64Le => 0xc000_0015,
        A::S390 => 0x0000_0016,
        A::S390X => 0x8000_0016,
        A::Parisc => 0x0000_000f,
        A::Parisc64 => 0x8000_000f,
        A::Riscv64 => 0xc000_00f3,
        A::Sh => 0x4000_002a,
        A::Sheb => 0x0000_002a,
        _ => return None,
    })
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A stub instruction before jump resolution.
enum Ins {
    Raw(sock_filter),
    /// Unconditional jump to the first instruction after the stub.
    ToFilter,
    /// Unconditional jump to the first instruction of section `n`.
    ToSection(usize),
}

/// The largest profile syscall number(s) for one kernel audit arch.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ArchMax {
    /// Largest number for the main ABI of the audit arch (x86_64 for AUDIT_ARCH_X86_64).
    pub main: Option<u32>,
    /// Largest x32 number (with the x32 bit), only for AUDIT_ARCH_X86_64.
    pub x32: Option<u32>,
    /// Whether this is s390/s390x (syscall 0 multiplexes unknown large numbers).
    pub s390: bool,
}

/// Builds the `-ENOSYS` stub for the given (audit arch, maxima) list, or an empty
/// program when there is nothing to guard. All jumps out of a section are 32-bit
/// `ja`s, so the stub never needs long-jump rewriting whatever its size.
pub(crate) fn enosys_stub(archs: &[(u32, ArchMax)]) -> Vec<sock_filter> {
    let archs: Vec<_> = archs
        .iter()
        .filter(|(_, m)| m.main.is_some() || m.x32.is_some())
        .collect();
    if archs.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<Ins> = vec![Ins::Raw(stmt(BPF_LD_W_ABS, DATA_ARCH))];
    for (n, (audit, _)) in archs.iter().enumerate() {
        out.push(Ins::Raw(jump(BPF_JMP_JEQ_K, *audit, 0, 1)));
        out.push(Ins::ToSection(n));
    }
    out.push(Ins::ToFilter);
    let mut starts = Vec::new();
    for (audit, m) in &archs {
        starts.push(out.len());
        out.push(Ins::Raw(stmt(BPF_LD_W_ABS, DATA_NR)));
        if *audit == AUDIT_ARCH_X86_64 {
            let amd = if m.main.is_some() { 2 } else { 1 };
            let x32 = if m.x32.is_some() { 2 } else { 1 };
            out.push(Ins::Raw(jump(BPF_JMP_JSET_K, X32_SYSCALL_BIT, amd, 0)));
            if let Some(max) = m.main {
                out.push(Ins::Raw(jump(BPF_JMP_JGT_K, max, 1 + x32, 0)));
            }
            out.push(Ins::ToFilter);
            if let Some(max) = m.x32 {
                out.push(Ins::Raw(jump(BPF_JMP_JGT_K, max, 1, 0)));
            }
            out.push(Ins::ToFilter);
        } else {
            let max = m.main.unwrap_or(u32::MAX);
            if m.s390 {
                // Unknown "large" syscalls arrive as syscall 0 (setup) on s390(x).
                out.push(Ins::Raw(jump(BPF_JMP_JEQ_K, 0, 2, 0)));
            }
            out.push(Ins::Raw(jump(BPF_JMP_JGT_K, max, 1, 0)));
            out.push(Ins::ToFilter);
        }
        out.push(Ins::Raw(stmt(BPF_RET_K, RET_ENOSYS)));
    }
    let len = out.len();
    out.iter()
        .enumerate()
        .map(|(pos, ins)| match ins {
            Ins::Raw(f) => *f,
            Ins::ToFilter => stmt(BPF_JMP_JA, (len - pos - 1) as u32),
            Ins::ToSection(n) => stmt(BPF_JMP_JA, (starts[*n] - pos - 1) as u32),
        })
        .collect()
}

/// A complete single-architecture program from libseccomp (it checks the arch
/// itself and ends every path in a `ret`).
pub(crate) struct ArchProgram {
    /// Kernel audit arch the program filters.
    pub audit: u32,
    /// Whether it is the x32 program (AUDIT_ARCH_X86_64 with the x32 bit set).
    pub x32: bool,
    pub prog: Vec<sock_filter>,
}

/// `SECCOMP_RET_KILL_THREAD`, libseccomp's default bad-architecture action.
const RET_KILL_THREAD: u32 = 0;

/// Links single-architecture programs behind an arch dispatcher:
///
/// ```text
///   ld [arch]
///   jeq AUDIT_a, 0, 1 ; ja prog_a        (one pair per audit arch)
///   ...
///   ret KILL_THREAD                      (unknown arch: libseccomp's default)
///   [x86_64 with x32: ld [nr]; jset X32_BIT, 0, 1; ja prog_x32; ja prog_x86_64]
///   prog_a ... prog_b ...
/// ```
///
/// Each program re-checks its arch (and x32 bit) as libseccomp generated it, so a
/// program reached through the dispatcher behaves exactly as in a combined filter.
/// All jumps out of the dispatcher are 32-bit `ja`s: no range limits.
pub(crate) fn link(parts: &[ArchProgram]) -> Vec<sock_filter> {
    // Group by audit arch: (audit, main program index, x32 program index).
    let mut groups: Vec<(u32, Option<usize>, Option<usize>)> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let g = match groups.iter_mut().position(|g| g.0 == p.audit) {
            Some(pos) => &mut groups[pos],
            None => {
                groups.push((p.audit, None, None));
                groups.last_mut().expect("just pushed")
            }
        };
        if p.x32 {
            g.2 = Some(i);
        } else {
            g.1 = Some(i);
        }
    }
    enum Ins {
        Raw(sock_filter),
        ToProg(usize),
        ToSplit(usize),
    }
    let mut out: Vec<Ins> = vec![Ins::Raw(stmt(BPF_LD_W_ABS, DATA_ARCH))];
    for (gi, (audit, main, x32)) in groups.iter().enumerate() {
        out.push(Ins::Raw(jump(BPF_JMP_JEQ_K, *audit, 0, 1)));
        out.push(match (main, x32) {
            (Some(_), Some(_)) => Ins::ToSplit(gi),
            (Some(p), None) | (None, Some(p)) => Ins::ToProg(*p),
            (None, None) => unreachable!("groups are created with a program"),
        });
    }
    out.push(Ins::Raw(stmt(BPF_RET_K, RET_KILL_THREAD)));
    let mut split_at = vec![usize::MAX; groups.len()];
    for (gi, (_, main, x32)) in groups.iter().enumerate() {
        if let (Some(m), Some(x)) = (main, x32) {
            split_at[gi] = out.len();
            out.push(Ins::Raw(stmt(BPF_LD_W_ABS, DATA_NR)));
            out.push(Ins::Raw(jump(BPF_JMP_JSET_K, X32_SYSCALL_BIT, 0, 1)));
            out.push(Ins::ToProg(*x));
            out.push(Ins::ToProg(*m));
        }
    }
    let mut prog_at = Vec::with_capacity(parts.len());
    let mut at = out.len();
    for p in parts {
        prog_at.push(at);
        at += p.prog.len();
    }
    let mut linked: Vec<sock_filter> = out
        .iter()
        .enumerate()
        .map(|(pos, ins)| match ins {
            Ins::Raw(f) => *f,
            Ins::ToProg(i) => stmt(BPF_JMP_JA, (prog_at[*i] - pos - 1) as u32),
            Ins::ToSplit(g) => stmt(BPF_JMP_JA, (split_at[*g] - pos - 1) as u32),
        })
        .collect();
    for p in parts {
        linked.extend_from_slice(&p.prog);
    }
    linked
}

/// Parses the output of `seccomp_export_bpf` (host-endian `struct sock_filter`s).
pub(crate) fn parse_program(bytes: &[u8]) -> Option<Vec<sock_filter>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

/// Whether the running kernel accepts seccomp filter `flag`.
///
/// Calls `seccomp(SECCOMP_SET_MODE_FILTER, flag, NULL)`: the kernel validates the
/// flags first (EINVAL when unknown) and only then reads the program (EFAULT on
/// NULL), so nothing is ever installed. Flags that only make sense with a listener
/// are probed together with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub(crate) fn kernel_supports_flag(flag: u32) -> bool {
    let flag = if flag == FLAG_WAIT_KILLABLE_RECV {
        flag | FLAG_NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: seccomp(2) with a NULL program cannot install a filter; it only
    // validates `flags` and then fails to copy the program (EFAULT).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flag as libc::c_ulong,
            std::ptr::null::<u8>(),
        )
    };
    r == -1 && Errno::last() == Errno::EFAULT
}

/// Installs `prog` on the calling thread (or process with TSYNC) with `flags`.
///
/// Async-signal-safe: no allocation, one syscall. Returns the listener fd when
/// `flags` contains `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub(crate) fn load(prog: &[sock_filter], flags: u32) -> Result<Option<OwnedFd>, Errno> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies
    // the program before returning and does not keep the pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a fresh fd that
        // nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }))
    } else {
        Ok(None)
    }
}

/// A classic-BPF interpreter for `struct seccomp_data` (tests only): lets the
/// linked per-arch program be compared with libseccomp's combined one over the
/// whole input space, without loading anything.
#[cfg(test)]
pub(crate) fn emulate(prog: &[sock_filter], nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + i * 8..24 + i * 8].copy_from_slice(&a.to_ne_bytes());
    }
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    loop {
        let ins = prog[pc];
        let k = ins.k;
        pc += 1;
        match ins.code & 0x07 {
            0x00 | 0x01 => {
                let v = match ins.code & 0xe0 {
                    0x00 => k,
                    0x20 => {
                        let o = k as usize;
                        u32::from_ne_bytes(data[o..o + 4].try_into().expect("in range"))
                    }
                    0x60 => mem[k as usize],
                    0x80 => 64,
                    m => panic!("unsupported load mode {m:#x}"),
                };
                if ins.code & 0x07 == 0 {
                    a = v
                } else {
                    x = v
                }
            }
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x04 => {
                let src = if ins.code & 0x08 != 0 { x } else { k };
                a = match ins.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.wrapping_shl(src),
                    0x70 => a.wrapping_shr(src),
                    0x80 => a.wrapping_neg(),
                    0xa0 => a ^ src,
                    op => panic!("unsupported alu op {op:#x}"),
                };
            }
            0x05 => {
                let src = if ins.code & 0x08 != 0 { x } else { k };
                let taken = match ins.code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    op => panic!("unsupported jump {op:#x}"),
                };
                pc += if taken { ins.jt } else { ins.jf } as usize;
            }
            0x06 => {
                return match ins.code & 0x18 {
                    0x00 => k,
                    0x10 => a,
                    0x08 => x,
                    r => panic!("unsupported ret {r:#x}"),
                }
            }
            _ => {
                if ins.code & 0xf8 == 0x80 {
                    a = x
                } else {
                    x = a
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_jumps_stay_inside_program() {
        let stub = enosys_stub(&[
            (
                AUDIT_ARCH_X86_64,
                ArchMax {
                    main: Some(300),
                    x32: Some(X32_SYSCALL_BIT | 500),
                    s390: false,
                },
            ),
            (
                0x4000_0003,
                ArchMax {
                    main: Some(400),
                    x32: None,
                    s390: false,
                },
            ),
            (
                0x8000_0016,
                ArchMax {
                    main: Some(400),
                    x32: None,
                    s390: true,
                },
            ),
        ]);
        let len = stub.len();
        for (pos, ins) in stub.iter().enumerate() {
            if ins.code == BPF_JMP_JA {
                // May land exactly on the first filter instruction (== len).
                assert!(pos + 1 + ins.k as usize <= len, "ja at {pos} escapes");
            } else if ins.code & 0x07 == 0x05 {
                assert!(pos + 1 + (ins.jt as usize) < len, "jt at {pos} escapes");
                assert!(pos + 1 + (ins.jf as usize) < len, "jf at {pos} escapes");
            }
        }
    }

    #[test]
    fn empty_when_nothing_known() {
        assert!(enosys_stub(&[(AUDIT_ARCH_X86_64, ArchMax::default())]).is_empty());
    }
}

//! Device access rules (`linux.resources.devices`).
//!
//! * v1: `a` is written to `devices.deny`, then every rule, in order, to
//!   `devices.allow` or `devices.deny`.
//! * v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` is generated
//!   from the rules (the last matching rule wins, no match denies: the same
//!   outcome as the v1 sequence) and attached to the cgroup directory with
//!   `BPF_PROG_ATTACH` (`BPF_F_ALLOW_MULTI`); programs attached earlier by
//!   skiff are detached after the new one is in place, so `update` never
//!   leaves a window without a filter. Raw `bpf(2)` calls via libc.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::fsutil;
use crate::Error;

const FIELD: &str = "linux.resources.devices";

/// A device cgroup rule: `allow` (or deny) `access` (`r`, `w`, `m`) to
/// devices of type `typ` (`None`: all) with `major`/`minor` (`None`: any).
pub fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(typ);
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_owned()));
    d
}

/// The rule that denies every device (`a *:* rwm`), where a container's
/// rules start when its spec has none.
pub fn deny_all_rule() -> LinuxDeviceCgroup {
    device_rule(false, None, None, None, "rwm")
}

/// The device rules runc grants every container (after a deny-all):
/// `mknod` of any device, and read/write/mknod of `/dev/null`, `zero`,
/// `full`, `random`, `urandom`, `tty`, `console`, `ptmx`, the pty slaves and
/// `net/tun`. A runtime that follows runc appends these to the spec's rules.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        device_rule(true, Some(t), major, minor, access)
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(136), None, "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(10), Some(200), "rwm"),
    ]
}

fn wildcard(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v >= 0)
}

/// What `devices.list` shows after `deny a` + `rules`, for the usual shape
/// (deny-all rules and allow rules for specific types); `None` otherwise.
fn v1_expected_list(rules: &[LinuxDeviceCgroup]) -> Option<String> {
    let mut out: Vec<(char, Option<i64>, Option<i64>, u8)> = Vec::new();
    for r in rules {
        let t = r.typ().unwrap_or(LinuxDeviceType::A);
        let mut acc = 0u8;
        for c in r.access().as_deref().unwrap_or("rwm").chars() {
            acc |= match c {
                'r' => 1,
                'w' => 2,
                _ => 4,
            };
        }
        let (ma, mi) = (wildcard(r.major()), wildcard(r.minor()));
        if !r.allow() {
            if t == LinuxDeviceType::A && ma.is_none() && mi.is_none() && acc == 7 {
                out.clear();
                continue;
            }
            return None;
        }
        let tc = match t {
            LinuxDeviceType::A => return None,
            LinuxDeviceType::B => 'b',
            _ => 'c',
        };
        match out.iter_mut().find(|e| e.0 == tc && e.1 == ma && e.2 == mi) {
            Some(e) => e.3 |= acc,
            None => out.push((tc, ma, mi, acc)),
        }
    }
    let mut s = String::new();
    for (t, ma, mi, acc) in out {
        let n = |v: Option<i64>| v.map_or("*".to_owned(), |v| v.to_string());
        s.push_str(&format!("{t} {}:{} ", n(ma), n(mi)));
        for (bit, c) in [(1, 'r'), (2, 'w'), (4, 'm')] {
            if acc & bit != 0 {
                s.push(c);
            }
        }
        s.push('\n');
    }
    Some(s)
}

/// Applies the rules on a v1 `devices` hierarchy directory. When the
/// kernel's list already matches the rules (an `update` that does not touch
/// devices), nothing is written, so running processes never see the
/// transient deny-all.
pub(crate) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    if let Some(want) = v1_expected_list(rules) {
        if fsutil::read_opt(dir, "devices.list")?.is_some_and(|cur| cur == want) {
            return Ok(());
        }
    }
    fsutil::write(dir, "devices.deny", b"a", FIELD)?;
    let mut line = String::with_capacity(32);
    for r in rules {
        line.clear();
        let t = r.typ().unwrap_or(LinuxDeviceType::A);
        line.push_str(match t {
            LinuxDeviceType::A => "a",
            LinuxDeviceType::B => "b",
            _ => "c",
        });
        line.push(' ');
        match wildcard(r.major()) {
            Some(m) => write!(line, "{m}").unwrap_or(()),
            None => line.push('*'),
        }
        line.push(':');
        match wildcard(r.minor()) {
            Some(m) => write!(line, "{m}").unwrap_or(()),
            None => line.push('*'),
        }
        line.push(' ');
        line.push_str(r.access().as_deref().unwrap_or("rwm"));
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fsutil::write(dir, file, line.as_bytes(), FIELD)?;
    }
    Ok(())
}

// ---- eBPF (cgroup v2) ----

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction, as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JNE32_X: u8 = 0x5e; // BPF_JMP32 | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// Generates the filter: rules are checked from the last to the first, the
/// first match (i.e. the last matching rule) decides; no match denies. A rule
/// that matches everything ends the program (what precedes it is shadowed).
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, Error> {
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16), // r3 = access
        insn(LDX_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
    ];
    let mut block: Vec<Insn> = Vec::with_capacity(8);
    for r in rules.iter().rev() {
        block.clear();
        match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => block.push(insn(JNE32_K, 2, 0, 0, DEV_BLOCK)),
            LinuxDeviceType::C | LinuxDeviceType::U => block.push(insn(JNE32_K, 2, 0, 0, DEV_CHAR)),
            LinuxDeviceType::P => {
                return Err(Error::unsupported(
                    FIELD,
                    "type \"p\" (fifo) cannot be filtered by the cgroup v2 device controller",
                ))
            }
        }
        let mut acc = 0;
        for c in r.access().as_deref().unwrap_or("rwm").chars() {
            acc |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(Error::invalid(
                        "linux.resources.devices.access",
                        format!("{c:?} is not r, w or m"),
                    ))
                }
            };
        }
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // if (access & acc) != access: the request wants more than granted
            block.push(insn(MOV32_X, 1, 3, 0, 0));
            block.push(insn(AND32_K, 1, 0, 0, acc));
            block.push(insn(JNE32_X, 1, 3, 0, 0));
        }
        if let Some(m) = wildcard(r.major()) {
            block.push(insn(JNE32_K, 4, 0, 0, m as u32 as i32));
        }
        if let Some(m) = wildcard(r.minor()) {
            block.push(insn(JNE32_K, 5, 0, 0, m as u32 as i32));
        }
        block.push(insn(MOV32_K, 0, 0, 0, r.allow() as i32));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let n = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE32_K || ins.code == JNE32_X {
                // jump past this block: offsets count from the next insn
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend_from_slice(&block);
        if n == 2 {
            // matches every access: earlier rules and the default are
            // unreachable (and the verifier refuses unreachable code)
            return Ok(p);
        }
    }
    p.push(insn(MOV32_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

fn bpf(cmd: libc::c_int, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-padded, 8-byte aligned 128-byte buffer laid
    // out as the kernel's `union bpf_attr` member for `cmd`; the kernel reads
    // (and for queries writes) at most `size_of_val(attr)` bytes of it. The
    // pointers callers store in it (instructions, license, log, id array)
    // point to buffers that live until this call returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn lo_hi(a: u32, b: u32) -> u64 {
    (a as u64) | ((b as u64) << 32)
}

fn bpf_err(op: &'static str, source: io::Error) -> Error {
    Error::Bpf {
        op,
        source,
        log: String::new(),
    }
}

fn load(insns: &[Insn]) -> Result<OwnedFd, Error> {
    let license = c"Apache";
    let mut log = vec![0u8; 1 << 16];
    let mut attr = [0u64; 16];
    attr[0] = lo_hi(BPF_PROG_TYPE_CGROUP_DEVICE, insns.len() as u32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[3] = lo_hi(1, log.len() as u32); // log_level, log_size
    attr[4] = log.as_mut_ptr() as u64;
    // attr[5]: kern_version, prog_flags; [6..8]: prog_name; [8]: ifindex,
    // expected_attach_type
    let name = b"skiff_devices\0\0\0";
    let mut nm = [0u64; 2];
    for (i, b) in name.iter().enumerate() {
        nm[i / 8] |= (*b as u64) << ((i % 8) * 8);
    }
    attr[6] = nm[0];
    attr[7] = nm[1];
    attr[8] = lo_hi(0, BPF_CGROUP_DEVICE);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: the kernel returned a new file descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            Err(Error::Bpf {
                op: "BPF_PROG_LOAD",
                source,
                log: if text.is_empty() {
                    String::new()
                } else {
                    format!("\n{text}")
                },
            })
        }
    }
}

/// Ids of the device programs attached to the cgroup `fd`.
fn query(fd: RawFd) -> Result<Vec<u32>, Error> {
    let mut ids = [0u32; 64];
    let mut attr = [0u64; 16];
    attr[0] = lo_hi(fd as u32, BPF_CGROUP_DEVICE);
    attr[1] = 0; // query_flags, attach_flags (out)
    attr[2] = ids.as_mut_ptr() as u64;
    attr[3] = ids.len() as u64; // prog_cnt (in/out)
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| bpf_err("BPF_PROG_QUERY", e))?;
    let n = (attr[3] & 0xffff_ffff) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// The number of device-filter programs attached to the cgroup2 directory
/// `dir` (`BPF_PROG_QUERY`), for diagnostics and tests.
pub fn attached_device_filters(dir: &Path) -> Result<usize, Error> {
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    Ok(query(f.as_raw_fd())?.len())
}

/// Loads the program for `rules` and attaches it to the cgroup directory
/// `dir`, replacing programs attached before.
pub(crate) fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let insns = program(rules)?;
    let cpath = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::invalid(FIELD, "cgroup path contains a NUL byte"))?;
    // SAFETY: `cpath` is a valid NUL-terminated path; the returned fd, if
    // any, is owned by `File` below.
    let raw = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(Error::io("open", dir, io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd returned by open(2) above.
    let cg = unsafe { File::from_raw_fd(raw) };
    let old = query(cg.as_raw_fd())?;
    let prog = load(&insns)?;
    let mut attr = [0u64; 16];
    attr[0] = lo_hi(cg.as_raw_fd() as u32, prog.as_raw_fd() as u32);
    attr[1] = lo_hi(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| bpf_err("BPF_PROG_ATTACH", e))?;
    for id in old {
        let mut a = [0u64; 16];
        a[0] = id as u64;
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut a) else {
            continue; // already gone
        };
        // SAFETY: the kernel returned a new fd that we own.
        let old_fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut d = [0u64; 16];
        d[0] = lo_hi(cg.as_raw_fd() as u32, old_fd.as_raw_fd() as u32);
        d[1] = lo_hi(BPF_CGROUP_DEVICE, 0);
        bpf(BPF_PROG_DETACH, &mut d).map_err(|e| bpf_err("BPF_PROG_DETACH", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the generated subset, to check the logic
    /// without the kernel (the kernel path is covered by tests/).
    fn run(p: &[Insn], typ: i32, acc: i32, major: u32, minor: u32) -> u32 {
        let mut r = [0u64; 11];
        let ctx = [((acc as u32) << 16) | typ as u32, major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[d] = ctx[(i.off / 4) as usize] as u64,
                AND32_K => r[d] = (r[d] as u32 & i.imm as u32) as u64,
                RSH32_K => r[d] = ((r[d] as u32) >> i.imm) as u64,
                MOV32_X => r[d] = r[s] as u32 as u64,
                MOV32_K => r[d] = i.imm as u32 as u64,
                JNE32_K if r[d] as u32 != i.imm as u32 => pc += i.off as usize,
                JNE32_X if r[d] as u32 != r[s] as u32 => pc += i.off as usize,
                JNE32_K | JNE32_X => {}
                EXIT => return r[0] as u32,
                c => panic!("bad op {c:#x}"),
            }
        }
    }

    fn rules(j: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn v1_list_prediction() {
        let r = rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"m"},
                {"allow":true,"type":"b","access":"m"}]"#,
        );
        assert_eq!(v1_expected_list(&r).unwrap(), "c 1:3 rwm\nb *:* m\n");
        assert!(v1_expected_list(&rules(r#"[{"allow":true,"access":"rwm"}]"#)).is_none());
    }

    #[test]
    fn last_match_wins() {
        let p = program(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},
                {"allow":true,"type":"c","major":136,"access":"rwm"},
                {"allow":false,"type":"c","major":136,"minor":5,"access":"rwm"}]"#,
        ))
        .unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 2), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 5), 0);
        let all = program(&rules(r#"[{"allow":true,"access":"rwm"}]"#)).unwrap();
        assert_eq!(run(&all, DEV_BLOCK, ACC_WRITE, 8, 0), 1);
        assert_eq!(all.len(), 6 + 2, "no unreachable default after a catch-all");
        assert_eq!(run(&program(&[]).unwrap(), DEV_CHAR, ACC_READ, 1, 3), 0);
    }
}

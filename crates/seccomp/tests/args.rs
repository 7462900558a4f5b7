//! Argument conditions: every operator, AND across arguments, runc's OR for repeated
//! argument indexes, and extra architectures (i386 syscalls via `int 0x80`).

mod common;

use common::*;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde_json::json;

#[test]
fn personality_query_blocked_only_for_0xffffffff() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
            "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]
        }]
    }));
    // SAFETY: raw personality syscalls (query, then set PER_LINUX).
    let got = exit_code(&f, || unsafe {
        let query = rc(libc::syscall(libc::SYS_personality, 0xffff_ffffu64));
        let set = rc(libc::syscall(libc::SYS_personality, 0u64));
        if query == libc::EACCES && set == 0 {
            0
        } else {
            1
        }
    });
    assert_eq!(
        got, 0,
        "personality(0xffffffff) -> EACCES, personality(0) allowed"
    );
}

/// socket(domain, type, 0) -> 0 on success (fd closed), errno otherwise.
fn sock(domain: i32, ty: i32) -> i32 {
    // SAFETY: raw socket/close syscalls.
    unsafe {
        let fd = libc::syscall(libc::SYS_socket, domain, ty, 0);
        if fd < 0 {
            return errno();
        }
        libc::syscall(libc::SYS_close, fd);
        0
    }
}

#[test]
fn socket_blocked_by_domain() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EAFNOSUPPORT,
            "args": [{"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"}]
        }]
    }));
    let got = exit_code(&f, || {
        let v6 = sock(libc::AF_INET6, libc::SOCK_STREAM);
        let unix = sock(libc::AF_UNIX, libc::SOCK_STREAM);
        let v4 = sock(libc::AF_INET, libc::SOCK_STREAM);
        if v6 == libc::EAFNOSUPPORT && unix == 0 && v4 == 0 {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0);
}

#[test]
fn conditions_on_different_arguments_are_anded() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPROTONOSUPPORT,
            "args": [
                {"index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": libc::SOCK_DGRAM, "op": "SCMP_CMP_EQ"}
            ]
        }]
    }));
    let got = exit_code(&f, || {
        let udp = sock(libc::AF_INET, libc::SOCK_DGRAM);
        let tcp = sock(libc::AF_INET, libc::SOCK_STREAM);
        let unix_dgram = sock(libc::AF_UNIX, libc::SOCK_DGRAM);
        if udp == libc::EPROTONOSUPPORT && tcp == 0 && unix_dgram == 0 {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0, "only AF_INET+SOCK_DGRAM is blocked");
}

#[test]
fn conditions_on_the_same_argument_are_ored_as_runc() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{
            "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EAFNOSUPPORT,
            "args": [
                {"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": libc::AF_NETLINK, "op": "SCMP_CMP_EQ"}
            ]
        }]
    }));
    let got = exit_code(&f, || {
        let v6 = sock(libc::AF_INET6, libc::SOCK_STREAM);
        let nl = sock(libc::AF_NETLINK, libc::SOCK_RAW);
        let unix = sock(libc::AF_UNIX, libc::SOCK_STREAM);
        if v6 == libc::EAFNOSUPPORT && nl == libc::EAFNOSUPPORT && unix == 0 {
            0
        } else {
            1
        }
    });
    assert_eq!(
        got, 0,
        "AF_INET6 and AF_NETLINK both blocked, AF_UNIX allowed"
    );
}

#[test]
fn every_operator() {
    // Rule on umask(mask); probe values 0o000..0o077 step 0o011; bit i of the exit
    // code = probe i was blocked.
    let probes: [u64; 8] = [0o000, 0o011, 0o022, 0o033, 0o044, 0o055, 0o066, 0o077];
    /// (op, value, valueTwo, which probes the rule should block)
    type Case = (&'static str, u64, Option<u64>, fn(u64) -> bool);
    let cases: &[Case] = &[
        ("SCMP_CMP_EQ", 0o022, None, |v| v == 0o022),
        ("SCMP_CMP_NE", 0o022, None, |v| v != 0o022),
        ("SCMP_CMP_LT", 0o033, None, |v| v < 0o033),
        ("SCMP_CMP_LE", 0o033, None, |v| v <= 0o033),
        ("SCMP_CMP_GT", 0o044, None, |v| v > 0o044),
        ("SCMP_CMP_GE", 0o044, None, |v| v >= 0o044),
        // value = mask, valueTwo = expected: (arg & 0o010) == 0o010
        ("SCMP_CMP_MASKED_EQ", 0o010, Some(0o010), |v| {
            v & 0o010 == 0o010
        }),
    ];
    for &(op, value, value_two, pred) in cases {
        let mut arg = json!({"index": 0, "value": value, "op": op});
        if let Some(v2) = value_two {
            arg["valueTwo"] = json!(v2);
        }
        let f = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM, "args": [arg]}]
        }));
        let got = exit_code(&f, || {
            let mut bits = 0;
            for (i, p) in probes.iter().enumerate() {
                // SAFETY: raw umask syscall.
                if rc(unsafe { libc::syscall(libc::SYS_umask, *p) }) == libc::EDOM {
                    bits |= 1 << i;
                }
            }
            bits
        });
        let want = probes
            .iter()
            .enumerate()
            .filter(|(_, p)| pred(**p))
            .fold(0, |b, (i, _)| b | 1 << i);
        assert_eq!(
            got, want,
            "{op} value {value:#o} valueTwo {value_two:?}: blocked-probe bitmap"
        );
    }
}

#[test]
fn masked_eq_on_open_flags() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing");
    std::fs::write(&existing, b"x").unwrap();
    let created = dir.path().join("created");
    let (ce, cc) = (cpath(&existing), cpath(&created));
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS,
             "args": [{"index": 2, "value": libc::O_CREAT, "valueTwo": libc::O_CREAT, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS,
             "args": [{"index": 1, "value": libc::O_CREAT, "valueTwo": libc::O_CREAT, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    // SAFETY: raw openat/close syscalls with valid paths.
    let got = exit_code(&f, || unsafe {
        let ro = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            ce.as_ptr(),
            libc::O_RDONLY,
        );
        let ro_ok = ro >= 0;
        if ro_ok {
            libc::syscall(libc::SYS_close, ro);
        }
        let cr = rc(libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            cc.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o600,
        ));
        if ro_ok && cr == libc::EROFS {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0);
    assert!(!created.exists());
}

/// An i386 syscall via `int 0x80` (works in a 64-bit process with IA32
/// emulation); only for syscalls whose argument is not a pointer.
#[cfg(target_arch = "x86_64")]
fn i386_syscall(nr: u32, arg: u32) -> i32 {
    let ret: u32;
    // SAFETY: int 0x80 enters the i386 syscall table; callers pass no pointers and
    // only eax is written by the kernel.
    unsafe {
        // rbx is reserved by LLVM: swap the argument in and out around the trap.
        std::arch::asm!(
            "xchg {arg:e}, ebx",
            "int 0x80",
            "xchg {arg:e}, ebx",
            arg = inout(reg) arg => _,
            inlateout("eax") nr => ret,
            options(nostack),
        );
    }
    ret as i32
}

/// i386 umask (60).
#[cfg(target_arch = "x86_64")]
fn umask_i386(mask: u32) -> i32 {
    i386_syscall(60, mask)
}

#[cfg(target_arch = "x86_64")]
#[test]
fn extra_architectures_filter_i386_syscalls() {
    // Probe IA32 emulation without a filter.
    let none = compile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    match run(&none, || if umask_i386(0o022) >= 0 { 0 } else { 1 }) {
        WaitStatus::Exited(_, 0) => {}
        other => {
            eprintln!("SKIP: no IA32 syscall emulation (int 0x80 probe: {other:?})");
            return;
        }
    }
    let rule = json!([{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM}]);
    // x86 listed: the rule applies to the i386 ABI too (-EDOM in eax).
    let both = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rule
    }));
    assert_eq!(
        exit_code(&both, || if umask_i386(0o022) == -libc::EDOM {
            0
        } else {
            1
        }),
        0
    );
    // Default ERRNO: the -ENOSYS stub also guards the i386 table. Largest i386
    // number named: exit_group (252); getrandom is 355 there, getppid 64.
    let strict = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["exit_group", "exit", "rt_sigreturn", "umask"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let got = exit_code(&strict, || {
        let umask = i386_syscall(60, 0o022);
        let getppid = i386_syscall(64, 0);
        let getrandom = i386_syscall(355, 0);
        if umask >= 0 && getppid == -libc::EPERM && getrandom == -libc::ENOSYS {
            0
        } else {
            1
        }
    });
    assert_eq!(
        got, 0,
        "i386: umask allowed, getppid EPERM (default), getrandom ENOSYS (stub)"
    );
    // x86 not listed: i386 syscalls hit libseccomp's bad-arch action (kill).
    let native = compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rule}));
    let st = run(&native, || {
        umask_i386(0o022);
        0
    });
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "got {st:?}"
    );
}

/// An x32-ABI umask from this 64-bit process: the syscall number carries the x32
/// bit. seccomp sees it before the kernel decides whether x32 is enabled.
#[cfg(target_arch = "x86_64")]
fn umask_x32(mask: u64) -> i32 {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: raw syscall without pointers.
    rc(unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_umask, mask) })
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscalls_follow_the_x32_architecture() {
    let rule = json!([{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM}]);
    // x32 listed: the x32 program handles the call -> EDOM; x86_64 too.
    let with_x32 = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rule
    }));
    let got = exit_code(&with_x32, || {
        // SAFETY: raw umask.
        let native = rc(unsafe { libc::syscall(libc::SYS_umask, 0o022) });
        let x32 = umask_x32(0o022);
        if native == libc::EDOM && x32 == libc::EDOM {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0);
    // x32 not listed: bad architecture -> killed.
    let without = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": rule
    }));
    let st = run(&without, || {
        umask_x32(0o022);
        0
    });
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "got {st:?}"
    );
    // An x32 allow rule does not leak to the x86_64 ABI and vice versa.
    let mixed = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::EDOM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["exit_group", "exit", "rt_sigreturn"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ERANGE}
        ]
    }));
    let got = exit_code(&mixed, || {
        // SAFETY: raw syscalls without pointers.
        let getppid_x32 = rc(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getppid) });
        let umask_x32 = umask_x32(0);
        if getppid_x32 == libc::EDOM && umask_x32 == libc::ERANGE {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0);
}

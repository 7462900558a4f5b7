//! Every seccomp action, observed from outside a forked child that loaded the filter.

mod common;

use common::*;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use serde_json::json;

fn mkdir_in(dir: &tempfile::TempDir, name: &str) -> (std::path::PathBuf, std::ffi::CString) {
    let p = dir.path().join(name);
    let c = cpath(&p);
    (p, c)
}

#[test]
fn errno_rule_fails_mkdir_with_configured_errno() {
    let dir = tempfile::tempdir().unwrap();
    let (path, c) = mkdir_in(&dir, "blocked");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV}]
    }));
    // SAFETY: mkdir with a valid NUL-terminated path.
    let got = exit_code(&f, || unsafe {
        rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
    });
    assert_eq!(got, libc::EXDEV);
    assert!(!path.exists(), "mkdir must not have happened");
}

#[test]
fn errno_without_errno_ret_is_eperm() {
    let dir = tempfile::tempdir().unwrap();
    let (path, c) = mkdir_in(&dir, "blocked");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // SAFETY: mkdir with a valid NUL-terminated path.
    let got = exit_code(&f, || unsafe {
        rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
    });
    assert_eq!(got, libc::EPERM);
    assert!(!path.exists());
}

/// Syscalls a filtered child needs to end (plus the ones glibc's _exit may use).
const EXIT: &[&str] = &["exit_group", "exit", "rt_sigreturn"];

#[test]
fn default_errno_uses_default_errno_ret_and_allow_rules_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (path, c) = mkdir_in(&dir, "allowed");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::ENOTSUP,
        "syscalls": [
            {"names": EXIT, "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
        ]
    }));
    let got = exit_code(&f, || {
        // SAFETY: raw syscalls with valid arguments.
        unsafe {
            let mk = rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long);
            let pid = rc(libc::syscall(libc::SYS_getpid));
            let ppid = rc(libc::syscall(libc::SYS_getppid));
            if mk != 0 || pid != 0 {
                return 1;
            }
            ppid
        }
    });
    assert_eq!(
        got,
        libc::ENOTSUP,
        "a syscall outside the profile gets defaultErrnoRet"
    );
    assert!(path.is_dir(), "the allowed mkdir happened");
}

#[test]
fn enosys_for_syscalls_newer_than_the_profile() {
    // Profile: default ERRNO(EPERM), knows syscalls up to exit_group (231 on x86_64).
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["exit_group", "exit", "rt_sigreturn", "getpid"], "action": "SCMP_ACT_ALLOW"}]
    });
    let body = || {
        let mut buf = [0u8; 4];
        // SAFETY: raw syscalls with valid arguments.
        unsafe {
            let older = rc(libc::syscall(libc::SYS_getppid)); // 110 < 231: default action
            let newer = rc(libc::syscall(libc::SYS_getrandom, buf.as_mut_ptr(), 4, 0)); // 318 > 231
            if older == libc::EPERM && newer == libc::ENOSYS {
                0
            } else {
                100 + (older & 0xf) * 8 + (newer & 0x7)
            }
        }
    };
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            exit_code(&compile(profile), body),
            0,
            "getppid: EPERM, getrandom: ENOSYS"
        );
    }
    // With defaultErrnoRet ENOSYS no stub is needed; everything outside gets ENOSYS.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::ENOSYS,
        "syscalls": [{"names": EXIT, "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(
        // SAFETY: getppid takes no arguments and cannot fault.
        exit_code(&f, || unsafe { rc(libc::syscall(libc::SYS_getppid)) }),
        libc::ENOSYS
    );
}

#[test]
fn kill_actions_kill_the_child_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, c) = mkdir_in(&dir, "never");
        let f = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}]
        }));
        let st = run(&f, || {
            // SAFETY: mkdir with a valid path.
            unsafe { libc::mkdir(c.as_ptr(), 0o700) };
            99
        });
        assert!(
            matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{action}: expected death by SIGSYS, got {st:?}"
        );
        assert!(!path.exists(), "{action}: mkdir must not have happened");
    }
}

#[test]
fn kill_as_default_action() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{"names": EXIT, "action": "SCMP_ACT_ALLOW"}]
    }));
    // SAFETY: raw syscall.
    let st = run(&f, || unsafe { rc(libc::syscall(libc::SYS_getppid)) });
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "got {st:?}"
    );
    // SAFETY: no syscall at all before exit: the child must survive.
    assert_eq!(exit_code(&f, || 7), 7);
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    /// `SYS_SECCOMP` si_code of a seccomp-generated SIGSYS.
    const SYS_SECCOMP: i32 = 1;
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; _exit is
    // async-signal-safe.
    unsafe {
        libc::_exit(if (*info).si_code == SYS_SECCOMP {
            77
        } else {
            78
        })
    }
}

#[test]
fn trap_delivers_sigsys_with_sys_seccomp_code() {
    let dir = tempfile::tempdir().unwrap();
    let (path, c) = mkdir_in(&dir, "trapped");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRAP"}]
    }));
    let got = exit_code(&f, || {
        // SAFETY: installing a handler that only calls _exit, then a raw syscall.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
            libc::mkdir(c.as_ptr(), 0o700);
        }
        99
    });
    assert_eq!(
        got, 77,
        "SIGSYS with si_code SYS_SECCOMP reached the handler"
    );
    assert!(!path.exists());
}

#[test]
fn log_and_allow_let_the_call_through() {
    for (default, action) in [
        ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"),
        ("SCMP_ACT_LOG", "SCMP_ACT_ALLOW"),
        ("SCMP_ACT_ERRNO", "SCMP_ACT_LOG"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, c) = mkdir_in(&dir, "made");
        let f = compile(json!({
            "defaultAction": default,
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": action},
                {"names": EXIT, "action": "SCMP_ACT_ALLOW"}
            ]
        }));
        // SAFETY: mkdir with a valid path.
        let got = exit_code(&f, || unsafe {
            rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
        });
        assert_eq!(got, 0, "default {default}, rule {action}");
        assert!(
            path.is_dir(),
            "default {default}, rule {action}: directory created"
        );
    }
}

#[test]
fn trace_without_a_tracer_returns_enosys() {
    let dir = tempfile::tempdir().unwrap();
    let (path, c) = mkdir_in(&dir, "traced");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE", "errnoRet": 42}]
    }));
    // SAFETY: mkdir with a valid path.
    let got = exit_code(&f, || unsafe {
        rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
    });
    assert_eq!(
        got,
        libc::ENOSYS,
        "seccomp(2): TRACE without a tracer fails with ENOSYS"
    );
    assert!(!path.exists());
}

#[test]
fn unknown_syscall_names_are_skipped_and_default_equal_rules_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_path, c) = mkdir_in(&dir, "x");
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["no_such_syscall_skiff", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV},
            // Same action as the default: libseccomp would refuse it; runc skips it.
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["also_unknown_skiff"], "action": "SCMP_ACT_ALLOW"},
            {"names": EXIT, "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    // SAFETY: raw syscalls with valid arguments.
    let got = exit_code(&f, || unsafe {
        let mk = rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long);
        let pp = rc(libc::syscall(libc::SYS_getppid));
        if mk == libc::EXDEV && pp == libc::EPERM {
            0
        } else {
            1
        }
    });
    assert_eq!(got, 0);
}

#[test]
fn filter_flags_are_applied() {
    let features = skiff_seccomp::features();
    let supported: Vec<String> =
        serde_json::from_value(features["supportedFlags"].clone()).expect("supportedFlags list");
    for flag in [
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_TSYNC",
    ] {
        if !supported.iter().any(|s| s == flag) {
            eprintln!("SKIP: {flag} not supported by this kernel");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (_p, c) = mkdir_in(&dir, "flagged");
        let f = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": [flag],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV}]
        }));
        assert_ne!(f.flags(), 0, "{flag} reaches seccomp(2)");
        // SAFETY: mkdir with a valid path.
        let got = exit_code(&f, || unsafe {
            rc(libc::mkdir(c.as_ptr(), 0o700) as libc::c_long)
        });
        assert_eq!(got, libc::EXDEV, "{flag}");
    }
    // SPEC_ALLOW is observable: the SSB mitigation is not forced on the child.
    if supported
        .iter()
        .any(|s| s == "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
    {
        let plain = compile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
        );
        let spec = compile(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
        );
        // SAFETY: prctl query with valid arguments.
        let probe = || unsafe {
            libc::prctl(
                libc::PR_GET_SPECULATION_CTRL,
                libc::PR_SPEC_STORE_BYPASS,
                0,
                0,
                0,
            ) & 0x7f
        };
        let before = probe();
        let a = exit_code(&plain, probe);
        let b = exit_code(&spec, probe);
        eprintln!("ssb prctl state: unfiltered {before:#x}, default {a:#x}, SPEC_ALLOW {b:#x}");
        if before & libc::PR_SPEC_PRCTL as i32 != 0 {
            assert_eq!(
                b, before,
                "SPEC_ALLOW leaves the speculation state untouched"
            );
        } else {
            eprintln!("SKIP: SSB mitigation is not seccomp-controlled on this CPU/kernel");
        }
    }
}

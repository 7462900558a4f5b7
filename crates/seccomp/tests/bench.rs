//! Micro-benchmark: compile + load of a docker-default-sized profile (~300 syscall
//! names, a dozen conditional rules, three x86 architectures), and the per-syscall
//! cost of the loaded filter. Prints the numbers; asserts only that things work.
//!
//! `cargo test -p skiff-seccomp --release --test bench -- --nocapture`

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use libseccomp::ScmpSyscall;
use serde_json::json;

/// Names used by the conditional rules (kept out of the big allow list).
const CONDITIONAL: &[&str] = &[
    "personality",
    "clone",
    "socket",
    "clone3",
    "ptrace",
    "ioctl",
];

fn docker_sized_profile() -> (serde_json::Value, usize) {
    let mut names = Vec::new();
    for nr in 0..1000 {
        if names.len() == 300 {
            break;
        }
        if let Ok(n) = ScmpSyscall::from(nr).get_name() {
            if !CONDITIONAL.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let count = names.len() + CONDITIONAL.len();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    for v in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                             "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}));
    }
    syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
    syscalls
        .push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": libc::AF_VSOCK, "op": "SCMP_CMP_NE"}]}));
    syscalls.push(json!({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"}));
    syscalls.push(json!({"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 1, "value": libc::TIOCSTI, "op": "SCMP_CMP_NE"}]}));
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    });
    (profile, count)
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; clock_gettime is async-signal-safe (vDSO).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `n` getppid syscalls and returns the elapsed ns.
fn getppid_loop(n: u32) -> u64 {
    let t = now_ns();
    for _ in 0..n {
        // SAFETY: raw getppid.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    now_ns() - t
}

/// In a child: load `filter` (or not), measure the load and `n` getppid calls,
/// report both through a pipe.
fn measure_child(filter: &skiff_seccomp::Filter, load: bool, n: u32) -> (u64, u64) {
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let w = wr.as_raw_fd();
    // SAFETY: fork; the child only makes raw syscalls and _exits.
    let pid = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let t = now_ns();
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let ok = !load || filter.load().is_ok();
            let load_ns = now_ns() - t;
            let loop_ns = getppid_loop(n);
            let out = [load_ns, loop_ns, ok as u64];
            // SAFETY: write from a live local array, then _exit.
            unsafe {
                libc::write(w, out.as_ptr().cast(), 24);
                libc::_exit(0)
            }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(wr);
    let mut buf = [0u8; 24];
    std::fs::File::from(rd)
        .read_exact(&mut buf)
        .expect("child report");
    wait(pid, Duration::from_secs(30));
    let v: Vec<u64> = buf
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(v[2], 1, "filter loaded");
    (v[0], v[1])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn compile_and_load_docker_sized_profile() {
    let (profile, count) = docker_sized_profile();
    let typed = typed(profile.clone());
    let mut compile_ms = Vec::new();
    let mut filter = None;
    for _ in 0..15 {
        let t = Instant::now();
        filter = Some(skiff_seccomp::compile(&typed).expect("compiles"));
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let filter = filter.unwrap();
    let t = Instant::now();
    skiff_seccomp::compile_json(&profile).expect("json compiles");
    let json_ms = t.elapsed().as_secs_f64() * 1e3;

    let cache = tempfile::tempdir().unwrap();
    skiff_seccomp::compile_cached(&typed, cache.path()).expect("cache miss compiles");
    let mut hit_us = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        skiff_seccomp::compile_cached(&typed, cache.path()).expect("cache hit");
        hit_us.push(t.elapsed().as_secs_f64() * 1e6);
    }

    let n = 200_000;
    let mut load_us = Vec::new();
    let mut filtered = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..5 {
        let (l, f) = measure_child(&filter, true, n);
        load_us.push(l as f64 / 1e3);
        filtered.push(f as f64 / n as f64);
        plain.push(measure_child(&filter, false, n).1 as f64 / n as f64);
    }
    eprintln!(
        "BENCH seccomp: {count} syscall names, {} BPF insns: compile median {:.2} ms (min {:.2}), \
         compile_json {:.2} ms, compile_cached hit median {:.0} us, load (prctl+seccomp) median {:.1} us, getppid {:.0} ns filtered vs {:.0} ns unfiltered",
        filter.instructions(),
        median(compile_ms.clone()),
        compile_ms.iter().cloned().fold(f64::MAX, f64::min),
        json_ms,
        median(hit_us),
        median(load_us),
        median(filtered),
        median(plain),
    );
}

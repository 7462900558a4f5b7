//! The real default profile of podman/containers-common (`/usr/share/containers/seccomp.json`,
//! docker's format), converted the way podman does for an unprivileged container on
//! x86_64, compiles, loads, and still lets a program exec and run.

mod common;

use std::ffi::CString;
use std::time::Instant;

use common::*;
use serde_json::{json, Value};

const PROFILE: &str = "/usr/share/containers/seccomp.json";

/// Docker format -> OCI `linux.seccomp`: x86_64 + sub-architectures; rules kept
/// when they need no capability and apply to amd64.
fn to_oci(docker: &Value) -> Value {
    let mut archs = Vec::new();
    for m in docker["archMap"].as_array().into_iter().flatten() {
        if m["architecture"] == "SCMP_ARCH_X86_64" {
            archs.push(m["architecture"].clone());
            archs.extend(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    let applies = |s: &Value| {
        let inc = &s["includes"];
        let exc = &s["excludes"];
        let inc_caps = inc["caps"].as_array().is_some_and(|c| !c.is_empty());
        let inc_arch_ok = inc["arches"]
            .as_array()
            .is_none_or(|a| a.iter().any(|x| x == "amd64" || x == "x86_64"));
        let exc_arch = exc["arches"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "amd64" || x == "x86_64"));
        !inc_caps && inc_arch_ok && !exc_arch
    };
    let syscalls: Vec<Value> = docker["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| applies(s))
        .map(|s| {
            let mut o = json!({"names": s["names"], "action": s["action"]});
            if let Some(a) = s.get("args").filter(|a| !a.is_null()) {
                o["args"] = a.clone();
            }
            if let Some(e) = s.get("errnoRet").filter(|e| !e.is_null()) {
                o["errnoRet"] = e.clone();
            }
            o
        })
        .collect();
    let mut out = json!({"defaultAction": docker["defaultAction"], "architectures": archs, "syscalls": syscalls});
    if let Some(e) = docker.get("defaultErrnoRet").filter(|e| !e.is_null()) {
        out["defaultErrnoRet"] = e.clone();
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[test]
fn podman_default_profile_runs_a_program() {
    let Ok(text) = std::fs::read_to_string(PROFILE) else {
        eprintln!("SKIP: {PROFILE} not present (containers-common not installed)");
        return;
    };
    let oci = to_oci(&serde_json::from_str(&text).expect("profile JSON"));
    let names: usize = oci["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["names"].as_array().unwrap().len())
        .sum();

    let t = Instant::now();
    let filter = skiff_seccomp::compile_json(&oci).expect("podman's profile compiles");
    let json_ms = t.elapsed().as_secs_f64() * 1e3;
    // The typed path (what the runtime uses) agrees.
    let typed_filter = skiff_seccomp::compile(&typed(oci.clone())).expect("typed compile");
    assert_eq!(typed_filter.instructions(), filter.instructions());
    eprintln!(
        "BENCH seccomp podman default: {names} names, {} BPF insns, compile_json {json_ms:.1} ms",
        filter.instructions()
    );

    let true_bin = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(true_bin) = true_bin else {
        eprintln!("SKIP: no true binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let made = cpath(&dir.path().join("made"));
    let prog = CString::new(true_bin).unwrap();
    let argv = [prog.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let missing = CString::new("/nonexistent-skiff").unwrap();
    let got = exit_code(&filter, || {
        // SAFETY: raw syscalls with valid NUL-terminated arguments; execve replaces
        // the child image (its exit code is the program's).
        unsafe {
            if rc(libc::mkdir(made.as_ptr(), 0o700) as libc::c_long) != 0 {
                return 1;
            }
            // Without CAP_SYS_CHROOT podman's profile answers chroot with EPERM
            // (the kernel would say ENOENT for this path).
            if rc(libc::syscall(libc::SYS_chroot, missing.as_ptr())) != libc::EPERM {
                return 2;
            }
            libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
            3
        }
    });
    assert_eq!(
        got, 0,
        "mkdir allowed, chroot -> EPERM, execve of true succeeded"
    );
    assert!(dir.path().join("made").is_dir());
}

//! seccomp through the runtime: a `linux.seccomp` profile in config.json is
//! applied to the container's process, checked from inside (the blocked
//! syscall's errno, SIGSYS kills) and, for SCMP_ACT_NOTIFY, by a listener
//! that receives the notify fd and the container state over
//! `listenerPath` (config-linux.md).

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn profile(default: &str, rules: Value) -> Value {
    json!({
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    })
}

#[test]
fn errno_rule_returns_configured_errno() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("sc-errno");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]),
    );
    // busybox prints strerror: EACCES = "Permission denied" (root would
    // otherwise be allowed to create the directory).
    c.sh("mkdir /tmp/blocked 2>&1; echo rc=$?; touch /tmp/allowed && echo touched");
    let out = c.run();
    out.assert_ok("run");
    assert!(out.stdout.contains("Permission denied"), "{}", out.stdout);
    assert!(out.stdout.contains("rc=1"), "{}", out.stdout);
    assert!(out.stdout.contains("touched"), "{}", out.stdout);
    c.finish();
}

#[test]
fn default_errno_ret_and_kill_process() {
    if !need_root() {
        return;
    }
    // default ERRNO with defaultErrnoRet; the shell and its tools need a
    // few syscalls, so allow-list broadly and block one by default action.
    let mut c = Container::new("sc-kill");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]),
    );
    // busybox runs `uname` in the shell's own process: the whole container
    // process is killed by SIGSYS (exit status 128+31).
    c.sh("uname -a; echo survived");
    let out = c.run();
    assert_eq!(out.code, Some(128 + libc::SIGSYS), "{out:?}");
    assert!(!out.stdout.contains("survived"), "{out:?}");
    c.finish();

    let mut c = Container::new("sc-deferr");
    let mut p = profile("SCMP_ACT_ERRNO", json!([]));
    p["defaultErrnoRet"] = json!(1);
    // everything is refused with EPERM: the exec of the process itself fails
    c.config["linux"]["seccomp"] = p;
    let out = c.run();
    assert!(!out.ok(), "a deny-all profile let the process run: {out:?}");
    c.finish();
}

#[test]
fn notify_delivers_fd_and_state_to_listener() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("sc-notify");
    let sock = c.scratch().join("listener.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(false).unwrap();
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
    );
    c.config["linux"]["seccomp"]["listenerPath"] = json!(sock.to_string_lossy());
    c.config["linux"]["seccomp"]["listenerMetadata"] = json!("test-metadata");
    c.sh("mkdir /tmp/n 2>&1; echo rc=$?");
    let id = c.id.clone();
    // The listener: take the fd and the state, then close the fd, which
    // makes the pending (and later) notified syscalls fail with ENOSYS.
    let handle = std::thread::spawn(move || {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let mut buf = vec![0u8; 65536];
        let mut payload = Vec::new();
        let mut got_fd = false;
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let mut cspace = nix::cmsg_space!([std::os::fd::RawFd; 4]);
            let Ok(msg) = recvmsg::<()>(fd, &mut iov, Some(&mut cspace), MsgFlags::empty()) else {
                break;
            };
            for cm in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = cm {
                    got_fd |= !fds.is_empty();
                    // Closing the notify fd makes notified syscalls fail.
                    for f in fds {
                        // SAFETY: the fd was just received and is ours.
                        unsafe { libc::close(f) };
                    }
                }
            }
            let n = msg.bytes;
            if n == 0 {
                break;
            }
            payload.extend_from_slice(&buf[..n]);
        }
        drop(stream);
        (got_fd, payload)
    });
    let out = c.run();
    let (got_fd, payload) = handle.join().unwrap();
    assert!(got_fd, "listener got no fd");
    let text = String::from_utf8_lossy(&payload).into_owned();
    assert!(text.contains("seccompFd"), "state: {text}");
    assert!(text.contains(&id), "state names the container: {text}");
    assert!(text.contains("test-metadata"), "metadata: {text}");
    out.assert_ok("run");
    assert!(
        out.stdout.contains("rc=1"),
        "mkdir was not refused: {}",
        out.stdout
    );
    assert!(!c.rootfs().join("tmp/n").exists());
    c.finish();
}

#[test]
fn bad_seccomp_profile_is_refused_up_front() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("sc-bad");
    c.config["linux"]["seccomp"] = profile(
        "SCMP_ACT_ALLOW",
        json!([{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]),
    );
    let out = c.run();
    out.assert_fail("bad action");
    if is_skiff() {
        assert!(out.stderr.contains("SCMP_ACT_FOO"), "{}", out.stderr);
    }
    c.finish();
}

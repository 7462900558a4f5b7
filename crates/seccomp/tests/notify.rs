//! SCMP_ACT_NOTIFY end to end: the child loads the filter and reports its notify fd
//! number with write(2) (as runc's init does); the test, playing the runtime, takes
//! the fd with pidfd_getfd and calls `send_to_listener`; a listener thread, playing
//! the seccomp agent, receives fd + container process state over the unix socket and
//! answers the child's syscalls with libseccomp's notify API.

mod common;

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::wait::WaitStatus;
use serde_json::json;

/// What the agent saw.
struct Seen {
    state: serde_json::Value,
    fd_count: usize,
    syscalls: Vec<String>,
    pids: Vec<u32>,
}

/// The seccomp agent: accept one connection, take the fd + JSON, answer two
/// notifications: the first with -EMLINK, the second with a fake success (0).
fn agent(listener: UnixListener) -> Seen {
    let (mut conn, _) = listener.accept().expect("accept");
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        (msg.bytes, fds)
    };
    buf.truncate(n);
    conn.read_to_end(&mut buf)
        .expect("read rest until the runtime closes");
    let state: serde_json::Value = serde_json::from_slice(&buf).expect("state JSON");
    assert_eq!(fds.len(), 1, "exactly one fd via SCM_RIGHTS");
    // SAFETY: the fd was just received via SCM_RIGHTS and is owned by nobody else.
    let notify = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let mut syscalls = Vec::new();
    let mut pids = Vec::new();
    for i in 0..2 {
        let req = ScmpNotifReq::receive(notify.as_raw_fd()).expect("notification");
        syscalls.push(
            req.data
                .syscall
                .get_name_by_arch(req.data.arch)
                .unwrap_or_else(|_| "?".into()),
        );
        pids.push(req.pid);
        let resp = if i == 0 {
            ScmpNotifResp::new_error(req.id, -libc::EMLINK, ScmpNotifRespFlags::empty())
        } else {
            ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::empty())
        };
        resp.respond(notify.as_raw_fd()).expect("respond");
    }
    Seen {
        state,
        fd_count: fds.len(),
        syscalls,
        pids,
    }
}

fn pidfd_getfd(pid: i32, fd: i32) -> OwnedFd {
    // SAFETY: pidfd_open/pidfd_getfd with valid arguments; both return fresh fds.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        assert!(got >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(got as i32)
    }
}

fn notify_roundtrip(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).expect("bind listener");
    let agent = std::thread::spawn(move || agent(listener));

    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let (c1, c2) = (cpath(&one), cpath(&two));
    let filter = skiff_seccomp::compile_json(&json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "MKNOD=/dev/null;skiff-test",
        "flags": flags,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    }))
    .expect("compiles");
    assert!(filter.uses_notify());

    let (rd, wr) = nix::unistd::pipe().expect("pipe");
    let wr_raw = wr.as_raw_fd();
    let pid = spawn(&filter, |fd| {
        let Some(fd) = fd else { return 2 };
        let n: i32 = fd.as_raw_fd();
        std::mem::forget(fd); // keep it open for pidfd_getfd
                              // SAFETY: write of 4 bytes from a live local; mkdir with valid paths.
        unsafe {
            libc::write(wr_raw, (&n as *const i32).cast(), 4);
            let first = rc(libc::mkdir(c1.as_ptr(), 0o700) as libc::c_long);
            let second = rc(libc::mkdir(c2.as_ptr(), 0o700) as libc::c_long);
            if first == libc::EMLINK && second == 0 {
                0
            } else {
                10 + first.min(100)
            }
        }
    });
    drop(wr);
    let mut num = [0u8; 4];
    std::fs::File::from(rd)
        .read_exact(&mut num)
        .expect("child reports its notify fd");
    let notify = pidfd_getfd(pid.as_raw(), i32::from_ne_bytes(num));
    let state = json!({
        "ociVersion": "1.2.1", "id": "skiff-seccomp-test", "status": "creating",
        "pid": pid.as_raw(), "bundle": "/nonexistent", "annotations": {"k": "v"}
    });
    let listener_path = filter
        .listener_path()
        .expect("listenerPath kept")
        .to_path_buf();
    skiff_seccomp::send_to_listener(
        &listener_path,
        notify.as_fd(),
        pid.as_raw(),
        filter.listener_metadata(),
        &state,
    )
    .expect("send_to_listener");
    drop(notify);

    let st = wait(pid, Duration::from_secs(20));
    let seen = agent.join().expect("agent thread");
    assert_eq!(
        st,
        WaitStatus::Exited(pid, 0),
        "first mkdir got EMLINK, second a fake success"
    );
    assert!(
        !one.exists() && !two.exists(),
        "the agent answered; no directory was made"
    );
    assert_eq!(seen.fd_count, 1);
    assert_eq!(seen.state["fds"], json!(["seccompFd"]));
    assert_eq!(seen.state["pid"], json!(pid.as_raw()));
    assert_eq!(seen.state["metadata"], json!("MKNOD=/dev/null;skiff-test"));
    assert_eq!(seen.state["state"], state);
    assert!(seen.state["ociVersion"].is_string());
    assert!(
        seen.syscalls.iter().all(|s| s == "mkdir" || s == "mkdirat"),
        "{:?}",
        seen.syscalls
    );
    assert!(seen.pids.iter().all(|p| *p as i32 == pid.as_raw()));
}

#[test]
fn notify_delivers_to_listener_and_agent_answers() {
    notify_roundtrip(&[]);
}

#[test]
fn notify_with_tsync_and_wait_killable_recv() {
    let supported = skiff_seccomp::features()["supportedFlags"].clone();
    let want = [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ];
    if !want
        .iter()
        .all(|w| supported.as_array().unwrap().iter().any(|s| s == w))
    {
        eprintln!("SKIP: kernel lacks one of {want:?} (supported: {supported})");
        return;
    }
    notify_roundtrip(&want);
}

#[test]
fn send_to_listener_reports_a_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let (r, _w) = nix::unistd::pipe().unwrap();
    let e = skiff_seccomp::send_to_listener(&path, r.as_fd(), 1, "", &json!({}))
        .expect_err("no listener");
    let msg = e.to_string();
    assert!(
        msg.starts_with("linux.seccomp.listenerPath") && msg.contains("connecting"),
        "{msg}"
    );
}

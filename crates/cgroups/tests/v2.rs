//! The pure cgroup v2 manager on a cgroup2 hierarchy mounted by the test in a
//! private mount namespace (the test thread `unshare(CLONE_NEWNS)`s). On a
//! hybrid host only controllers not bound to v1 can be enabled there
//! (`hugetlb` on the development host); the rest is what cgroup2 has built
//! in: `cgroup.procs`, `cgroup.freeze`, `cgroup.kill`, the eBPF device filter.

mod common;

use std::ffi::CString;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use skiff_cgroups::{new_manager_with, Config, Layout, Manager, MountTable};

/// Unshares the calling thread's mount namespace and mounts cgroup2 on a
/// fresh temp dir; `None` (after a SKIP line) when that is not possible.
fn private_cgroup2(test: &str) -> Option<PathBuf> {
    if !root(test) {
        return None;
    }
    // SAFETY: unshare/mount take no pointers except the NUL-terminated
    // strings below, which outlive the calls.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            eprintln!(
                "SKIP: {test}: unshare(CLONE_NEWNS): {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let root = CString::new("/").unwrap();
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            panic!("make / private: {}", std::io::Error::last_os_error());
        }
        let dir = std::env::temp_dir().join(unique("cg2mnt"));
        std::fs::create_dir_all(&dir).unwrap();
        let target = CString::new(dir.to_str().unwrap()).unwrap();
        let fstype = CString::new("cgroup2").unwrap();
        if libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            eprintln!("SKIP: {test}: mount cgroup2: {e}");
            return None;
        }
        Some(dir)
    }
}

struct V2 {
    mnt: PathBuf,
    m: Box<dyn Manager>,
}

impl V2 {
    fn new(test: &str) -> Option<V2> {
        let mnt = private_cgroup2(test)?;
        let table = MountTable::unified(&mnt).expect("table");
        assert_eq!(table.layout().unwrap(), Layout::V2);
        let id = unique("v2");
        let path = format!("/{}/{id}", unique("v2parent"));
        let cfg = Config {
            cgroups_path: Some(&path),
            id: &id,
            systemd: false,
            rootless: false,
        };
        let m = new_manager_with(&cfg, &table).expect("manager");
        assert_eq!(m.layout(), Layout::V2);
        m.create().expect("create");
        Some(V2 { mnt, m })
    }
    fn dir(&self) -> PathBuf {
        self.m.hierarchies()[0].path.clone()
    }
}

impl Drop for V2 {
    fn drop(&mut self) {
        let _ = self.m.kill_all(libc::SIGKILL);
        self.m.destroy().expect("destroy");
        let d = self.dir();
        assert!(!d.exists(), "{} left behind", d.display());
        std::fs::remove_dir(d.parent().unwrap()).expect("remove parent");
        let target = CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: umount2 with a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

fn cgroup_line(pid: u32) -> String {
    read(format!("/proc/{pid}/cgroup"))
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .to_owned()
}

#[test]
fn v2_create_join_and_hugetlb() {
    let Some(v) = V2::new("v2_create_join_and_hugetlb") else {
        return;
    };
    let m = &*v.m;
    let d = v.dir();
    assert!(d.join("cgroup.procs").exists());
    let rel = d.strip_prefix(&v.mnt).unwrap();
    let mut child = parked("sleep 30");
    let pid = child.id();
    m.add_task(pid as i32).unwrap();
    assert_eq!(cgroup_line(pid), format!("0::/{}", rel.display()));
    assert_eq!(m.pids().unwrap(), vec![pid as i32]);
    let avail = read(v.mnt.join("cgroup.controllers"));
    if avail.split_whitespace().any(|c| c == "hugetlb") {
        let parent_ctl = read(d.parent().unwrap().join("cgroup.subtree_control"));
        assert!(
            parent_ctl.contains("hugetlb"),
            "parent subtree_control: {parent_ctl}"
        );
        m.apply(&res(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 6291456}]}"#,
        ))
        .unwrap();
        assert_eq!(read(d.join("hugetlb.2MB.max")).trim(), "6291456");
        m.apply(&res(r#"{"unified": {"hugetlb.2MB.max": "max"}}"#))
            .unwrap();
        assert_eq!(read(d.join("hugetlb.2MB.max")).trim(), "max");
        let s = m.stats().unwrap();
        assert!(s.hugetlb.contains_key("2MB"), "{:?}", s.hugetlb);
    } else {
        eprintln!("SKIP: v2_create_join_and_hugetlb: hugetlb not on cgroup2 here ({avail:?})");
    }
    if !avail.split_whitespace().any(|c| c == "memory") {
        let e = m
            .apply(&res(r#"{"memory": {"limit": 1048576}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.memory") && e.contains("not available"),
            "{e}"
        );
        let e = m
            .apply(&res(r#"{"unified": {"memory.max": "1"}}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unified.memory.max"), "{e}");
    }
    // cpu.stat is built in: stats work without the cpu controller
    go(&mut child);
    let s = m.stats().unwrap();
    let _ = s.cpu.usage.total;
    m.kill_all(libc::SIGKILL).unwrap();
    child.wait().unwrap();
}

#[test]
fn v2_freeze_thaw_and_kill() {
    let Some(v) = V2::new("v2_freeze_thaw_and_kill") else {
        return;
    };
    let m = &*v.m;
    let mut child = parked("while :; do :; done");
    let pid = child.id();
    m.add_task(pid as i32).unwrap();
    go(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    m.freeze().unwrap();
    assert_eq!(read(v.dir().join("cgroup.freeze")).trim(), "1");
    assert!(m.is_frozen().unwrap());
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t0, "frozen process ran");
    let st = read(format!("/proc/{pid}/status"));
    assert!(!st.contains("State:\tR"), "{st}");
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    assert!(wait_for(5, || cpu_ticks(pid) > t0));
    // SIGKILL goes through cgroup.kill
    m.kill_all(libc::SIGKILL).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(wait_for(5, || m.pids().unwrap().is_empty()));
}

#[test]
fn v2_device_filter_is_enforced_and_replaced() {
    let Some(v) = V2::new("v2_device_filter_is_enforced_and_replaced") else {
        return;
    };
    let m = &*v.m;
    let probe =
        "if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-open; else echo zero-denied; fi; \
                 echo x >/dev/null && echo null-ok";
    let run = |m: &dyn Manager| {
        let mut child = parked(probe);
        m.add_task(child.id() as i32).unwrap();
        go(&mut child);
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    m.apply(&res(r#"{"devices": [{"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#))
        .expect("attach device filter");
    let out = run(m);
    assert!(
        out.contains("zero-denied") && out.contains("null-ok"),
        "{out}"
    );
    // update: the new program replaces the old one
    m.apply(&res(r#"{"devices": [{"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "access": "rw"}]}"#))
        .expect("replace device filter");
    let out = run(m);
    assert!(
        out.contains("zero-open") && out.contains("null-ok"),
        "{out}"
    );
    assert_eq!(skiff_cgroups::attached_device_filters(&v.dir()).unwrap(), 1);
}

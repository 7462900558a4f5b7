//! The pure v1 layout: the host's v1 hierarchies without the cgroup2 mount
//! (a table built from the host's mountinfo with the cgroup2 line left out),
//! so the v1-only paths run on real cgroups: SIGKILL without `cgroup.kill`
//! (freeze, kill, thaw), pids from a v1 hierarchy, `unified` refused.

mod common;

use common::*;
use skiff_cgroups::{new_manager_with, Config, Layout, MountTable};

fn v1_table() -> Option<MountTable> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let t = MountTable::parse(&text);
    if t.v1.is_empty() {
        eprintln!("SKIP: no cgroup v1 hierarchy on this host");
        return None;
    }
    Some(MountTable { v1: t.v1, v2: None })
}

#[test]
fn v1_only_layout_kills_without_cgroup_kill() {
    if !root("v1_only_layout_kills_without_cgroup_kill") {
        return;
    }
    let Some(t) = v1_table() else { return };
    assert_eq!(t.layout().unwrap(), Layout::V1);
    let id = unique("v1");
    let path = format!("/{id}");
    let cfg = Config {
        cgroups_path: Some(&path),
        id: &id,
        systemd: false,
        rootless: false,
    };
    let m = new_manager_with(&cfg, &t).unwrap();
    assert_eq!(m.layout(), Layout::V1);
    assert!(m.hierarchies().iter().all(|h| h.version == 1));
    m.create().unwrap();
    let e = m
        .apply(&res(r#"{"unified": {"pids.max": "5"}}"#))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.resources.unified") && e.contains("v1 only"),
        "{e}"
    );
    if t.v1_with("hugetlb").is_none() {
        let e = m
            .apply(&res(
                r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}"#,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.hugepageLimits") && e.contains("hugetlb"),
            "{e}"
        );
    }
    let mut child = parked("sleep 30 & sleep 30 & wait");
    let pid = child.id() as i32;
    m.add_task(pid).unwrap();
    go(&mut child);
    assert!(
        wait_for(5, || m.pids().unwrap().len() == 3),
        "{:?}",
        m.pids()
    );
    m.kill_all(libc::SIGKILL).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(wait_for(5, || m.pids().unwrap().is_empty()));
    assert!(!m.is_frozen().unwrap(), "left frozen after kill_all");
    m.destroy().unwrap();
    for h in m.hierarchies() {
        assert!(!h.path.exists());
    }
}

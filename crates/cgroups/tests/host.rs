//! Tests against the host's own cgroup mounts (hybrid on the development
//! host): real cgroups, real processes, values read back from the host's
//! files. Need root; print `SKIP:` otherwise.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use skiff_cgroups::{detect_layout, new_manager, validate, Config, Layout, Manager};

fn manager(path: &str, id: &str) -> Box<dyn Manager> {
    let cfg = Config {
        cgroups_path: Some(path),
        id,
        systemd: false,
        rootless: false,
    };
    new_manager(&cfg).expect("new_manager")
}

/// A created cgroup that is destroyed (and checked gone) on drop.
struct Cg {
    m: Box<dyn Manager>,
}

impl Cg {
    fn new(tag: &str) -> Cg {
        let id = unique(tag);
        let m = manager(&format!("/{id}"), &id);
        m.create().expect("create");
        Cg { m }
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = self.m.kill_all(libc::SIGKILL);
        self.m.destroy().expect("destroy");
        for h in self.m.hierarchies() {
            assert!(!h.path.exists(), "{} left behind", h.path.display());
        }
    }
}

fn trimmed(p: impl AsRef<Path>) -> String {
    read(p.as_ref()).trim().to_owned()
}

#[test]
fn layout_is_detected() {
    let l = detect_layout().expect("layout");
    eprintln!("host cgroup layout: {l:?}");
    assert_eq!(detect_layout().unwrap(), l);
}

#[test]
fn apply_writes_every_field_and_reads_back() {
    if !root("apply_writes_every_field_and_reads_back") {
        return;
    }
    let cg = Cg::new("apply");
    let m = &*cg.m;
    let r = res(r#"{
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "swappiness": 10, "disableOOMKiller": false, "checkBeforeUpdate": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                    {"allow": true, "type": "c", "major": 136, "access": "rwm"}]
    }"#);
    validate(&r).expect("validate");
    m.apply(&r).expect("apply");
    let mem = dir_of(m, "memory");
    let cpu = dir_of(m, "cpu");
    let v2 = m.layout() == Layout::V2;
    if v2 {
        assert_eq!(trimmed(mem.join("memory.max")), "67108864");
        assert_eq!(trimmed(mem.join("memory.low")), "33554432");
        assert_eq!(trimmed(cpu.join("cpu.max")), "50000 100000");
        assert_eq!(trimmed(cpu.join("cpu.weight")), "59");
    } else {
        assert_eq!(trimmed(mem.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(trimmed(mem.join("memory.soft_limit_in_bytes")), "33554432");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                trimmed(mem.join("memory.memsw.limit_in_bytes")),
                "134217728"
            );
        }
        assert_eq!(trimmed(mem.join("memory.swappiness")), "10");
        assert_eq!(trimmed(cpu.join("cpu.shares")), "512");
        assert_eq!(trimmed(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(trimmed(cpu.join("cpu.cfs_period_us")), "100000");
        let devs = trimmed(dir_of(m, "devices").join("devices.list"));
        assert_eq!(devs, "c 1:3 rw\nc 136:* rwm");
    }
    assert_eq!(trimmed(dir_of(m, "cpuset").join("cpuset.cpus")), "0");
    assert_eq!(trimmed(dir_of(m, "pids").join("pids.max")), "42");

    // update: lower the limit, unlimited pids, raise shares
    let u = res(
        r#"{"memory": {"limit": 50331648, "swap": 50331648}, "pids": {"limit": 0},
                    "cpu": {"shares": 2048}}"#,
    );
    m.apply(&u).expect("update");
    if !v2 {
        assert_eq!(trimmed(mem.join("memory.limit_in_bytes")), "50331648");
        assert_eq!(trimmed(cpu.join("cpu.shares")), "2048");
    }
    assert_eq!(trimmed(dir_of(m, "pids").join("pids.max")), "max");
    if !v2 {
        // re-applying the same device rules keeps the kernel's list
        m.apply(&r).expect("re-apply");
        let devices = dir_of(m, "devices");
        assert_eq!(
            trimmed(devices.join("devices.list")),
            "c 1:3 rw\nc 136:* rwm"
        );
    }
}

#[test]
fn hugetlb_goes_where_the_controller_is() {
    if !root("hugetlb_goes_where_the_controller_is") {
        return;
    }
    let cg = Cg::new("huge");
    let m = &*cg.m;
    let dir = dir_of(m, "hugetlb");
    let v1 = m
        .hierarchies()
        .iter()
        .any(|h| h.version == 1 && h.controllers.split(',').any(|c| c == "hugetlb"));
    let file = if v1 {
        "hugetlb.2MB.limit_in_bytes"
    } else {
        "hugetlb.2MB.max"
    };
    if !dir.join(file).exists() {
        eprintln!(
            "SKIP: hugetlb_goes_where_the_controller_is: no {file} in {}",
            dir.display()
        );
        return;
    }
    m.apply(&res(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
    ))
    .expect("apply hugetlb");
    assert_eq!(trimmed(dir.join(file)), "4194304");
    if m.layout() == Layout::Hybrid && !v1 {
        // the unified key form reaches the same file
        m.apply(&res(r#"{"unified": {"hugetlb.2MB.max": "8388608"}}"#))
            .expect("unified");
        assert_eq!(trimmed(dir.join(file)), "8388608");
        // a controller bound to v1 is not available on cgroup2 here
        let e = m
            .apply(&res(r#"{"unified": {"memory.max": "1000000"}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.resources.unified.memory.max") && e.contains("not available"),
            "{e}"
        );
    }
    let e = m
        .apply(&res(
            r#"{"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pageSize") && e.contains("3MB"), "{e}");
}

#[test]
fn process_joins_every_hierarchy_and_is_killed() {
    if !root("process_joins_every_hierarchy_and_is_killed") {
        return;
    }
    let cg = Cg::new("join");
    let m = &*cg.m;
    let mut child = parked("while :; do :; done");
    let pid = child.id();
    m.add_task(pid as i32).expect("add_task");
    let own = read(format!("/proc/{pid}/cgroup"));
    for h in m.hierarchies() {
        let rel = h.path.strip_prefix(&h.mount_point).unwrap();
        let want = format!("{}:/{}", h.controllers, rel.display());
        assert!(
            own.lines().any(|l| l.ends_with(&want)),
            "{want} not in\n{own}"
        );
    }
    go(&mut child);
    assert!(m.pids().unwrap().contains(&(pid as i32)));
    std::thread::sleep(Duration::from_millis(300));
    let s = m.stats().expect("stats");
    assert!(s.cpu.usage.total > 0, "cpu usage {:?}", s.cpu);
    assert!(s.pids.current >= 1, "pids {:?}", s.pids);
    // (v1 does not move charges with the task: usage may still be 0 here)
    assert!(
        s.memory.usage.limit > 0 && !s.memory.raw.is_empty(),
        "memory {:?}",
        s.memory.usage
    );
    let j = serde_json::to_value(&s).unwrap();
    assert!(!s.cpuset.cpus.is_empty(), "{:?}", s.cpuset);
    for k in ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"] {
        assert!(j.get(k).is_some(), "stats json lacks {k}: {j}");
    }
    if m.hierarchies().iter().any(|h| h.version == 2) {
        assert!(j["cpu"]["psi"]["some"]["total"].is_u64(), "no cpu psi: {j}");
    }
    eprintln!("stats: {j}");
    m.kill_all(libc::SIGKILL).expect("kill_all");
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(wait_for(5, || m.pids().unwrap().is_empty()));
}

#[test]
fn memory_hog_is_oom_killed_at_the_limit() {
    if !root("memory_hog_is_oom_killed_at_the_limit") {
        return;
    }
    let cg = Cg::new("oom");
    let m = &*cg.m;
    m.apply(&res(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#))
        .or_else(|_| m.apply(&res(r#"{"memory": {"limit": 33554432}}"#)))
        .expect("apply memory");
    let before = m.oom_kill_count().expect("oom count");
    let notifier = m.oom_notifier().expect("oom notifier");
    let mut child = parked("exec dd if=/dev/zero of=/dev/null bs=128M count=1");
    m.add_task(child.id() as i32).unwrap();
    go(&mut child);
    let st = child.wait().unwrap();
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&notifier),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    assert_eq!(n, 1, "the OOM notifier did not fire");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "dd was not OOM-killed: {st:?}"
    );
    let after = m.oom_kill_count().unwrap();
    assert!(after > before, "oom_kill {before} -> {after}");
    let s = m.stats().unwrap();
    assert!(
        s.memory.usage.max >= 32 << 20,
        "peak below the limit: {:?}",
        s.memory.usage
    );
}

#[test]
fn pids_max_stops_forking() {
    if !root("pids_max_stops_forking") {
        return;
    }
    let cg = Cg::new("pids");
    let m = &*cg.m;
    m.apply(&res(r#"{"pids": {"limit": 5}}"#)).unwrap();
    let mut child = parked(
        "i=0; while [ $i -lt 20 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo forked; sleep 30",
    );
    m.add_task(child.id() as i32).unwrap();
    go(&mut child);
    // dash gives up on the first refused fork ("Cannot fork")
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fork"), "stderr: {err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("forked"));
    let n = m.pids().unwrap().len();
    assert!((1..=5).contains(&n), "{n} processes left with pids.max 5");
    let events = read(dir_of(m, "pids").join("pids.events"));
    assert!(!events.contains("max 0"), "no fork was refused: {events}");
    m.kill_all(libc::SIGKILL).unwrap();
    assert!(wait_for(5, || m.pids().unwrap().is_empty()));
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    if !root("freeze_stops_and_thaw_resumes") {
        return;
    }
    let cg = Cg::new("freeze");
    let m = &*cg.m;
    let mut child = parked("while :; do :; done");
    let pid = child.id();
    m.add_task(pid as i32).unwrap();
    go(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    m.freeze().expect("freeze");
    assert!(m.is_frozen().unwrap());
    let state = read(format!("/proc/{pid}/status"));
    let state = state
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap()
        .to_owned();
    assert!(!state.contains("R (running)"), "{state}");
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), t0, "a frozen process used CPU ({state})");
    m.thaw().expect("thaw");
    assert!(!m.is_frozen().unwrap());
    assert!(
        wait_for(5, || cpu_ticks(pid) > t0),
        "thawed process does not run"
    );
    // a paused container stays paused when signalled with SIGTERM...
    m.freeze().unwrap();
    m.kill_all(libc::SIGTERM).unwrap();
    assert!(
        m.is_frozen().unwrap(),
        "kill_all(SIGTERM) thawed a paused container"
    );
    // ...and dies once thawed; kill_all with a catchable signal on a
    // running container goes through freeze/signal/thaw
    m.thaw().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    let mut child = parked("while :; do :; done");
    m.add_task(child.id() as i32).unwrap();
    go(&mut child);
    m.kill_all(libc::SIGTERM).unwrap();
    assert!(!m.is_frozen().unwrap());
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
}

#[test]
fn device_rules_are_enforced() {
    if !root("device_rules_are_enforced") {
        return;
    }
    let cg = Cg::new("dev");
    let m = &*cg.m;
    m.apply(&res(r#"{"devices": [{"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#))
        .expect("apply devices");
    let mut child = parked(
        "if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-open; else echo zero-denied; fi; \
         echo x >/dev/null && echo null-ok",
    );
    m.add_task(child.id() as i32).unwrap();
    go(&mut child);
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("zero-denied") && out.contains("null-ok"),
        "{out}"
    );
}

#[test]
fn default_path_and_relative_path() {
    if !root("default_path_and_relative_path") {
        return;
    }
    let id = unique("default");
    let cfg = Config {
        cgroups_path: None,
        id: &id,
        systemd: false,
        rootless: false,
    };
    let m = new_manager(&cfg).unwrap();
    for h in m.hierarchies() {
        assert_eq!(h.path, h.mount_point.join("skiff").join(&id));
    }
    // same config, same paths (the runtime re-creates managers later)
    assert_eq!(new_manager(&cfg).unwrap().hierarchies(), m.hierarchies());
    m.create().unwrap();
    m.destroy().unwrap();
    for h in m.hierarchies() {
        assert!(!h.path.exists());
        // the shared parent goes too unless another container uses it
        let _ = std::fs::remove_dir(h.path.parent().unwrap());
    }

    let rel = unique("rel");
    let cfg = Config {
        cgroups_path: Some(&rel),
        id: &id,
        systemd: false,
        rootless: false,
    };
    let m = new_manager(&cfg).unwrap();
    let own = read("/proc/self/cgroup");
    for h in m.hierarchies() {
        let line = own
            .lines()
            .find(|l| {
                let mut it = l.splitn(3, ':');
                let (_, c) = (it.next(), it.next().unwrap());
                c == h.controllers
            })
            .unwrap();
        let mut mine = Path::new(line.rsplit(':').next().unwrap().trim_start_matches('/'));
        if m.layout() == Layout::V2 {
            // runc's fs2: below the parent of our own cgroup
            mine = mine.parent().unwrap_or(Path::new(""));
        }
        assert_eq!(h.path, h.mount_point.join(mine).join(&rel), "{line}");
    }
    m.create().unwrap();
    m.destroy().unwrap();
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    if !root("bad_input_is_refused_before_anything_is_created") {
        return;
    }
    for (json, needle) in [
        (
            r#"{"memory": {"limit": -5}}"#,
            "linux.resources.memory.limit: -5 is not a valid limit",
        ),
        (r#"{"cpu": {"quota": -7}}"#, "linux.resources.cpu.quota"),
        (
            r#"{"cpu": {"shares": 1000000}}"#,
            "linux.resources.cpu.shares",
        ),
        (
            r#"{"unified": {"bogus.max": "1"}}"#,
            "unknown cgroup v2 controller \"bogus\"",
        ),
        (r#"{"unified": {"../memory.max": "1"}}"#, "no '/' or '..'"),
        (r#"{"cpu": {"cpus": "0-4095"}}"#, "linux.resources.cpu.cpus"),
        (
            r#"{"blockIO": {"weight": 5000}}"#,
            "linux.resources.blockIO.weight",
        ),
    ] {
        let e = validate(&res(json)).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
    // new_manager itself creates nothing
    let id = unique("bad");
    let m = manager(&format!("/{id}"), &id);
    for h in m.hierarchies() {
        assert!(!h.path.exists());
    }
    // apply re-checks the cpuset against the parent's effective set
    m.create().unwrap();
    let e = m
        .apply(&res(r#"{"cpu": {"cpus": "4095"}}"#))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cpu.cpus") && e.contains("effective_cpus"),
        "{e}"
    );
    // host-specific absences are clear errors only when the field is set
    let net = m.apply(&res(r#"{"network": {"classID": 1048577}}"#));
    if m.hierarchies()
        .iter()
        .all(|h| !h.controllers.contains("net_cls"))
    {
        let e = net.unwrap_err().to_string();
        assert!(
            e.contains("linux.resources.network.classID") && e.contains("net_cls"),
            "{e}"
        );
    }
    m.apply(&res(r#"{"network": {}, "blockIO": {}}"#))
        .expect("empty groups are fine");
    let bio = m.apply(&res(r#"{"blockIO": {"weight": 500}}"#));
    let blkio = dir_of(&*m, "blkio");
    if !blkio.join("blkio.weight").exists()
        && !blkio.join("blkio.bfq.weight").exists()
        && m.layout() != Layout::V2
    {
        let e = bio.unwrap_err().to_string();
        assert!(e.contains("linux.resources.blockIO.weight"), "{e}");
    }
    m.destroy().unwrap();
}

#[test]
fn systemd_driver_names_what_is_missing() {
    let cfg = Config {
        cgroups_path: Some("system.slice:skiff:abc"),
        id: "abc",
        systemd: true,
        rootless: false,
    };
    let e = new_manager(&cfg).unwrap_err().to_string();
    assert!(e.contains("systemd") && e.contains("D-Bus"), "{e}");
    let bad = Config {
        cgroups_path: Some("/not/a/slice"),
        ..cfg
    };
    let e = new_manager(&bad).unwrap_err().to_string();
    assert!(e.contains("slice:prefix:name"), "{e}");
    assert_eq!(
        skiff_cgroups::systemd_cgroup_path("system.slice:skiff:abc", "abc").unwrap(),
        "/system.slice/skiff-abc.scope"
    );
}

#[test]
fn destroy_is_ok_when_gone_and_removes_children() {
    if !root("destroy_is_ok_when_gone_and_removes_children") {
        return;
    }
    let id = unique("gone");
    let m = manager(&format!("/{id}"), &id);
    m.destroy().expect("destroy of a missing cgroup");
    m.create().unwrap();
    // a live process makes destroy fail, naming it
    let mut child = parked("sleep 30");
    m.add_task(child.id() as i32).unwrap();
    let e = m.destroy().unwrap_err().to_string();
    assert!(
        e.contains("rmdir") && e.contains(&child.id().to_string()),
        "{e}"
    );
    m.kill_all(libc::SIGKILL).unwrap();
    child.wait().unwrap();
    m.create().unwrap();
    for h in m.hierarchies() {
        std::fs::create_dir(h.path.join("sub")).unwrap();
    }
    m.destroy().unwrap();
    for h in m.hierarchies() {
        assert!(!h.path.exists());
    }
}

#[test]
fn cpu_quota_bounds_a_busy_loop() {
    if !root("cpu_quota_bounds_a_busy_loop") {
        return;
    }
    let cg = Cg::new("quota");
    let m = &*cg.m;
    m.apply(&res(r#"{"cpu": {"quota": 10000, "period": 100000}}"#))
        .unwrap();
    let mut child = parked("while :; do :; done");
    let pid = child.id();
    m.add_task(pid as i32).unwrap();
    go(&mut child);
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(pid) - t0;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    // 10% of one CPU for 1 s is 0.1 s; allow for tick granularity
    assert!(
        used * 1000 / hz <= 250,
        "used {used} ticks ({hz} Hz) in 1 s at a 10% quota"
    );
    let s = m.stats().unwrap();
    assert!(
        s.cpu.throttling.throttled_periods > 0,
        "{:?}",
        s.cpu.throttling
    );
    m.kill_all(libc::SIGKILL).unwrap();
    child.wait().unwrap();
}

#[test]
fn check_before_update_refuses_a_limit_below_usage() {
    if !root("check_before_update_refuses_a_limit_below_usage") {
        return;
    }
    let cg = Cg::new("cbu");
    let m = &*cg.m;
    m.apply(&res(r#"{"memory": {"limit": 134217728}}"#))
        .unwrap();
    let mut child = parked("x=$(head -c 30000000 /dev/zero | tr '\\0' a); echo held; sleep 30");
    m.add_task(child.id() as i32).unwrap();
    go(&mut child);
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 5];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"held\n");
    let usage = m.stats().unwrap().memory.usage.usage;
    assert!(usage > 20_000_000, "usage {usage}");
    let limit_file = dir_of(m, "memory").join(if m.layout() == Layout::V2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    });
    let before = read(&limit_file);
    let e = m
        .apply(&res(
            r#"{"memory": {"limit": 8388608, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.resources.memory.limit") && e.contains("current usage"),
        "{e}"
    );
    assert_eq!(read(&limit_file), before);
    m.kill_all(libc::SIGKILL).unwrap();
    child.wait().unwrap();
}

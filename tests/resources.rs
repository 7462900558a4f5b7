//! End-to-end checks of resource control and operations through
//! the runtime's command line: limits set in `linux.resources` are verified
//! from inside the container (a memory hog is OOM-killed, a fork bomb stops,
//! a busy loop is throttled, a denied device cannot be opened) and from the
//! host's cgroup files; `update`, `pause`/`resume`, `ps`, `events`, `exec`,
//! `kill --all` and `delete --force` are driven like an engine would; bad
//! input must fail clearly and leave the host unchanged.  One test mounts a
//! pure cgroup2 hierarchy in a private mount namespace so that the runtime
//! sees a unified-only host.
//!
//! Run with `cargo test -p skiff --test resources` as root.
//! `SKIFF_TEST_BIN=/usr/sbin/runc` runs the same checks against runc (the
//! stricter input validation applies to skiff only, `is_skiff()`).
mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SEC5: Duration = Duration::from_secs(5);

/// The host directory of `pid`'s cgroup for v1 `controller`, else (pure v2
/// or a controller only on cgroup2) the unified directory when it has
/// `v2_probe`.
fn cg_dir(pid: i64, controller: &str, v2_probe: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == controller) {
            let d = Path::new("/sys/fs/cgroup").join(controller).join(rel);
            if d.exists() {
                return Some(d);
            }
        }
    }
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            let rel = path.trim_start_matches('/');
            for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                let d = Path::new(base).join(rel);
                if d.join(v2_probe).exists() {
                    return Some(d);
                }
            }
        }
    }
    None
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A `key value` field of a flat keyed cgroup file (cpu.stat, pids.events).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Create and start `c`; returns the init pid.
fn up(c: &mut Container) -> i64 {
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.state()["pid"].as_i64().unwrap()
}

/// A runtime command whose stdio go to files: a detached process keeps
/// inherited pipes open, which would make the harness wait for them.
fn detached(c: &Container, args: &[&str]) -> Output {
    let out_p = c.scratch().join("detached.out");
    let err_p = c.scratch().join("detached.err");
    let mut child = c
        .cmd()
        .args(args)
        .stdout(fs::File::create(&out_p).unwrap())
        .stderr(fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn runtime");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        c.reap();
        assert!(start.elapsed() < TIMEOUT, "{args:?} timed out");
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        code: status.code(),
        stdout: fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: fs::read_to_string(&err_p).unwrap_or_default(),
    }
}

fn sleeper(tag: &str) -> Container {
    let mut c = Container::new(tag);
    c.config["process"]["args"] = json!(["sleep", "1000"]);
    c
}

/// The first line of /proc/<pid>/stat's state letter.
fn proc_state(pid: i64) -> char {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    s.rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next()
        .unwrap_or('?')
}

// ---------------------------------------------------------------- memory

#[test]
fn memory_hog_is_oom_killed_and_events_report_it() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("oom");
    let limit: i64 = 32 << 20;
    c.config["linux"]["resources"] = json!({"memory": {"limit": limit}});
    let pid = up(&mut c);
    let Some(mem) = cg_dir(pid, "memory", "memory.max") else {
        skip("no memory cgroup controller on this host");
        c.finish();
        return;
    };
    let v1 = mem.join("memory.limit_in_bytes").exists();
    let lim_file = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(read_trim(&mem.join(lim_file)), limit.to_string());

    // `events` (not --stats) watching for OOM kills, as containerd would
    let ev_path = c.scratch().join("events.out");
    let mut ev = c
        .cmd()
        .args(["events", "--interval", "300ms", &c.id])
        .stdout(fs::File::create(&ev_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn events");
    std::thread::sleep(Duration::from_millis(400));
    // `tail` keeps the whole newline-less stream in memory: 100 MiB > 32 MiB
    let out = c.runtime(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "dd if=/dev/zero bs=1M count=100 2>/dev/null | tail >/dev/null; echo rc=$?",
    ]);
    out.assert_ok("exec memory hog");
    assert_eq!(out.stdout.trim(), "rc=137", "hog not SIGKILLed: {out:?}");
    let start = Instant::now();
    let mut text = String::new();
    while start.elapsed() < SEC5 {
        text = fs::read_to_string(&ev_path).unwrap_or_default();
        if text.contains("\"oom\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = ev.kill();
    let _ = ev.wait();
    let oom: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "oom")
        .collect();
    assert!(!oom.is_empty(), "no oom event in:\n{text}");
    assert_eq!(oom[0]["id"], c.id.as_str());
    assert!(
        text.lines().any(|l| l.contains("\"stats\"")),
        "events printed no stats at the interval:\n{text}"
    );
    let kills = if v1 {
        keyed(&mem.join("memory.oom_control"), "oom_kill")
    } else {
        keyed(&mem.join("memory.events"), "oom_kill")
    };
    assert!(kills.unwrap_or(0) >= 1, "host counts no oom_kill");
    // the init survived: only the hog was killed
    assert_eq!(c.status().as_deref(), Some("running"));
    c.finish();
}

// ---------------------------------------------------------------- pids

#[test]
fn fork_bomb_stops_at_pids_max_and_kill_all_ends_it() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("forkbomb");
    c.config["linux"]["resources"] = json!({"pids": {"limit": 16}});
    let pid = up(&mut c);
    let Some(pids) = cg_dir(pid, "pids", "pids.max") else {
        skip("no pids cgroup controller on this host");
        c.finish();
        return;
    };
    assert_eq!(read_trim(&pids.join("pids.max")), "16");
    // every shell holds a sleep: the tree stays at the limit once forks fail
    detached(
        &c,
        &[
            "exec",
            "-d",
            &c.id,
            "sh",
            "-c",
            "exec >/dev/null 2>&1; b() { b & b & sleep 1000; }; b",
        ],
    )
    .assert_ok("exec -d fork bomb");
    // wait until the bomb hits the limit
    let start = Instant::now();
    let mut max_hits = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let cur: u64 = read_trim(&pids.join("pids.current")).parse().unwrap();
        assert!(cur <= 16, "pids.current {cur} above pids.max 16");
        max_hits = keyed(&pids.join("pids.events"), "max").unwrap_or(0);
        if max_hits > 0 && cur >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(max_hits > 0, "pids.events never counted a refused fork");
    let n = c.runtime(&["ps", "--format", "json", &c.id]);
    n.assert_ok("ps during the bomb");
    let listed: Vec<i64> = serde_json::from_str(&n.stdout).unwrap();
    assert!(listed.len() <= 16 && listed.len() >= 3, "{listed:?}");
    assert!(listed.contains(&pid), "{listed:?}");
    c.runtime(&["kill", "--all", &c.id, "KILL"])
        .assert_ok("kill --all");
    c.wait_status("stopped", SEC5);
    let start = Instant::now();
    while read_trim(&pids.join("pids.current")) != "0" && start.elapsed() < SEC5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        read_trim(&pids.join("pids.current")),
        "0",
        "kill --all left processes"
    );
    c.finish();
}

// ---------------------------------------------------------------- cpu

/// CPU time used by the cgroup, in nanoseconds.
fn cpu_usage_ns(pid: i64) -> Option<(PathBuf, u64)> {
    if let Some(d) = cg_dir(pid, "cpuacct", "cpu.stat") {
        if d.join("cpuacct.usage").exists() {
            let v = read_trim(&d.join("cpuacct.usage")).parse().ok()?;
            return Some((d, v));
        }
        let us = keyed(&d.join("cpu.stat"), "usage_usec")?;
        return Some((d, us * 1000));
    }
    None
}

#[test]
fn cpu_quota_bounds_a_busy_loop() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("cpuquota");
    c.config["linux"]["resources"] = json!({"cpu": {"quota": 20000, "period": 100000}});
    let pid = up(&mut c);
    let Some(cpu) = cg_dir(pid, "cpu", "cpu.max") else {
        skip("no cpu cgroup controller on this host");
        c.finish();
        return;
    };
    if cpu.join("cpu.cfs_quota_us").exists() {
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
    } else {
        assert_eq!(read_trim(&cpu.join("cpu.max")), "20000 100000");
    }
    detached(
        &c,
        &["exec", "-d", &c.id, "sh", "-c", "while :; do :; done"],
    )
    .assert_ok("exec -d busy loop");
    std::thread::sleep(Duration::from_millis(300));
    let Some((_, u0)) = cpu_usage_ns(pid) else {
        skip("no cpu usage file (cpuacct.usage / cpu.stat)");
        c.finish();
        return;
    };
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, u1) = cpu_usage_ns(pid).unwrap();
    let share = (u1 - u0) as f64 / t0.elapsed().as_nanos() as f64;
    eprintln!("busy loop under a 0.2 CPU quota used {share:.3} CPU");
    assert!(share < 0.30, "quota 0.2 CPU, busy loop used {share:.3}");
    assert!(share > 0.02, "busy loop did not run ({share:.3})");
    let throttled = keyed(&cpu.join("cpu.stat"), "nr_throttled").unwrap_or(0);
    assert!(throttled > 0, "cpu.stat shows no throttling");
    c.finish();
}

// ---------------------------------------------------------------- devices

#[test]
fn device_not_allowed_cannot_be_opened() {
    if !need_root() {
        return;
    }
    // /dev/lc is loop-control (c 10:237: open needs no capability), made
    // in the container by linux.devices and denied by an explicit rule;
    // /dev/net/tun (c 10:200) is in the default allowed set (a control).
    let mut c = Container::new("devices");
    c.config["linux"]["devices"] = json!([
        {"path": "/dev/lc", "type": "c", "major": 10, "minor": 237, "fileMode": 0o666},
        {"path": "/dev/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o666},
    ]);
    c.config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "rwm"},
    ]});
    c.sh("[ -c /dev/lc ] && echo exists; head -c0 /dev/lc; echo lc=$?; head -c0 /dev/tun; echo tun=$?");
    let out = c.run();
    out.assert_ok("run with device rules");
    assert_eq!(out.stdout, "exists\nlc=1\ntun=0\n", "{out:?}");
    assert!(out.stderr.contains("not permitted"), "{out:?}");
    c.finish();

    // read-only access: read opens, write opens are refused
    let mut c = sleeper("devices-ro");
    c.config["linux"]["devices"] = json!([
        {"path": "/dev/lc", "type": "c", "major": 10, "minor": 237, "fileMode": 0o666},
    ]);
    c.config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "r"},
    ]});
    let pid = up(&mut c);
    if let Some(dev) = cg_dir(pid, "devices", "cgroup.procs") {
        if dev.join("devices.list").exists() {
            let list = read_trim(&dev.join("devices.list"));
            assert!(list.lines().any(|l| l == "c 10:237 r"), "{list}");
            assert!(!list.lines().any(|l| l == "c 10:237 rwm"), "{list}");
            assert!(!list.contains("a *:* rwm"), "{list}");
        }
    }
    let out = c.runtime(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "head -c0 /dev/lc && echo r-ok; if true >> /dev/lc; then echo w-ok; else echo w-denied; fi",
    ]);
    out.assert_ok("exec device probe");
    assert_eq!(out.stdout, "r-ok\nw-denied\n", "{out:?}");
    c.finish();
}

// ---------------------------------------------------------------- update

#[test]
fn update_flags_and_json_change_the_host_files() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("update");
    c.config["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}});
    let pid = up(&mut c);
    let (Some(mem), Some(pids)) = (
        cg_dir(pid, "memory", "memory.max"),
        cg_dir(pid, "pids", "pids.max"),
    ) else {
        skip("no memory/pids controllers");
        c.finish();
        return;
    };
    let lim = if mem.join("memory.limit_in_bytes").exists() {
        mem.join("memory.limit_in_bytes")
    } else {
        mem.join("memory.max")
    };
    assert_eq!(read_trim(&lim), (64u64 << 20).to_string());
    c.runtime(&["update", "--memory", "96M", "--pids-limit", "77", &c.id])
        .assert_ok("update flags");
    assert_eq!(read_trim(&lim), (96u64 << 20).to_string());
    assert_eq!(read_trim(&pids.join("pids.max")), "77");

    let mut cmd = c.cmd();
    cmd.args(["update", "--resources", "-", &c.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"memory": {"limit": 50331648}, "pids": {"limit": 42}}"#)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "update -r -: {o:?}");
    assert_eq!(read_trim(&lim), "50331648");
    assert_eq!(read_trim(&pids.join("pids.max")), "42");

    // cpu flags, on v1 files
    if let Some(cpu) = cg_dir(pid, "cpu", "cpu.max").filter(|d| d.join("cpu.shares").exists()) {
        c.runtime(&[
            "update",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "25000",
            "--cpu-share",
            "512",
            &c.id,
        ])
        .assert_ok("update cpu flags");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "50000");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "25000");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
        c.runtime(&["update", "--cpu-quota", "-1", &c.id])
            .assert_ok("update --cpu-quota -1");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "-1");
    }
    if let Some(cs) = cg_dir(pid, "cpuset", "cpuset.cpus") {
        c.runtime(&["update", "--cpuset-cpus", "0", &c.id])
            .assert_ok("update --cpuset-cpus 0");
        assert_eq!(read_trim(&cs.join("cpuset.cpus")), "0");
    }
    // a paused container can be updated too
    c.runtime(&["pause", &c.id]).assert_ok("pause");
    c.runtime(&["update", "--pids-limit", "41", &c.id])
        .assert_ok("update while paused");
    assert_eq!(read_trim(&pids.join("pids.max")), "41");
    c.runtime(&["resume", &c.id]).assert_ok("resume");

    // -1 means unlimited, as with runc
    c.runtime(&["update", "--pids-limit", "-1", "--memory", "-1", &c.id])
        .assert_ok("update to unlimited");
    assert_eq!(read_trim(&pids.join("pids.max")), "max");
    let l = read_trim(&lim);
    assert!(l == "max" || l.parse::<u64>().unwrap() > 1 << 60, "{l}");

    // a bad value fails and changes nothing
    c.runtime(&["update", "--pids-limit", "33", &c.id])
        .assert_ok("update pids");
    let before_lim = read_trim(&lim);
    let out = c.runtime(&["update", "--memory", "-5", "--pids-limit", "12", &c.id]);
    out.assert_fail("update with a negative memory limit");
    assert_eq!(
        read_trim(&pids.join("pids.max")),
        "33",
        "partial update applied"
    );
    assert_eq!(read_trim(&lim), before_lim);
    c.finish();
}

// ---------------------------------------------------------------- pause

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: i64) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    // fields after the comm: state is [0], utime [11], stime [12]
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("freeze");
    c.sh("while :; do :; done");
    let pid = up(&mut c);
    std::thread::sleep(Duration::from_millis(200));
    c.runtime(&["pause", &c.id]).assert_ok("pause");
    assert_eq!(c.status().as_deref(), Some("paused"));
    if let Some(fr) = cg_dir(pid, "freezer", "cgroup.freeze") {
        if fr.join("freezer.state").exists() {
            assert_eq!(read_trim(&fr.join("freezer.state")), "FROZEN");
        } else {
            assert_eq!(keyed(&fr.join("cgroup.events"), "frozen"), Some(1));
        }
    }
    let st = proc_state(pid);
    assert!(
        st == 'D' || st == 'S' || st == 'T',
        "paused busy loop in state {st}"
    );
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(400));
    let b = cpu_ticks(pid);
    assert_eq!(a, b, "the busy loop ran while paused");
    assert_eq!(proc_state(pid), st);
    // exec into a paused container is refused (runc needs --ignore-paused)
    if is_skiff() {
        c.runtime(&["exec", &c.id, "true"])
            .assert_fail("exec into a paused container");
    }
    c.runtime(&["resume", &c.id]).assert_ok("resume");
    assert_eq!(c.status().as_deref(), Some("running"));
    let start = Instant::now();
    while cpu_ticks(pid) == b && start.elapsed() < SEC5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cpu_ticks(pid) > b, "the busy loop did not run after resume");
    c.runtime(&["resume", &c.id])
        .assert_fail("resume of a running container");
    c.finish();
}

// ---------------------------------------------------------------- ps, events --stats

#[test]
fn ps_and_events_stats() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("ps");
    c.config["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 40}});
    let pid = up(&mut c);
    let pf = c.scratch().join("exec.pid");
    detached(
        &c,
        &[
            "exec",
            "-d",
            "--pid-file",
            &pf.to_string_lossy(),
            &c.id,
            "sleep",
            "999",
        ],
    )
    .assert_ok("exec -d");
    let epid: i64 = read_trim(&pf).parse().unwrap();
    let out = c.runtime(&["ps", "--format", "json", &c.id]);
    out.assert_ok("ps --format json");
    let mut pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap();
    pids.sort();
    let mut want = vec![pid, epid];
    want.sort();
    assert_eq!(pids, want);
    let out = c.runtime(&["ps", &c.id]);
    out.assert_ok("ps");
    let mut lines = out.stdout.lines();
    let head = lines.next().unwrap();
    let col = head
        .split_whitespace()
        .position(|h| h == "PID")
        .expect("PID column");
    let rows: Vec<i64> = lines
        .map(|l| l.split_whitespace().nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", out.stdout);
    assert!(
        rows.contains(&pid) && rows.contains(&epid),
        "{}",
        out.stdout
    );
    let out = c.runtime(&["ps", &c.id, "-o", "pid,comm"]);
    out.assert_ok("ps -o pid,comm");
    assert!(
        out.stdout.lines().next().unwrap().contains("COMMAND"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.matches("sleep").count(), 2, "{}", out.stdout);

    let out = c.runtime(&["events", "--stats", &c.id]);
    out.assert_ok("events --stats");
    assert_eq!(
        out.stdout.trim().lines().count(),
        1,
        "one JSON line: {}",
        out.stdout
    );
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], c.id.as_str());
    let d = &v["data"];
    assert_eq!(d["pids"]["current"], 2, "{d}");
    assert_eq!(d["pids"]["limit"], 40, "{d}");
    assert_eq!(d["memory"]["usage"]["limit"], 64 << 20, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    c.finish();
}

// ---------------------------------------------------------------- exec

fn ns_links(pid: i64) -> Vec<String> {
    ["pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .map(|n| {
            fs::read_link(format!("/proc/{pid}/ns/{n}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn exec_is_in_the_same_container_and_honours_flags() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("execflags");
    c.config["hostname"] = json!("exec-host");
    let pid = up(&mut c);
    let pf = c.scratch().join("e.pid");
    detached(
        &c,
        &[
            "exec",
            "-d",
            "--pid-file",
            &pf.to_string_lossy(),
            &c.id,
            "sleep",
            "999",
        ],
    )
    .assert_ok("exec -d --pid-file");
    let epid: i64 = read_trim(&pf).parse().unwrap();
    assert!(pid_alive(epid));
    assert_eq!(ns_links(epid), ns_links(pid), "namespaces of exec vs init");
    assert_eq!(
        fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap(),
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        "cgroup of exec vs init"
    );
    let st_i = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let st_e = fs::read_to_string(format!("/proc/{epid}/status")).unwrap();
    for f in ["Uid", "Gid", "CapBnd", "CapEff", "NoNewPrivs", "Seccomp"] {
        assert_eq!(
            status_field(&st_e, f),
            status_field(&st_i, f),
            "{f} of exec vs init"
        );
    }
    let out = c.runtime(&["exec", &c.id, "sh", "-c", "hostname; id -u; pwd"]);
    out.assert_ok("exec");
    assert_eq!(out.stdout, "exec-host\n0\n/\n");

    let out = c.runtime(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "FOO=bar",
        "--env",
        "PATH=/bin",
        "--cwd",
        "/tmp",
        &c.id,
        "sh",
        "-c",
        "id -u; id -g; echo $FOO $PATH; pwd",
    ]);
    out.assert_ok("exec --user --env --cwd");
    assert_eq!(out.stdout, "1000\n1000\nbar /bin\n/tmp\n");

    let sys_admin = 1u64 << 21;
    let eff = |out: &Output| -> u64 { cap_field(&out.stdout, "CapEff") };
    let out = c.runtime(&["exec", &c.id, "cat", "/proc/self/status"]);
    out.assert_ok("exec status");
    assert_eq!(eff(&out) & sys_admin, 0, "init has no CAP_SYS_ADMIN");
    let out = c.runtime(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &c.id,
        "cat",
        "/proc/self/status",
    ]);
    out.assert_ok("exec --cap");
    assert_ne!(
        eff(&out) & sys_admin,
        0,
        "exec --cap CAP_SYS_ADMIN: {}",
        out.stdout
    );
    assert_ne!(cap_field(&out.stdout, "CapBnd") & sys_admin, 0);
    let out = c.runtime(&["exec", &c.id, "sh", "-c", "exit 7"]);
    assert_eq!(out.code, Some(7), "exec exit code: {out:?}");
    c.finish();
}

// ---------------------------------------------------------------- delete

#[test]
fn delete_force_kills_leftovers_and_removes_the_cgroup() {
    if !need_root() {
        return;
    }
    for force in [true, false] {
        delete_with_leftovers(force);
    }
}

/// A stopped container (no pid namespace) whose init left a sleep behind in
/// its cgroup: `delete [--force]` kills it and removes the cgroup.
fn delete_with_leftovers(force: bool) {
    let mut c = Container::new("delleft");
    // No pid namespace: the sleep outlives the init.
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    c.sh("sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /child; exit 0");
    up(&mut c);
    let child_file = c.rootfs().join("child");
    assert!(wait_for_path(&child_file, SEC5));
    std::thread::sleep(Duration::from_millis(50));
    let child: i64 = read_trim(&child_file).parse().unwrap();
    c.wait_status("stopped", SEC5);
    assert!(pid_alive(child), "the leftover sleep should still run");
    let cgs: Vec<PathBuf> = ["memory", "pids", "cpu", "freezer", "devices"]
        .iter()
        .filter_map(|k| cg_dir(child, k, "cgroup.procs"))
        .collect();
    assert!(!cgs.is_empty());
    c.delete(force)
        .assert_ok(&format!("delete (force {force})"));
    assert!(
        wait_pid_gone(child, SEC5),
        "delete (force {force}) left {child} running"
    );
    for d in &cgs {
        assert!(
            !d.exists(),
            "{} survived delete (force {force})",
            d.display()
        );
    }
    c.assert_clean();
    c.finish();
}

// ---------------------------------------------------------------- bad input

fn create_must_fail(tag: &str, resources: Value, needle: &str) {
    let mut c = sleeper(tag);
    c.config["linux"]["resources"] = resources.clone();
    let out = c.create();
    if !is_skiff() && out.ok() {
        eprintln!("{tag}: {} accepts {resources}", test_bin().display());
        c.finish();
        return;
    }
    out.assert_fail(&format!("create with {resources}"));
    // the error names the field at fault (runc words it its own way)
    assert!(
        out.stderr.contains(needle) || !is_skiff(),
        "error for {resources} should name {needle}: {}",
        out.stderr
    );
    // nothing left on the host: no state, no cgroup
    c.assert_clean();
    c.finish();
}

#[test]
fn bad_resources_fail_create_cleanly() {
    if !need_root() {
        return;
    }
    create_must_fail("neg-mem", json!({"memory": {"limit": -5}}), "memory.limit");
    create_must_fail("shares", json!({"cpu": {"shares": 1}}), "cpu.shares");
    create_must_fail(
        "swappiness",
        json!({"memory": {"swappiness": 101}}),
        "swappiness",
    );
    create_must_fail(
        "quota",
        json!({"cpu": {"quota": 10, "period": 100000}}),
        "cpu.quota",
    );
    create_must_fail("unified", json!({"unified": {"foo.bar": "1"}}), "foo");
    create_must_fail("cpuset", json!({"cpu": {"cpus": "0-4095"}}), "cpus");
    create_must_fail("mems", json!({"cpu": {"mems": "63"}}), "mems");
}

#[test]
fn cpuset_outside_the_parent_fails_cleanly() {
    if !need_root() {
        return;
    }
    let online = read_trim(Path::new("/sys/devices/system/cpu/online"));
    if online == "0" {
        skip("one CPU only: no cpuset outside a parent restricted to CPU 0");
        return;
    }
    // a parent cgroup restricted to CPU 0; the container asks for CPU 1
    let parent = format!("skt-cpuset-parent-{}", std::process::id());
    let (cpuset_root, v1) = if Path::new("/sys/fs/cgroup/cpuset/cpuset.cpus").exists() {
        (PathBuf::from("/sys/fs/cgroup/cpuset"), true)
    } else if fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .unwrap_or_default()
        .contains("cpuset")
    {
        (PathBuf::from("/sys/fs/cgroup"), false)
    } else {
        skip("no cpuset controller");
        return;
    };
    let pdir = cpuset_root.join(&parent);
    fs::create_dir(&pdir).unwrap();
    let (cpus, mems) = if v1 {
        ("cpuset.cpus", "cpuset.mems")
    } else {
        let _ = fs::write(cpuset_root.join("cgroup.subtree_control"), "+cpuset");
        ("cpuset.cpus", "cpuset.mems")
    };
    fs::write(pdir.join(cpus), "0").unwrap();
    fs::write(pdir.join(mems), "0").unwrap();
    let mut c = sleeper("cpuset-parent");
    let path = format!("/{parent}/{}", c.id);
    c.config["linux"]["cgroupsPath"] = json!(path);
    c.config["linux"]["resources"] = json!({"cpu": {"cpus": "1"}});
    c.extra_cgroups.push(path.clone());
    let out = c.create();
    let rm_parent = || {
        for e in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = fs::remove_dir(e.path().join(&parent));
        }
        let _ = fs::remove_dir(&pdir);
    };
    if out.ok() {
        c.finish();
        rm_parent();
        panic!("create with cpus 1 under a parent limited to CPU 0 succeeded");
    }
    eprintln!("cpuset outside the parent: {}", out.stderr.trim());
    if is_skiff() {
        assert!(out.stderr.contains("cpus"), "{}", out.stderr);
    }
    c.assert_clean();
    c.finish();
    assert_eq!(read_trim(&pdir.join(cpus)), "0", "parent changed");
    rm_parent();
}

#[test]
fn exec_and_update_on_stopped_or_missing_containers_fail() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("stopped");
    up(&mut c);
    c.wait_status("stopped", SEC5);
    let out = c.runtime(&["exec", &c.id, "true"]);
    out.assert_fail("exec into a stopped container");
    if is_skiff() {
        assert!(out.stderr.contains("stopped"), "{}", out.stderr);
    }
    let out = c.runtime(&["update", "--pids-limit", "10", &c.id]);
    out.assert_fail("update of a stopped container");
    let missing = unique_id("missing");
    let out = c.runtime(&["exec", &missing, "true"]);
    out.assert_fail("exec into a missing container");
    assert!(
        out.stderr.contains("does not exist") || out.stderr.contains("not exist"),
        "{}",
        out.stderr
    );
    let out = c.runtime(&["update", "--memory", "10M", &missing]);
    out.assert_fail("update of a missing container");
    assert!(
        out.stderr.contains(&missing) || out.stderr.contains("not exist"),
        "{}",
        out.stderr
    );
    assert!(leftover_cgroups(&missing, &[]).is_empty());
    assert!(!c.root.join(&missing).exists());
    for cmd in ["pause", "resume", "ps"] {
        c.runtime(&[cmd, &missing]).assert_fail(cmd);
    }
    c.runtime(&["events", "--stats", &missing])
        .assert_fail("events --stats missing");
    c.finish();
}

// ---------------------------------------------------------------- pure cgroup2

/// A wrapper `dir/name` that runs the runtime `bin` in a fresh private
/// mount namespace after the shell commands `prep` changed its cgroup view.
fn ns_wrapper(dir: &Path, bin: &Path, name: &str, prep: &str) -> PathBuf {
    let w = dir.join(name);
    fs::write(
        &w,
        format!(
            "#!/bin/sh\nexec unshare -m --propagation private /bin/sh -c '\
             {prep} && exec \"$0\" \"$@\"' {} \"$@\"\n",
            bin.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
    w
}

/// `/sys/fs/cgroup` is a cgroup2 mount only (the host's v1 tree is
/// unmounted there first): the runtime sees a pure unified host.
fn v2_wrapper(dir: &Path, bin: &Path) -> PathBuf {
    ns_wrapper(
        dir,
        bin,
        "skiff-v2",
        "umount -R -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup",
    )
}

/// Without the host's cgroup2 mount: the runtime sees a pure cgroup v1 host.
fn v1_wrapper(dir: &Path, bin: &Path) -> PathBuf {
    ns_wrapper(
        dir,
        bin,
        "skiff-v1",
        "umount /sys/fs/cgroup/unified 2>/dev/null; true",
    )
}

#[test]
fn pure_cgroup2_in_a_private_mount_namespace() {
    if !need_root() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        skip("no cgroup2 at /sys/fs/cgroup/unified (pure v2 hosts run the other tests on v2)");
        return;
    }
    let mut c = sleeper("purev2");
    c.bin = v2_wrapper(&c.scratch(), &test_bin());
    let probe = output_timeout(
        Command::new(&c.bin).arg("--version").stdin(Stdio::null()),
        TIMEOUT,
    );
    if !probe.ok() {
        skip(&format!(
            "cannot mount cgroup2 in a private mount namespace: {}",
            probe.stderr
        ));
        return;
    }
    // the default config of `spec` has only device rules: fine on any v2
    let pid = up(&mut c);
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line");
    assert!(
        v2.contains(&c.id),
        "init not in a cgroup2 dir named after it: {text}"
    );
    let dir = Path::new("/sys/fs/cgroup/unified").join(v2.trim_start_matches('/'));
    let procs = read_trim(&dir.join("cgroup.procs"));
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
    // only hugetlb lives on this cgroup2 hierarchy
    let ctrls = read_trim(Path::new("/sys/fs/cgroup/unified/cgroup.controllers"));
    eprintln!("cgroup2 controllers here: {ctrls:?}");
    // the v1 hierarchies were not used: no directory named after the id
    for k in ["memory", "pids", "cpu", "freezer"] {
        let line = text.lines().find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == k))
        });
        if let Some(l) = line {
            assert!(
                !l.contains(&c.id),
                "{k} v1 cgroup used on a pure v2 view: {l}"
            );
        }
    }
    // freeze through cgroup.freeze
    c.runtime(&["pause", &c.id]).assert_ok("pause on v2");
    assert_eq!(read_trim(&dir.join("cgroup.freeze")), "1");
    let start = Instant::now();
    while keyed(&dir.join("cgroup.events"), "frozen") != Some(1) && start.elapsed() < SEC5 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(keyed(&dir.join("cgroup.events"), "frozen"), Some(1));
    assert_eq!(c.status().as_deref(), Some("paused"));
    c.runtime(&["resume", &c.id]).assert_ok("resume on v2");
    assert_eq!(read_trim(&dir.join("cgroup.freeze")), "0");
    assert_eq!(c.status().as_deref(), Some("running"));
    let out = c.runtime(&["exec", &c.id, "cat", "/proc/self/cgroup"]);
    out.assert_ok("exec on v2");
    let out = c.runtime(&["ps", "--format", "json", &c.id]);
    out.assert_ok("ps on v2");
    let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(pids, vec![pid]);
    // hugetlb limits land in the cgroup2 files (update through stdin JSON)
    if dir.join("hugetlb.2MB.max").exists() {
        let mut cmd = c.cmd();
        cmd.args(["update", "--resources", "-", &c.id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#)
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "update hugepageLimits on v2: {o:?}");
        // runc 1.1's update ignores hugepageLimits
        if is_skiff() {
            assert_eq!(read_trim(&dir.join("hugetlb.2MB.max")), "4194304");
        }
    }
    // a memory limit cannot be honoured without the memory controller
    let out = c.runtime(&["update", "--memory", "64M", &c.id]);
    if !ctrls.split_whitespace().any(|x| x == "memory") {
        out.assert_fail("memory limit on a cgroup2 without the memory controller");
        eprintln!(
            "update --memory on v2 without memory: {}",
            out.stderr.trim()
        );
    }
    c.finish();
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

// ---------------------------------------------------------------- exec --tty

#[test]
fn exec_tty_gets_a_controlling_terminal() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("exectty");
    up(&mut c);
    let sock = ConsoleSocket::bind(&c.scratch().join("console.sock"));
    let sock_path = sock.path.to_string_lossy().into_owned();
    let reader = std::thread::spawn(move || {
        let master = sock.recv_master(Duration::from_secs(10));
        read_pty(master, Duration::from_secs(10))
    });
    let out = c.runtime(&[
        "exec",
        "--tty",
        "--console-socket",
        &sock_path,
        "--detach",
        &c.id,
        "sh",
        "-c",
        "tty; echo tty-ok",
    ]);
    out.assert_ok("exec --tty --console-socket --detach");
    let text = reader.join().unwrap();
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("tty-ok"), "{text:?}");
    c.finish();
}

// ---------------------------------------------------------------- cgroup namespace

#[test]
fn cgroup_namespace_root_is_the_container_cgroup() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("cgroupns");
    let has_cgroupns = c.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "cgroup");
    if !has_cgroupns {
        c.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup"}));
    }
    let pid = up(&mut c);
    // the init and an exec'd process see their own cgroup as the root
    for who in ["init", "exec"] {
        let out = if who == "init" {
            c.runtime(&["exec", &c.id, "cat", "/proc/1/cgroup"])
        } else {
            c.runtime(&["exec", &c.id, "cat", "/proc/self/cgroup"])
        };
        out.assert_ok("exec cat cgroup");
        for line in out.stdout.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            assert_eq!(
                path,
                "/",
                "{who}: cgroup namespace root is not the container's cgroup:\n{}\nhost view:\n{}",
                out.stdout,
                fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
            );
        }
    }
    c.finish();
}

// ---------------------------------------------------------------- exec --cgroup

/// The host cgroup dirs of `pid`, one per hierarchy line of
/// /proc/<pid>/cgroup: (controllers, dir).
fn all_cg_dirs(pid: i64) -> Vec<(String, PathBuf)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut v = Vec::new();
    for line in text.lines() {
        let mut p = line.splitn(3, ':');
        let (_, ctrls, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
        let rel = path.trim_start_matches('/');
        let mount = match ctrls {
            "" => "unified".to_string(),
            c => c
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("name=")
                .to_string(),
        };
        let mut d = Path::new("/sys/fs/cgroup").join(&mount).join(rel);
        if !d.exists() && ctrls.is_empty() {
            d = Path::new("/sys/fs/cgroup").join(rel);
        }
        if d.exists() {
            v.push((ctrls.to_string(), d));
        }
    }
    v
}

#[test]
fn exec_into_a_sub_cgroup() {
    if !need_root() {
        return;
    }
    let mut c = sleeper("execcg");
    let pid = up(&mut c);
    let dirs = all_cg_dirs(pid);
    for (_, d) in &dirs {
        let sub = d.join("sub");
        fs::create_dir(&sub).unwrap();
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if sub.join(f).exists() {
                fs::write(sub.join(f), fs::read_to_string(d.join(f)).unwrap()).unwrap();
            }
        }
    }
    let pf = c.scratch().join("sub.pid");
    let pf_s = pf.to_string_lossy().into_owned();
    let exec_in = |spec: &str| -> String {
        let _ = fs::remove_file(&pf);
        detached(
            &c,
            &[
                "exec",
                "-d",
                "--pid-file",
                &pf_s,
                "--cgroup",
                spec,
                &c.id,
                "sleep",
                "100",
            ],
        )
        .assert_ok(&format!("exec --cgroup {spec}"));
        let epid = read_trim(&pf);
        fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap()
    };
    let line = |text: &str, ctrl: &str| -> String {
        text.lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == ctrl))
            })
            .unwrap_or("")
            .to_string()
    };
    // every hierarchy
    let all = exec_in("sub");
    for l in all.lines() {
        assert!(l.ends_with("/sub"), "exec --cgroup sub: {l}\n{all}");
    }
    // only the named controllers
    if dirs
        .iter()
        .any(|(c, _)| c.split(',').any(|x| x == "memory"))
        && dirs.iter().any(|(c, _)| c.split(',').any(|x| x == "pids"))
    {
        let some = exec_in("memory:sub");
        assert!(line(&some, "memory").ends_with("/sub"), "{some}");
        assert!(!line(&some, "pids").ends_with("/sub"), "{some}");
        assert!(line(&some, "pids").ends_with(&c.id), "{some}");
    }
    // a path outside the container's cgroup is refused
    let out = c.runtime(&["exec", "--cgroup", "../..", &c.id, "true"]);
    if is_skiff() {
        out.assert_fail("exec --cgroup ../..");
    }
    c.runtime(&["kill", "--all", &c.id, "KILL"])
        .assert_ok("kill --all");
    c.wait_status("stopped", SEC5);
    // delete removes the sub-cgroups too
    let mut dirs_all: Vec<PathBuf> = dirs.iter().map(|(_, d)| d.clone()).collect();
    dirs_all.sort();
    c.finish();
    for d in dirs_all {
        assert!(!d.exists(), "{} left", d.display());
    }
}

// ---------------------------------------------------------------- cgroup v1 join

/// On cgroup v1 the init joins its cgroups itself (and on a hybrid host is
/// cloned into its cgroup2 directory): checked from inside the container on a
/// pure v1 view and on the host's own layout, with and without a cgroup
/// namespace and with a setup hook (which changes the order of the init's
/// steps): every hierarchy is the container's and the limits apply.
#[test]
fn init_is_in_every_cgroup_with_its_limits() {
    if !need_root() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
        return;
    }
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    let layouts: &[&str] = if hybrid { &["v1", "hybrid"] } else { &["v1"] };
    for layout in layouts {
        for variant in ["plain", "cgroupns", "hook", "nomount"] {
            let mut c = Container::new(&format!("cgjoin-{variant}"));
            if *layout == "v1" {
                c.bin = v1_wrapper(&c.scratch(), &test_bin());
            }
            let ns = c.config["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
            if variant == "cgroupns" {
                ns.push(json!({"type": "cgroup"}));
            }
            if variant == "hook" {
                c.config["hooks"] = json!({"createRuntime": [{"path": "/bin/true"}]});
            }
            if variant == "nomount" {
                // no cgroup mount: the init joins after its other mounts
                c.config["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|m| m["destination"] != "/sys/fs/cgroup");
            }
            c.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
            c.config["linux"]["resources"]["pids"] = json!({"limit": 40});
            c.config["process"]["args"] = json!([
                "sh",
                "-c",
                "cat /proc/self/cgroup; echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) pids=$(cat /sys/fs/cgroup/pids/pids.max)"
            ]);
            let out = c.run();
            out.assert_ok(&format!("run on {layout} ({variant})"));
            let what = format!("{layout}/{variant}:\n{}", out.stdout);
            if variant != "nomount" {
                assert!(out.stdout.contains("limit=67108864 pids=40"), "{what}");
            }
            let mut seen = 0;
            for line in out.stdout.lines().filter(|l| l.contains(":/")) {
                let mut p = line.splitn(3, ':');
                let (_, ctrls, path) = (p.next().unwrap(), p.next().unwrap(), p.next().unwrap());
                if ctrls.is_empty() && *layout == "v1" {
                    continue;
                }
                seen += 1;
                if variant == "cgroupns" {
                    assert_eq!(path, "/", "{what}");
                } else {
                    assert!(
                        path.ends_with(&c.id),
                        "{line} is not the container's: {what}"
                    );
                }
            }
            assert!(seen >= 2, "no cgroup lines: {what}");
            c.finish();
        }
        // an exec'd process joins the same cgroups
        let mut c = sleeper("cgjoin-exec");
        c.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "cgroup");
        if *layout == "v1" {
            c.bin = v1_wrapper(&c.scratch(), &test_bin());
        }
        up(&mut c);
        let out = c.runtime(&["exec", &c.id, "cat", "/proc/self/cgroup"]);
        out.assert_ok(&format!("exec on {layout}"));
        for line in out.stdout.lines() {
            let ctrls = line.split(':').nth(1).unwrap_or("");
            if ctrls.is_empty() && *layout == "v1" {
                continue;
            }
            assert!(line.ends_with(&c.id), "exec on {layout}: {}", out.stdout);
        }
        c.finish();
    }
}

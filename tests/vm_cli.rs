//! VM isolation through skiff's runc command line: the same bundle and the
//! same commands as a namespace container, with the annotation
//! `run.skiff.isolation=vm` (or `--isolation vm`). Slow under TCG: two boots.

#[path = "common/agent_build.rs"]
mod agent_build;
mod common;

use std::process::Command;

use common::*;
use serde_json::json;

/// QEMU, a kernel and the static guest agent (built here when missing).
fn vm_ready() -> bool {
    if !need_root() {
        return false;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("qemu-system-x86_64 is not installed");
        return false;
    }
    if !std::fs::read_dir("/boot").is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("vmlinuz")))
    }) {
        skip("no kernel in /boot (linux-image-amd64)");
        return false;
    }
    let ok = agent_build::build_static_agent();
    if !ok {
        skip("could not build the static skiff-agent");
    }
    ok
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn vm_container_runs_with_the_runc_cli() {
    if !is_skiff() || !vm_ready() {
        return;
    }
    let mut c = Container::new("vmcli");
    c.config["annotations"] = json!({"run.skiff.isolation": "vm"});
    c.config["hostname"] = json!("in-a-vm");
    c.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "GREETING=hi"]);
    c.sh("echo $GREETING; hostname; uname -r; echo oops >&2; exit 3");
    let out = c.run();
    assert_eq!(out.code, Some(3), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("hi"), "{out:?}");
    assert_eq!(lines.get(1).copied(), Some("in-a-vm"), "{out:?}");
    let guest = lines.get(2).copied().unwrap_or("");
    assert!(
        !guest.is_empty() && guest != host_kernel(),
        "uname -r {guest:?} is the host's"
    );
    assert!(out.stderr.contains("oops"), "{out:?}");
    c.finish();
}

#[test]
fn vm_container_lifecycle_state_kill_delete() {
    if !is_skiff() || !vm_ready() {
        return;
    }
    let mut c = Container::new("vmlife");
    c.global_args = vec!["--isolation".into(), "vm".into()];
    c.sh("trap 'exit 42' TERM; while true; do sleep 0.2; done");
    c.create().assert_ok("create");
    assert_eq!(c.status().as_deref(), Some("created"));
    c.start().assert_ok("start");
    assert_eq!(c.status().as_deref(), Some("running"));
    // ps / events --stats / pause / resume go to the guest agent.
    let ps = c.runtime(&["ps", "--format", "json", &c.id]);
    ps.assert_ok("ps");
    let pids: Vec<i64> = serde_json::from_str(ps.stdout.trim()).expect("ps json");
    assert!(!pids.is_empty(), "guest pids: {ps:?}");
    let ev = c.runtime(&["events", "--stats", &c.id]);
    ev.assert_ok("events --stats");
    let ev: serde_json::Value = serde_json::from_str(ev.stdout.trim()).expect("events json");
    assert!(
        ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{ev}"
    );
    c.runtime(&["pause", &c.id]).assert_ok("pause");
    assert_eq!(c.status().as_deref(), Some("paused"));
    c.runtime(&["resume", &c.id]).assert_ok("resume");
    assert_eq!(c.status().as_deref(), Some("running"));
    // The shell is PID 1 of the container's pid namespace: a SIGTERM that
    // arrives before its trap is set is ignored (as for runc), and under TCG
    // the shell needs a while to get there. Repeat until it stops.
    let t = std::time::Instant::now();
    c.kill("TERM").assert_ok("kill");
    loop {
        let round = std::time::Instant::now();
        while c.status().as_deref() != Some("stopped")
            && round.elapsed() < std::time::Duration::from_secs(3)
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if c.status().as_deref() == Some("stopped") {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "container did not stop on SIGTERM"
        );
        // It may stop between the check and this kill: ignore the result.
        let _ = c.kill("TERM");
    }
    c.delete(false).assert_ok("delete");
    c.finish();
}

//! Measures the per-container cost of the cgroup path of a container start
//! and delete: `new_manager` + `create` + `apply` (memory, cpu, pids,
//! devices) + `add_task` + `destroy`, N times (default 200), with one `sleep`
//! process moved into each cgroup and back out. Needs root.
//!
//! `cargo run -p skiff-cgroups --release --example churn -- 500`

use std::process::Command;
use std::time::Instant;

use skiff_cgroups::{default_device_rules, new_manager, Config, LinuxResources};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut r: LinuxResources = serde_json::from_str(
        r#"{"memory":{"limit":134217728},"cpu":{"shares":512,"quota":50000,"period":100000},
            "pids":{"limit":100},"devices":[{"allow":false,"access":"rwm"}]}"#,
    )
    .unwrap();
    let mut rules = r.devices().clone().unwrap_or_default();
    rules.extend(default_device_rules());
    r.set_devices(Some(rules));
    let mut child = Command::new("sleep").arg("600").spawn().expect("sleep");
    let pid = child.id() as i32;
    // read the mount table once, outside the timed loop (as a CLI does once)
    skiff_cgroups::detect_layout().unwrap();
    let t = Instant::now();
    let (mut tc, mut ta, mut tj, mut td) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..n {
        let id = format!("churn-{}-{i}", std::process::id());
        let path = format!("/skiff-churn/{id}");
        let cfg = Config {
            cgroups_path: Some(&path),
            id: &id,
            systemd: false,
            rootless: false,
        };
        let t0 = Instant::now();
        let m = new_manager(&cfg).unwrap();
        m.create().unwrap();
        let t1 = Instant::now();
        m.apply(&r).unwrap();
        let t2 = Instant::now();
        m.add_task(pid).unwrap();
        let t3 = Instant::now();
        // move it out again (to the hierarchy roots) before destroying
        for h in m.hierarchies() {
            std::fs::write(h.mount_point.join("cgroup.procs"), pid.to_string()).unwrap();
        }
        let t4 = Instant::now();
        m.destroy().unwrap();
        let t5 = Instant::now();
        tc += (t1 - t0).as_secs_f64();
        ta += (t2 - t1).as_secs_f64();
        tj += (t3 - t2).as_secs_f64();
        td += (t5 - t4).as_secs_f64();
    }
    let total = t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let layout = skiff_cgroups::detect_layout().unwrap();
    let ms = |s: f64| s * 1000.0 / n as f64;
    println!(
        "{n} cgroups on {layout:?}: {:.3} ms/container total; create {:.3} ms, apply {:.3} ms, add_task {:.3} ms, destroy {:.3} ms",
        ms(total), ms(tc), ms(ta), ms(tj), ms(td)
    );
    for h in skiff_cgroups::MountTable::host().unwrap().v1.iter() {
        let _ = std::fs::remove_dir(h.mount_point.join("skiff-churn"));
    }
    if let Some(v2) = &skiff_cgroups::MountTable::host().unwrap().v2 {
        let _ = std::fs::remove_dir(v2.mount_point.join("skiff-churn"));
    }
}

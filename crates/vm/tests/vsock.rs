//! The vsock agent channel from the outside: busybox containers in QEMU
//! microvms whose host <-> agent channel is virtio-vsock (annotation
//! `run.skiff.vm.channel=vsock`), through kernel vhost-vsock where
//! `/dev/vhost-vsock` exists, else hybrid vsock over vhost-user with
//! `vhost-device-vsock` (scripts/deps.sh installs it).
//!
//! As in tests/vm.rs, the shim inherits the caller's stdio, so each VM runs
//! under a *driver*: this test binary re-executed with
//! `SKIFF_VSOCK_TEST_DRIVER` set, whose stdout/stderr are files the test
//! reads. `cargo test -p skiff-vm --test vsock`.

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../../tests/common/agent_build.rs"]
mod agent_build;
#[path = "../../../tests/common/vm_driver.rs"]
mod vm_driver;

use vm_driver::{redirect, restore};

const DRIVER_ENV: &str = "SKIFF_VSOCK_TEST_DRIVER";

/// Prints SKIP and returns false when the host cannot run these tests.
fn host_ready() -> bool {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: qemu-system-x86_64 is not installed");
        return false;
    }
    if let Err(e) = skiff_vm::kernel::default_kernel() {
        eprintln!("SKIP: {e}");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIP: /bin/busybox (busybox-static) is not installed");
        return false;
    }
    if let Err(e) = skiff_vm::channel::vsock::choose() {
        eprintln!("SKIP: {e}");
        return false;
    }
    if !agent_build::build_static_agent() || skiff_vm::initramfs::find_agent().is_err() {
        eprintln!("SKIP: could not build the static skiff-agent");
        return false;
    }
    true
}

/// A bundle with a busybox rootfs running `script`, channel vsock.
fn bundle(dir: &Path, script: &str) -> PathBuf {
    let b = dir.join("bundle");
    let rootfs = b.join("rootfs");
    for d in ["bin", "proc", "dev", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for app in ["sh", "echo", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).unwrap();
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh", "-c", script], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "hostname": "vsocktest",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "annotations": {"run.skiff.isolation": "vm", "run.skiff.vm.channel": "vsock"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
    });
    fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    b
}

/// Runs the driver for one VM and returns its result JSON; the VM is
/// deleted when the driver is done.
fn drive(dir: &Path, bundle: &Path, actions: Value) -> Value {
    vm_driver::drive(dir, bundle, actions, "driver", DRIVER_ENV)
}

fn cmdline(pid: &str) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// Live (non-zombie) processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            pid.parse::<u32>().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
            let cmd = cmdline(&pid);
            (!zombie && cmd.contains(needle)).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

/// Not a test: the body of a driver process (see module docs).
#[test]
fn driver() {
    let Ok(cfg) = std::env::var(DRIVER_ENV) else {
        return;
    };
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    let dir = PathBuf::from(cfg["dir"].as_str().unwrap());
    let state = PathBuf::from(cfg["state"].as_str().unwrap());
    let bundle = PathBuf::from(cfg["bundle"].as_str().unwrap());
    let actions = &cfg["actions"];
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let mut result = json!({});
    let (o, e) = (dir.join("stdout"), dir.join("stderr"));
    let (so, se) = (redirect(1, &o), redirect(2, &e));
    let t = Instant::now();
    let created = skiff_vm::create(&skiff_vm::CreateOptions {
        id: "vsocktest",
        bundle: &bundle,
        spec: &spec,
        state_dir: &state,
        console_socket: None,
        debug: true,
    });
    restore(1, so);
    restore(2, se);
    result["create_ms"] = json!(t.elapsed().as_millis() as u64);
    let pid = match created {
        Ok(pid) => pid,
        Err(err) => {
            result["create_error"] = json!(err.to_string());
            fs::write(dir.join("result.json"), result.to_string()).unwrap();
            return;
        }
    };
    let vmm = fs::read_to_string(state.join("vmm.pid")).unwrap_or_default();
    let backend = fs::read_to_string(state.join("vsock.pid")).unwrap_or_default();
    result["vmm_cmdline"] = json!(cmdline(vmm.trim()));
    result["backend_pid"] = json!(backend.trim());
    result["backend_cmdline"] = json!(cmdline(backend.trim()));
    result["start"] = json!(skiff_vm::start(&state).map_err(|e| e.to_string()).err());
    result["start_ms"] = json!(t.elapsed().as_millis() as u64);
    if let Some(marker) = actions["delete_after"].as_str() {
        let t = Instant::now();
        while !fs::read_to_string(&o).unwrap_or_default().contains(marker)
            && t.elapsed() < Duration::from_secs(120)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        result["timings"] = fs::read_to_string(state.join("timings.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        result["delete"] = json!(skiff_vm::delete(&state).map_err(|e| e.to_string()).err());
    }
    let mut st = 0;
    // SAFETY: reaping our child (the shim).
    unsafe { libc::waitpid(pid, &mut st, 0) };
    result["shim_exited"] = json!(libc::WIFEXITED(st));
    result["shim_status"] = json!(libc::WEXITSTATUS(st));
    result["stdout"] = json!(fs::read_to_string(&o).unwrap_or_default());
    result["stderr"] = json!(fs::read_to_string(&e).unwrap_or_default());
    if result["timings"].is_null() {
        result["timings"] = fs::read_to_string(state.join("timings.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
    }
    fs::write(dir.join("result.json"), result.to_string()).unwrap();
}

/// The channel really is vsock: said in --debug and timings.json, the QEMU
/// command line has the vsock device and no virtio-serial port, the
/// hybrid backend (when used) serves this VM's sockets.
fn assert_vsock_vm(r: &Value, state: &Path) {
    assert!(r["create_error"].is_null(), "create failed: {r}");
    let err = r["stderr"].as_str().unwrap();
    assert!(
        err.contains("skiff-vm: channel=vsock"),
        "debug output: {err}"
    );
    assert!(
        err.contains("boot=cold (vsock channel"),
        "debug output: {err}"
    );
    let t = &r["timings"];
    assert!(
        t["channel"].as_str().unwrap_or("").starts_with("vsock"),
        "timings: {t}"
    );
    assert_eq!(t["boot"], "cold", "a vsock VM never comes from a template");
    let q = r["vmm_cmdline"].as_str().unwrap();
    assert!(
        !q.contains("virtserialport") && !q.contains("virtio-serial"),
        "{q}"
    );
    assert!(q.contains("skiff.vsock=1024"), "{q}");
    if q.contains("vhost-user-vsock-device") {
        let b = r["backend_cmdline"].as_str().unwrap();
        assert!(b.contains("vhost-device-vsock"), "backend: {b}");
        assert!(
            b.contains(&*state.to_string_lossy()) || b.contains("/tmp/skiff-vm-"),
            "{b}"
        );
        assert!(
            q.contains("memory-backend-memfd") && q.contains("share=on"),
            "{q}"
        );
    } else {
        assert!(q.contains("vhost-vsock-device,id=agent,guest-cid="), "{q}");
    }
}

/// After `delete`: no process mentions the state dir, the backend pid is
/// gone, the state dir is empty.
fn assert_nothing_left(r: &Value, state: &Path) {
    let left = processes_mentioning(&state.to_string_lossy());
    assert!(left.is_empty(), "processes left: {left:?}");
    let b = r["backend_pid"].as_str().unwrap_or("");
    if !b.is_empty() {
        assert!(
            !cmdline(b).contains("vhost-device-vsock"),
            "vhost-device-vsock {b} still runs"
        );
    }
    let files: Vec<_> = fs::read_dir(state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "left in the state dir: {files:?}");
}

#[test]
fn busybox_over_vsock_stdout_exit_code_then_nothing_left() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(
        dir.path(),
        "echo out-over-vsock; echo err-over-vsock >&2; cat /proc/cmdline; exit 7",
    );
    let r = drive(dir.path(), &b, json!({}));
    assert_vsock_vm(&r, &dir.path().join("state"));
    assert!(r["start"].is_null(), "start: {r}");
    assert_eq!(r["shim_exited"], true, "{r}");
    assert_eq!(r["shim_status"], 7, "{r}");
    let out = r["stdout"].as_str().unwrap();
    assert!(out.contains("out-over-vsock"), "stdout: {out}");
    // The guest kernel's command line, seen from the container.
    assert!(out.contains("skiff.vsock=1024"), "stdout: {out}");
    assert!(
        r["stderr"].as_str().unwrap().contains("err-over-vsock"),
        "{r}"
    );
    assert_nothing_left(&r, &dir.path().join("state"));
}

#[test]
fn delete_of_a_running_vsock_vm_stops_the_backend() {
    if !host_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), "echo vsock-ready; sleep 600");
    let r = drive(dir.path(), &b, json!({"delete_after": "vsock-ready"}));
    assert_vsock_vm(&r, &dir.path().join("state"));
    assert!(r["delete"].is_null(), "delete: {r}");
    assert!(r["stdout"].as_str().unwrap().contains("vsock-ready"), "{r}");
    // The shim was killed by delete, or saw its VMM die first (delete kills
    // QEMU before the shim) and exited 255.
    assert!(
        r["shim_exited"] == false || r["shim_status"] == 255,
        "shim: {r}"
    );
    assert_nothing_left(&r, &dir.path().join("state"));
}

//! Engines driving the runtime end to end: Debian's containerd
//! (through `ctr --runc-binary`) and podman (`--runtime`) run, exec into,
//! pause/resume, collect stats from and stop containers with memory, cpu
//! and pids limits, checked from the host's cgroup files.
//!
//! Each test starts what it needs itself: containerd with a private config
//! (temp root/state, a unix socket under the temp dir, the CRI plugin
//! disabled), a busybox image built from the test rootfs (a docker-archive
//! tarball for `ctr images import`, a plain tar for `podman import`).  A
//! guard kills the daemon, its shims and the containers on failure.
//!
//! Run with `cargo test -p skiff --test engines` as root;
//! `SKIFF_TEST_BIN=/usr/sbin/runc` runs the same checks with runc.
mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(120);

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Tar the busybox test rootfs into `out` (a plain layer tarball).
fn rootfs_tar(out: &Path) {
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs_template())
        .args(["--numeric-owner", "-cf"])
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the rootfs");
}

fn sha256_hex(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A docker-archive (`docker save` layout) of the busybox rootfs tagged
/// `tag`, as `ctr images import` reads it.
fn docker_archive(dir: &Path, tag: &str) -> PathBuf {
    let img = dir.join("img");
    fs::create_dir_all(&img).unwrap();
    rootfs_tar(&img.join("layer.tar"));
    let diff = sha256_hex(&img.join("layer.tar"));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    });
    fs::write(img.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([
        {"Config": "config.json", "RepoTags": [tag], "Layers": ["layer.tar"]}
    ]);
    fs::write(img.join("manifest.json"), manifest.to_string()).unwrap();
    let out = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&out)
        .args(["manifest.json", "config.json", "layer.tar"])
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Pids of processes whose command line contains `needle` (the shims of
/// this test's containerd carry its socket path).
fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}

/// The host directory of `pid`'s v1 cgroup for `controller` (or the
/// cgroup2 directory on a unified host).
fn cg_dir(pid: i64, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut p = line.splitn(3, ':');
        let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
        let rel = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == controller) {
            let d = Path::new("/sys/fs/cgroup").join(controller).join(rel);
            if d.exists() {
                return Some(d);
            }
        }
        if ctrls.is_empty() {
            let d = Path::new("/sys/fs/cgroup").join(rel);
            if d.join("cgroup.controllers").exists()
                && fs::read_to_string(d.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|c| c == controller)
            {
                return Some(d);
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

/// Memory limit of the cgroup dir, v1 or v2.
fn mem_limit(d: &Path) -> String {
    if d.join("memory.limit_in_bytes").exists() {
        read_trim(&d.join("memory.limit_in_bytes"))
    } else {
        read_trim(&d.join("memory.max"))
    }
}

/// CFS quota and period of the cgroup dir, v1 or v2.
fn cpu_max(d: &Path) -> String {
    if d.join("cpu.cfs_quota_us").exists() {
        format!(
            "{} {}",
            read_trim(&d.join("cpu.cfs_quota_us")),
            read_trim(&d.join("cpu.cfs_period_us"))
        )
    } else {
        read_trim(&d.join("cpu.max"))
    }
}

/// True when the freezer of the cgroup dir reports frozen.
fn frozen(d: &Path) -> bool {
    if d.join("freezer.state").exists() {
        read_trim(&d.join("freezer.state")) == "FROZEN"
    } else {
        fs::read_to_string(d.join("cgroup.events"))
            .unwrap_or_default()
            .lines()
            .any(|l| l == "frozen 1")
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

// ---------------------------------------------------------------- containerd

/// A private containerd; dropping it removes its containers, stops it,
/// kills its shims and unmounts its snapshots.
struct Containerd {
    dir: tempfile::TempDir,
    sock: PathBuf,
    ns: String,
    child: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = temp_dir("ctd");
        let d = dir.path();
        let sock = d.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{r}\"\nstate = \"{s}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.tracing.processor.v1.otlp\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            r = d.join("root").display(),
            s = d.join("state").display(),
            sock = sock.display(),
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let mut c = Containerd {
            ns: format!("skt{}", std::process::id()),
            dir,
            sock,
            child: Some(child),
        };
        let up = wait_until(Duration::from_secs(30), || {
            c.sock.exists() && c.ctr_raw(&["version"]).ok()
        });
        if !up {
            let log = fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default();
            c.stop();
            panic!("containerd did not come up:\n{log}");
        }
        c
    }

    fn ctr_raw(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.ns);
        cmd.args(args).stdin(Stdio::null());
        output_timeout(&mut cmd, LONG)
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_raw(args)
    }

    /// Where the shim keeps the runtime's state (`--runc-root`).
    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
    }

    fn task_pid(&self, id: &str) -> i64 {
        let out = self.ctr(&["task", "ls"]);
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no task {id} in {}", out.stdout))
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // remove what is left (after a failure)
        let out = self.ctr(&["task", "ls", "-q"]);
        for id in out.stdout.lines() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
        }
        let out = self.ctr(&["containers", "ls", "-q"]);
        for id in out.stdout.lines() {
            let _ = self.ctr(&["containers", "rm", id]);
        }
        // SAFETY: kill on the pid of the child this guard spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // shims outlive containerd: kill those of this daemon (by pid)
        for pid in pids_with_cmdline(&self.sock.to_string_lossy()) {
            // SAFETY: kill of a shim process started for this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for m in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn containerd_runs_execs_pauses_and_limits() {
    if !need_root() {
        return;
    }
    if !have("containerd") || !have("ctr") {
        skip("containerd/ctr not installed (apt-get install containerd)");
        return;
    }
    let bin = test_bin();
    let bin_s = bin.to_string_lossy().into_owned();
    let mut d = Containerd::start();
    let image = "localhost/skiff-test/busybox:1";
    let tar = docker_archive(d.dir.path(), image);
    d.ctr(&["images", "import", &tar.to_string_lossy()])
        .assert_ok("ctr images import");
    let runc_root = d.runc_root().to_string_lossy().into_owned();
    let run = |extra: &[&str], id: &str, cmd: &[&str]| -> Output {
        let mut a = vec!["run", "--runc-binary", &bin_s, "--runc-root", &runc_root];
        a.extend_from_slice(extra);
        a.push(image);
        a.push(id);
        a.extend_from_slice(cmd);
        d.ctr(&a)
    };

    // foreground, --rm: output and exit code
    let id1 = format!("fg{}", std::process::id());
    let out = run(
        &["--rm"],
        &id1,
        &["sh", "-c", "echo hello; id -u; hostname"],
    );
    out.assert_ok("ctr run --rm");
    assert_eq!(
        out.stdout.lines().take(2).collect::<Vec<_>>(),
        ["hello", "0"],
        "{out:?}"
    );
    let out = run(&["--rm"], &format!("{id1}x"), &["sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "exit code through ctr: {out:?}");

    // detached, with limits
    let id = format!("bg{}", std::process::id());
    run(
        &[
            "-d",
            "--memory-limit",
            "67108864",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
        ],
        &id,
        &["sleep", "1000"],
    )
    .assert_ok("ctr run -d with limits");
    assert!(wait_until(Duration::from_secs(10), || d
        .task_status(&id)
        .as_deref()
        == Some("RUNNING")));
    let pid = d.task_pid(&id);
    let mem = cg_dir(pid, "memory").expect("memory cgroup of the task");
    assert_eq!(mem_limit(&mem), "67108864");
    let cpu = cg_dir(pid, "cpu").expect("cpu cgroup of the task");
    assert_eq!(cpu_max(&cpu), "50000 100000");
    if cpu.join("cpu.shares").exists() {
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
    }
    // the runtime's state lives under --runc-root
    assert!(d.runc_root().join(&d.ns).join(&id).exists() || d.runc_root().join(&id).exists());

    // exec: same cgroup and namespaces as the init
    let out = d.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "cat /proc/self/cgroup; for n in pid mnt net; do readlink /proc/self/ns/$n; done",
    ]);
    out.assert_ok("ctr task exec");
    let init_cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem_line = |t: &str| {
        t.lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == "memory"))
            })
            .map(str::to_owned)
    };
    if mem_line(&init_cg).is_some() {
        // the container has its own cgroup namespace or not: compare the tail
        let want = mem_line(&init_cg).unwrap();
        let got = mem_line(&out.stdout).expect("memory line in exec's /proc/self/cgroup");
        assert!(
            want.ends_with(got.rsplit(':').next().unwrap()),
            "{got} vs {want}"
        );
    }
    for (i, ns) in ["pid", "mnt", "net"].iter().enumerate() {
        let init = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let line = out.stdout.lines().rev().nth(2 - i).unwrap_or("");
        assert_eq!(line, init.to_string_lossy(), "{ns} ns of ctr task exec");
    }

    // pause / resume
    d.ctr(&["task", "pause", &id]).assert_ok("ctr task pause");
    assert_eq!(d.task_status(&id).as_deref(), Some("PAUSED"));
    if let Some(fr) = cg_dir(pid, "freezer") {
        assert!(frozen(&fr), "freezer not frozen after ctr task pause");
    }
    d.ctr(&["task", "resume", &id]).assert_ok("ctr task resume");
    assert_eq!(d.task_status(&id).as_deref(), Some("RUNNING"));

    // metrics
    let out = d.ctr(&["task", "metrics", "--format", "json", &id]);
    out.assert_ok("ctr task metrics");
    let m: Value = serde_json::from_str(&out.stdout).expect("metrics JSON");
    let text = m.to_string();
    assert!(
        text.contains("67108864"),
        "memory limit not in metrics: {text}"
    );
    assert!(m["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{text}");

    // kill and delete: the cgroup and the runtime's state go away
    d.ctr(&["task", "kill", "-s", "SIGKILL", &id])
        .assert_ok("ctr task kill");
    assert!(wait_until(Duration::from_secs(10), || d
        .task_status(&id)
        .as_deref()
        == Some("STOPPED")));
    d.ctr(&["task", "delete", &id]).assert_ok("ctr task delete");
    d.ctr(&["containers", "rm", &id])
        .assert_ok("ctr containers rm");
    assert!(
        wait_until(Duration::from_secs(5), || !mem.exists()),
        "{} left",
        mem.display()
    );
    assert!(!cpu.exists(), "{} left", cpu.display());
    assert!(!d.runc_root().join(&d.ns).join(&id).exists());
    d.stop();
}

// ---------------------------------------------------------------- podman

/// A private podman store; dropping it removes containers and images and
/// unmounts the store.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(d.join("storage"));
        cmd.arg("--runroot").arg(d.join("run"));
        cmd.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
        cmd.arg("--tmpdir").arg(d.join("tmp"));
        cmd.arg("--runtime").arg(test_bin());
        cmd.args(args).stdin(Stdio::null());
        output_timeout(&mut cmd, LONG)
    }

    fn inspect(&self, name: &str, fmt: &str) -> String {
        let out = self.cmd(&["inspect", "--format", fmt, name]);
        out.assert_ok("podman inspect");
        out.stdout.trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-af", "-t", "0"]);
        let _ = self.cmd(&["rmi", "-af"]);
        for m in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

#[test]
fn podman_runs_execs_pauses_stats_and_stops() {
    if !need_root() {
        return;
    }
    if !have("podman") {
        skip("podman not installed");
        return;
    }
    let p = Podman {
        dir: temp_dir("podman"),
    };
    let tar = p.dir.path().join("rootfs.tar");
    rootfs_tar(&tar);
    let tag = format!("localhost/skiff-test-engines:{}", std::process::id());
    p.cmd(&["import", &tar.to_string_lossy(), &tag])
        .assert_ok("podman import");
    let common = [
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];

    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[&tag, "sh", "-c", "echo hello; id -u"]);
    let out = p.cmd(&args);
    out.assert_ok("podman run --rm");
    assert_eq!(out.stdout, "hello\n0\n");

    let name = format!("skt-pm-{}", std::process::id());
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        &tag,
        "sleep",
        "1000",
    ]);
    p.cmd(&args).assert_ok("podman run -d with limits");
    let pid: i64 = p.inspect(&name, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    let mem = cg_dir(pid, "memory").expect("memory cgroup");
    assert_eq!(mem_limit(&mem), (64u64 << 20).to_string());
    let cpu = cg_dir(pid, "cpu").expect("cpu cgroup");
    assert_eq!(cpu_max(&cpu), "50000 100000");
    let pids = cg_dir(pid, "pids").expect("pids cgroup");
    assert_eq!(read_trim(&pids.join("pids.max")), "64");

    let out = p.cmd(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec-ok; readlink /proc/self/ns/pid",
    ]);
    out.assert_ok("podman exec");
    let init_ns = fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_eq!(out.stdout, format!("exec-ok\n{}\n", init_ns.display()));
    let out = p.cmd(&[
        "exec",
        "--user",
        "1000:1000",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        &name,
        "sh",
        "-c",
        "id -u; echo $X; pwd",
    ]);
    out.assert_ok("podman exec --user -e -w");
    assert_eq!(out.stdout, "1000\ny\n/tmp\n");

    p.cmd(&["pause", &name]).assert_ok("podman pause");
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "paused");
    if let Some(fr) = cg_dir(pid, "freezer") {
        assert!(frozen(&fr));
    }
    p.cmd(&["unpause", &name]).assert_ok("podman unpause");
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "running");

    let out = p.cmd(&["stats", "--no-stream", "--format", "json", &name]);
    out.assert_ok("podman stats --no-stream");
    let v: Value = serde_json::from_str(&out.stdout).expect("stats JSON");
    let s = &v[0];
    assert_eq!(s["name"], name.as_str(), "{v}");
    assert!(
        s["mem_usage"].as_str().unwrap_or("").contains("67.11MB"),
        "{v}"
    );
    assert_eq!(s["pids"], "1", "{v}");

    p.cmd(&["stop", "-t", "1", &name]).assert_ok("podman stop");
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "exited");
    p.cmd(&["rm", &name]).assert_ok("podman rm");
    assert!(
        wait_until(Duration::from_secs(5), || !mem.exists()),
        "{} left",
        mem.display()
    );
    assert!(!pids.exists(), "{} left", pids.display());
}

/// `podman run --read-only` mounts tmpfs on /tmp, /run and /var/tmp with
/// podman's `tmpcopyup` option (copy the image's directory into the tmpfs),
/// and `podman exec -t` asks for a terminal.
#[test]
fn podman_read_only_and_exec_tty() {
    if !need_root() {
        return;
    }
    if !have("podman") {
        skip("podman not installed");
        return;
    }
    let p = Podman {
        dir: temp_dir("podman-ro"),
    };
    let tar = p.dir.path().join("rootfs.tar");
    rootfs_tar(&tar);
    let tag = format!("localhost/skiff-test-engines-ro:{}", std::process::id());
    p.cmd(&["import", &tar.to_string_lossy(), &tag])
        .assert_ok("podman import");
    let common = [
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    let mut args = vec!["run", "--rm", "--read-only"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[
        &tag,
        "sh",
        "-c",
        "touch /x 2>/dev/null || echo root-ro; touch /tmp/x && echo tmp-rw",
    ]);
    let out = p.cmd(&args);
    out.assert_ok("podman run --read-only");
    assert_eq!(out.stdout, "root-ro\ntmp-rw\n");

    let name = format!("skt-pm-tty-{}", std::process::id());
    let mut args = vec!["run", "-d", "--name", &name];
    args.extend_from_slice(&common);
    args.extend_from_slice(&[&tag, "sleep", "1000"]);
    p.cmd(&args).assert_ok("podman run -d");
    let out = p.cmd(&["exec", "-t", &name, "sh", "-c", "tty"]);
    out.assert_ok("podman exec -t");
    assert!(out.stdout.starts_with("/dev/pts/"), "{out:?}");
    p.cmd(&["rm", "-f", "-t", "0", &name])
        .assert_ok("podman rm -f");
}

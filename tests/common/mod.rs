//! Shared harness for skiff's integration tests.
//!
//! Every test drives a real OCI runtime binary from the outside, the way
//! containerd or podman would.  The binary is `$SKIFF_TEST_BIN` when set
//! (e.g. `/usr/sbin/runc` to validate the tests themselves against a reference
//! runtime), else the `skiff` binary cargo built for this test target.
//!
//! What the harness provides:
//! - [`rootfs_template`]: a busybox root filesystem built once per test
//!   process (static busybox, a symlink for every applet, `/etc/passwd` and
//!   `/etc/group` with a test user 1000);
//! - [`Container`]: a bundle per test (a copy of the template, a `config.json`
//!   made by `<bin> spec` then edited as JSON), a unique `--root` state
//!   directory and container id, helpers for every runtime command, and
//!   [`Container::finish`] which force-deletes and then asserts that nothing
//!   is left behind (state dir, mounts, cgroup directories);
//! - [`Output`] with timeouts on every runtime invocation so that a hung
//!   runtime fails the test instead of hanging CI;
//! - [`ConsoleSocket`]: a `--console-socket` receiver getting the pty master
//!   over `SCM_RIGHTS`;
//! - helpers to skip loudly ([`skip`]) when the host lacks something.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default time limit for one runtime invocation.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime binary under test.
pub fn test_bin() -> PathBuf {
    match std::env::var_os("SKIFF_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
    }
}

fn bin_name() -> String {
    test_bin()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True when the binary under test is runc (used to relax expectations
/// where runc is known to deviate from the runtime-spec).
pub fn is_runc() -> bool {
    bin_name().contains("runc")
}

/// True when the binary under test is crun.
pub fn is_crun() -> bool {
    bin_name().contains("crun")
}

/// True when strict runtime-spec expectations apply: the binary under test
/// is skiff, or `SKIFF_TEST_STRICT=1` asks for them with another runtime.
pub fn is_skiff() -> bool {
    std::env::var("SKIFF_TEST_STRICT").is_ok_and(|v| v == "1") || (!is_runc() && !is_crun())
}

/// Print a loud skip message.  Tests call this and return.
pub fn skip(reason: &str) {
    eprintln!("SKIP: {reason}");
}

/// True when running as root; otherwise prints a SKIP line.
pub fn need_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip("integration tests need root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        skip("/bin/busybox missing (apt-get install busybox-static)");
        return false;
    }
    true
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container id unique to this process and call.
pub fn unique_id(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let tag: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("skt-{tag}-{}-{n}", std::process::id())
}

/// Base directory for the temp dirs of this test process.
fn temp_base() -> PathBuf {
    let p = std::env::temp_dir();
    p.canonicalize().unwrap_or(p)
}

/// A fresh world-traversable temp dir (0755, so user-namespaced containers
/// mapped to other uids can reach their rootfs).
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("skiff-test-{tag}-"))
        .tempdir_in(temp_base())
        .expect("create temp dir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The busybox rootfs template, built once per test process.
pub fn rootfs_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let base = temp_base();
        // Remove per-process templates left by older versions of this harness.
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("skiff-test-rootfs-") {
                    if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        // One template shared by every test process (cargo nextest runs each
        // test in its own process), keyed by the harness version and the
        // busybox binary; built aside and renamed into place atomically.
        let md = fs::metadata("/bin/busybox").expect("/bin/busybox");
        let dir = base.join(format!(
            "skiff-test-rootfs-{TEMPLATE_VERSION}-{}-{}",
            md.len(),
            md.mtime()
        ));
        if !dir.join("rootfs/bin/busybox").exists() {
            let tmp = base.join(format!(
                "skiff-test-rootfs-building-{}-{}",
                std::process::id(),
                unique_id("t")
            ));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            build_rootfs(&tmp.join("rootfs"));
            if fs::rename(&tmp, &dir).is_err() {
                // another process won the race: use its template
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        assert!(
            dir.join("rootfs/bin/busybox").exists(),
            "rootfs template at {}",
            dir.display()
        );
        dir.join("rootfs")
    })
}

/// Bumped whenever [`build_rootfs`] changes, so stale shared templates are
/// not reused.
const TEMPLATE_VERSION: &str = "v2";

/// Install `src` at `dst` atomically (copy aside, then rename), so
/// concurrent test processes never see a half-written file.
pub fn install_atomically(src: &Path, dst: &Path) {
    if dst.exists() {
        return;
    }
    let tmp = dst.with_extension(format!("tmp-{}", unique_id("i")));
    fs::copy(src, &tmp).unwrap();
    fs::rename(&tmp, dst).unwrap();
}

fn build_rootfs(root: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root", "home",
        "mnt", "run", "var", "lib",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy /bin/busybox");
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let line = line.trim();
        if line.is_empty() || line == "bin/busybox" {
            continue;
        }
        let dst = root.join(line);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        if !dst.exists() {
            symlink("/bin/busybox", &dst).unwrap();
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         test:x:1000:1000:test:/home/test:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:\nusers:x:100:\ntest:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    fs::write(root.join("etc/hostname"), "template\n").unwrap();
    let home = root.join("home/test");
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
}

/// Copy a directory tree, preserving symlinks, modes and ownership.
pub fn copy_tree(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .expect("cp -a");
    assert!(st.success(), "cp -a {} {}", src.display(), dst.display());
}

/// Result of one runtime (or container) invocation.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl Output {
    /// True on exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panic with full output unless the exit code was 0.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok(),
            "{what}: exit {:?}\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }
    /// Panic unless the command failed.
    pub fn assert_fail(&self, what: &str) -> &Self {
        assert!(
            !self.ok(),
            "{what}: expected failure, got exit 0\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run `cmd` with piped stdout/stderr and a time limit; a timeout kills the
/// command and panics with what was captured so far.
pub fn output_timeout(cmd: &mut Command, limit: Duration) -> Output {
    output_timeout_with(cmd, limit, &mut || {})
}

/// [`output_timeout`] calling `tick` while it waits (e.g. to reap).
pub fn output_timeout_with(cmd: &mut Command, limit: Duration, tick: &mut dyn FnMut()) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if cmd.get_program() != OsStr::new("") {
        // stdin is left to the caller when set; default to /dev/null
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for (pipe, buf) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            out.clone(),
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            err.clone(),
        ),
    ] {
        if let Some(mut p) = pipe {
            handles.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match p.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
            }));
        }
    }
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        tick();
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timeout after {limit:?}: {:?} {:?}\nstdout: {}\nstderr: {}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>(),
                String::from_utf8_lossy(&out.lock().unwrap()),
                String::from_utf8_lossy(&err.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Give the readers a moment to drain; a container process that outlives
    // the runtime may keep the pipes open, so do not join unconditionally.
    let deadline = Instant::now() + Duration::from_secs(5);
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    Output {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Device and inode of a namespace file such as `/proc/self/ns/net`, as the
/// `net:[4026531840]` string `readlink` shows.
pub fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// One test container: a bundle directory, a state root and an id.
pub struct Container {
    /// Container id (unique per test process and call).
    pub id: String,
    /// The bundle directory (holds `config.json` and `rootfs/`).
    pub bundle: PathBuf,
    /// The `--root` state directory given to the runtime.
    pub root: PathBuf,
    /// The config, written to `config.json` before each create/run.
    pub config: Value,
    /// Extra cgroup paths (relative to each controller mount) to check.
    pub extra_cgroups: Vec<String>,
    /// Extra arguments to the runtime placed before the subcommand.
    pub global_args: Vec<String>,
    /// The runtime binary this container is driven with (default
    /// [`test_bin`]; security tests use a throw-away copy).
    pub bin: PathBuf,
    /// The container's init pid as last seen in `state`; used to reap it
    /// when the runtime leaves it a child of the test process (like a shim).
    pub last_pid: std::cell::Cell<Option<i32>>,
    /// When false the test never reaps the init (a caller that is not a
    /// subreaper, like the runtime-tools suite): an exited init may stay a
    /// zombie child of the test process, which must still count as stopped.
    pub reap_children: bool,
    /// When false, create/run leave `config.json` as it is on disk (for
    /// bad-input tests that write it by hand).
    pub write_config: bool,
    dir: Option<tempfile::TempDir>,
    finished: bool,
}

impl Container {
    /// A fresh bundle with `<bin> spec`'s config, edited for tests: no
    /// terminal, writable root, args `true`.
    pub fn new(tag: &str) -> Container {
        let dir = temp_dir(tag);
        let base = dir.path().to_path_buf();
        let bundle = base.join("bundle");
        fs::create_dir(&bundle).unwrap();
        copy_tree(rootfs_template(), &bundle.join("rootfs"));
        let root = base.join("state");
        fs::create_dir(&root).unwrap();
        let spec = output_timeout(
            Command::new(test_bin())
                .arg("spec")
                .current_dir(&bundle)
                .stdin(Stdio::null()),
            TIMEOUT,
        );
        spec.assert_ok("runtime spec");
        let text = fs::read_to_string(bundle.join("config.json")).expect("spec wrote config.json");
        let mut config: Value = serde_json::from_str(&text).expect("spec config.json is JSON");
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["true"]);
        config["root"] = json!({"path": "rootfs", "readonly": false});
        Container {
            id: unique_id(tag),
            bundle,
            root,
            config,
            extra_cgroups: Vec::new(),
            global_args: Vec::new(),
            write_config: true,
            last_pid: std::cell::Cell::new(None),
            reap_children: true,
            bin: test_bin(),
            dir: Some(dir),
            finished: false,
        }
    }

    /// The temp dir holding bundle and state (also usable for scratch files).
    pub fn scratch(&self) -> PathBuf {
        self.bundle.parent().unwrap().to_path_buf()
    }

    /// The rootfs directory of the bundle.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Set `process.args` to `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    /// Write `config.json` from [`Container::config`].
    pub fn save(&self) {
        if !self.write_config {
            return;
        }
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// A runtime command with `--root` and the global args set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c.args(&self.global_args);
        c.stdin(Stdio::null());
        c
    }

    /// Run a runtime subcommand (args after the global flags) to completion.
    pub fn runtime(&self, args: &[&str]) -> Output {
        output_timeout_with(self.cmd().args(args), TIMEOUT, &mut || self.reap())
    }

    /// `run --bundle B ID` in the foreground; returns the container's output.
    pub fn run(&mut self) -> Output {
        self.save();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let id = self.id.clone();
        self.runtime(&["run", "--bundle", &bundle, &id])
    }

    /// `run` with extra flags before the id.
    pub fn run_with(&mut self, flags: &[&str]) -> Output {
        self.save();
        let bundle = self.bundle.to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", &bundle];
        args.extend_from_slice(flags);
        args.push(&self.id);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        self.runtime(&refs)
    }

    /// `create --bundle B [flags] ID`.  The container's stdio goes to
    /// `<scratch>/stdout` and `<scratch>/stderr` (a pipe would stay open as
    /// long as the container lives); the returned Output holds what the
    /// runtime itself wrote to stderr during create.
    pub fn create_with(&mut self, flags: &[&str]) -> Output {
        self.save();
        let out_path = self.scratch().join("stdout");
        let err_path = self.scratch().join("stderr");
        let out = fs::File::create(&out_path).unwrap();
        let err = fs::File::create(&err_path).unwrap();
        let mut c = self.cmd();
        c.arg("create").arg("--bundle").arg(&self.bundle);
        c.args(flags);
        c.arg(&self.id);
        c.stdout(out).stderr(err);
        let mut child = c.spawn().expect("spawn create");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("create timed out");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Output {
            code: status.code(),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// `create` with no extra flags.
    pub fn create(&mut self) -> Output {
        self.create_with(&[])
    }

    /// What the container wrote to stdout (create/start path).
    pub fn container_stdout(&self) -> String {
        fs::read_to_string(self.scratch().join("stdout")).unwrap_or_default()
    }

    /// `start ID`.
    pub fn start(&self) -> Output {
        self.runtime(&["start", &self.id])
    }

    /// `state ID` parsed as JSON (panics when the command fails).
    pub fn state(&self) -> Value {
        self.reap();
        let out = self.runtime(&["state", &self.id]);
        out.assert_ok("state");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}): {}", out.stdout));
        if let Some(p) = v["pid"].as_i64().filter(|p| *p > 0) {
            self.last_pid.set(Some(p as i32));
        }
        v
    }

    /// `state ID`'s status field, or None when `state` fails.
    pub fn status(&self) -> Option<String> {
        self.reap();
        let out = self.runtime(&["state", &self.id]);
        if !out.ok() {
            return None;
        }
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        if let Some(p) = v["pid"].as_i64().filter(|p| *p > 0) {
            self.last_pid.set(Some(p as i32));
        }
        v["status"].as_str().map(str::to_owned)
    }

    /// Reap the container's init if it exited as a child of this process
    /// (a runtime may leave it parented to its caller, as containerd's shim
    /// expects; the shim reaps it, so the test does too).
    pub fn reap(&self) {
        if !self.reap_children {
            return;
        }
        if let Some(pid) = self.last_pid.get() {
            let mut st = 0;
            // SAFETY: waitpid on a specific pid with WNOHANG; fails with
            // ECHILD when it is not our child, which is fine.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r == pid {
                self.last_pid.set(None);
            }
        }
    }

    /// Poll `state` until the status is `want` (panics after `limit`).
    pub fn wait_status(&self, want: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let st = self.status();
            if st.as_deref() == Some(want) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "container {} did not reach {want}: last status {st:?}",
                    self.id
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill ID SIG`.
    pub fn kill(&self, sig: &str) -> Output {
        self.runtime(&["kill", &self.id, sig])
    }

    /// `delete [--force] ID`.
    pub fn delete(&self, force: bool) -> Output {
        if force {
            self.runtime(&["delete", "--force", &self.id])
        } else {
            self.runtime(&["delete", &self.id])
        }
    }

    /// Force-delete the container, then assert nothing is left behind:
    /// no state under `--root`, no mount under the bundle, no cgroup
    /// directory named after the id.
    pub fn finish(mut self) {
        self.finished = true;
        if self.last_pid.get().is_none() {
            let _ = self.status();
        }
        self.reap();
        let del = self.delete(true);
        // the init may only now have been killed
        if let Some(pid) = self.last_pid.get() {
            let start = Instant::now();
            while self.last_pid.get().is_some() && start.elapsed() < Duration::from_secs(2) {
                self.reap();
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Err(e) = std::panic::catch_unwind(|| {
            assert_clean(&self.root, &self.bundle, &self.id, &self.extra_cgroups)
        }) {
            eprintln!("delete --force {}: {del:?}", self.id);
            std::panic::resume_unwind(e);
        }
    }

    /// Drop without deleting the container (for a second handle on another
    /// handle's container, e.g. a duplicate-id create).
    pub fn disarm(mut self) {
        self.finished = true;
    }

    /// Assert nothing is left without deleting first.
    pub fn assert_clean(&self) {
        assert_clean(&self.root, &self.bundle, &self.id, &self.extra_cgroups);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.finished {
            self.reap();
            let child = Command::new(&self.bin)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &self.id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                // never hang in drop: give up after 10 s
                let start = Instant::now();
                loop {
                    self.reap();
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if start.elapsed() > Duration::from_secs(10) => {
                            eprintln!("delete --force {} hung; killed it", self.id);
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        }
        // Unmount anything a failed test left under the bundle so the temp
        // dir can be removed.
        for m in mounts_under(&self.scratch()).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        if std::env::var_os("SKIFF_TEST_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping {}", d.keep().display());
            }
        }
    }
}

/// Mount points in the host's mount table at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|mp| mp == &d || mp.starts_with(&format!("{d}/")))
        .collect()
}

/// Cgroup directories that exist for `id` under any controller.
pub fn leftover_cgroups(id: &str, extra: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut rels = vec![id.to_string(), format!("skiff/{id}"), format!("skiff-{id}")];
    rels.extend(extra.iter().map(|e| e.trim_start_matches('/').to_string()));
    for e in rd.flatten() {
        let ctrl = e.path();
        if !ctrl.is_dir() {
            continue;
        }
        // cgroup2 at /sys/fs/cgroup itself would be covered by the
        // controller loop on a pure v2 host
        for rel in &rels {
            let p = ctrl.join(rel);
            if p.exists() {
                found.push(p);
            }
        }
    }
    for rel in &rels {
        let p = Path::new("/sys/fs/cgroup").join(rel);
        if p.join("cgroup.procs").exists() {
            found.push(p);
        }
    }
    // The test process may itself sit in a nested cgroup (runc places
    // containers relative to its own cgroup for some controllers).
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if path == "/" {
            continue;
        }
        let mount = match ctrls {
            "" => "unified".to_string(),
            c => c
                .split(',')
                .next()
                .unwrap_or(c)
                .trim_start_matches("name=")
                .to_string(),
        };
        let base = Path::new("/sys/fs/cgroup")
            .join(mount)
            .join(path.trim_start_matches('/'));
        for rel in &rels {
            let p = base.join(rel);
            if p.exists() && !found.contains(&p) {
                found.push(p);
            }
        }
    }
    found
}

/// Live (non-zombie) processes whose cgroup path names container `id`.
pub fn leftover_processes(id: &str) -> Vec<i64> {
    let needle = format!("/{id}");
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(cg) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        let hit = cg
            .lines()
            .any(|l| l.ends_with(&needle) || l.contains(&format!("{needle}/")));
        if hit && pid_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Assert that nothing of container `id` is left (polls up to 2 s since
/// cgroup removal can lag behind process exit).
pub fn assert_clean(root: &Path, bundle: &Path, id: &str, extra_cgroups: &[String]) {
    let start = Instant::now();
    loop {
        let state: Vec<String> = fs::read_dir(root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        let mounts = mounts_under(bundle);
        let cgroups = leftover_cgroups(id, extra_cgroups);
        let procs = leftover_processes(id);
        if state.is_empty() && mounts.is_empty() && cgroups.is_empty() && procs.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(2) {
            panic!(
                "container {id} left things behind: state {state:?} under {}, mounts {mounts:?}, cgroups {cgroups:?}, processes {procs:?}",
                root.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hook entry that appends `<name>` and then its stdin (the state JSON) as
/// one line to `log`.  `/bin/sh` exists both on the host and in the busybox
/// rootfs, so the same entry works for hooks run in either mount namespace.
pub fn logging_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo {name} >> {l}; cat >> {l}; echo >> {l}", l = log.display())],
    })
}

/// Parse a hook log written by [`logging_hook`] hooks: (name, state JSON).
pub fn read_hook_log(log: &Path) -> Vec<(String, Value)> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut res = Vec::new();
    while let Some(name) = lines.next() {
        let state = lines
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        res.push((name.trim().to_string(), state));
    }
    res
}

/// A unix socket that receives a pty master over `SCM_RIGHTS`, as
/// `--console-socket` requires.
pub struct ConsoleSocket {
    /// Path of the listening socket.
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    /// Bind a listening socket at `path`.
    pub fn bind(path: &Path) -> ConsoleSocket {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind console socket");
        ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        }
    }

    /// Accept one connection and receive one fd (the pty master).  Waits at
    /// most `limit`.
    pub fn recv_master(&self, limit: Duration) -> OwnedFd {
        self.listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        start.elapsed() < limit,
                        "no connection on the console socket"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(limit)).unwrap();
        recv_fd(stream.as_raw_fd()).expect("receive pty master over SCM_RIGHTS")
    }
}

/// Receive one file descriptor sent with `SCM_RIGHTS` on socket `sock`.
pub fn recv_fd(sock: i32) -> std::io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for a few fds' worth of control data, 8-byte aligned.
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is a plain C struct; all-zero is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points at live buffers (iov, cbuf) for the whole call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_* walk within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32);
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Err(std::io::Error::other("no SCM_RIGHTS message"))
}

/// Read everything from a pty master until the slave side is closed (EIO)
/// or `limit` passes.
pub fn read_pty(master: OwnedFd, limit: Duration) -> String {
    let file = fs::File::from(master);
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b2 = buf.clone();
    let h = std::thread::spawn(move || {
        let mut f = file;
        let mut chunk = [0u8; 4096];
        loop {
            match f.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b2.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    });
    let start = Instant::now();
    while !h.is_finished() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    out
}

/// The host's hard limit for resource `res` (a `libc::RLIMIT_*`).
pub fn host_hard_limit(res: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer for getrlimit.
    unsafe { libc::getrlimit(res, &mut r) };
    r.rlim_max
}

/// Parse a hex capability mask line (e.g. `CapEff:\t00000000a80425fb`) out of
/// a `/proc/<pid>/status` text.
pub fn cap_field(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing in status:\n{status}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// A value of a `Key:\tvalue` line of `/proc/<pid>/status`.
pub fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .map(|l| l[field.len() + 1..].trim())
        .unwrap_or_else(|| panic!("{field} missing in status:\n{status}"))
}

/// True when `gcc` can build static binaries (for attack helpers that must
/// run inside the busybox rootfs).
pub fn build_static_c(src: &str, out: &Path) -> Result<(), String> {
    let dir = temp_dir("cc");
    let c = dir.path().join("prog.c");
    fs::write(&c, src).unwrap();
    let o = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(out)
        .arg(&c)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "gcc failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

/// Keep an fd open without CLOEXEC in children by placing it at `target`
/// in a `pre_exec` hook.
pub fn pass_fd(cmd: &mut Command, fd: i32, target: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls async-signal-safe dup2/fcntl between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Raw fd of a file (for [`pass_fd`]).
pub fn raw(f: &impl AsRawFd) -> i32 {
    f.as_raw_fd()
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone)]
pub struct MountInfo {
    /// Mount point (field 5).
    pub mount_point: String,
    /// Per-mount options (field 6), e.g. `rw,nosuid,nodev`.
    pub opts: Vec<String>,
    /// Optional fields (e.g. `shared:12`, `master:3`).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Super-block options, e.g. `rw,size=1024k,mode=1777`.
    pub super_opts: Vec<String>,
}

/// Parse mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut res = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 4 || sep < 6 {
            continue;
        }
        res.push(MountInfo {
            mount_point: fields[4].to_string(),
            opts: fields[5].split(',').map(str::to_owned).collect(),
            optional: fields[6..sep].iter().map(|s| s.to_string()).collect(),
            fstype: fields[sep + 1].to_string(),
            source: fields[sep + 2].to_string(),
            super_opts: fields[sep + 3].split(',').map(str::to_owned).collect(),
        });
    }
    res
}

/// The last (top-most) mount at `mount_point` in parsed mountinfo.
pub fn find_mount<'a>(mounts: &'a [MountInfo], mount_point: &str) -> &'a MountInfo {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .unwrap_or_else(|| panic!("no mount at {mount_point} in {mounts:#?}"))
}

/// Wait until `path` exists (true) or `limit` passes (false).
pub fn wait_for_path(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    path.exists()
}

/// True while process `pid` exists and is not a zombie.
pub fn pid_alive(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Wait until process `pid` is gone (true) or `limit` passes (false).
pub fn wait_pid_gone(pid: i64, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !pid_alive(pid)
}

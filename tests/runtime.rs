//! Outside-in tests of the runtime core: each test builds a bundle
//! from a busybox rootfs, drives the runtime binary with runc's command line
//! and checks the result from inside the container (its own view of
//! `/proc/self/status`, `/proc/self/mountinfo`, `id`, `hostname`, ...).
//!
//! Run with `cargo test -p skiff --test runtime` as root.  Set
//! `SKIFF_TEST_BIN=/usr/sbin/runc` to run the same tests against runc;
//! expectations where runc deviates from the runtime-spec apply to skiff
//! only (`is_skiff()`).  Every test ends with `Container::finish`, which
//! force-deletes and asserts that no state, mount or cgroup is left.
mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SEC5: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- process

#[test]
fn run_exit_code_and_stdio() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("exit");
    c.sh("echo hello; echo err >&2; exit 3");
    let out = c.run();
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "hello\n");
    assert!(out.stderr.contains("err"), "{out:?}");
    c.finish();
}

/// A capability the host cannot grant (CAP_SYS_RESOURCE is missing from
/// every bounding set here) fails `create` itself with the init's error,
/// and nothing is left (runtime-spec: a property that cannot be applied
/// fails `create`).
#[test]
fn unappliable_capability_fails_create() {
    if !need_root() {
        return;
    }
    if host_has_cap(24)
    /* CAP_SYS_RESOURCE */
    {
        skip("this host grants CAP_SYS_RESOURCE: no capability to fail with");
        return;
    }
    let mut c = Container::new("cap-fail");
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_SYS_RESOURCE"],
        "permitted": ["CAP_SYS_RESOURCE"],
        "effective": ["CAP_SYS_RESOURCE"],
    });
    let out = c.create();
    out.assert_fail("create with a capability the host lacks");
    assert!(out.stderr.contains("capabilit"), "{out:?}");
    c.assert_clean();
    c.finish();
}

/// Whether the test process's bounding set has capability `cap`.
fn host_has_cap(cap: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    cap_field(&status, "CapBnd") & (1u64 << cap) != 0
}

/// When `create` returns, the init already is what the process will run
/// as (user, groups, capabilities, no_new_privs): after `start` only the
/// exec remains.
#[test]
fn create_returns_with_the_process_identity_applied() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("cap-early");
    caps_config(&mut c);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [7]});
    c.config["process"]["noNewPrivileges"] = json!(true);
    c.create().assert_ok("create");
    let pid = c.state()["pid"].as_i64().expect("state has a pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status_field(&status, "Uid").starts_with("1000\t"),
        "{status}"
    );
    assert!(
        status_field(&status, "Gid").starts_with("1000\t"),
        "{status}"
    );
    assert_eq!(status_field(&status, "Groups").trim(), "7", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    assert_eq!(
        cap_field(&status, "CapBnd"),
        CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW,
        "{status}"
    );
    assert_eq!(cap_field(&status, "CapAmb"), CAP_KILL, "{status}");
    c.start().assert_ok("start");
    c.finish();
}

/// A program that cannot be executed fails `create` with Go's (runc's)
/// words, which docker, podman and containerd classify, and the shell's
/// status: 127 when not found, 126 when not executable.
#[test]
fn missing_or_non_executable_program_exit_codes() {
    if !need_root() {
        return;
    }
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["no-such-prog"],
            127,
            "exec: \"no-such-prog\": executable file not found in $PATH",
        ),
        (
            &["/no/such"],
            127,
            "exec: \"/no/such\": stat /no/such: no such file or directory",
        ),
        (
            &["/etc/passwd"],
            126,
            "exec: \"/etc/passwd\": permission denied",
        ),
        (&["/etc"], 126, "exec: \"/etc\": permission denied"),
    ];
    for (args, code, text) in cases {
        let mut c = Container::new("noexec");
        c.config["process"]["args"] = json!(args);
        let out = c.run();
        if is_skiff() {
            assert_eq!(out.code, Some(code), "{args:?}: {out:?}");
        } else {
            out.assert_fail("run");
        }
        assert!(out.stderr.contains(text), "{args:?}: {out:?}");
        c.finish();
    }
}

/// A network namespace the runtime creates has `lo` up (IFF_UP in the
/// flags), as runc and crun leave it: 127.0.0.1 is reachable.
#[test]
fn new_network_namespace_has_loopback_up() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("lo-up");
    c.sh("cat /sys/class/net/lo/flags");
    let out = c.run();
    out.assert_ok("run");
    let flags = u32::from_str_radix(out.stdout.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("lo flags: {out:?}"));
    assert_eq!(flags & libc::IFF_UP as u32, libc::IFF_UP as u32, "{out:?}");
    c.finish();
}

/// `terminal: true` in the foreground without `--console-socket` and
/// without any terminal (no tty on stdio, no controlling terminal): the
/// runtime fails at once, naming /dev/tty as runc does, instead of starting
/// an interactive shell that no one can reach.
#[test]
fn terminal_without_socket_or_tty_fails_fast() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("tty-none");
    c.config["process"]["terminal"] = json!(true);
    c.config["process"]["args"] = json!(["sh"]);
    c.save();
    let mut cmd = c.cmd();
    cmd.arg("run").arg("--bundle").arg(&c.bundle).arg(&c.id);
    // SAFETY: setsid in the forked child before exec: no controlling tty.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let out = output_timeout(&mut cmd, TIMEOUT);
    out.assert_fail("run with a terminal and no tty");
    assert!(out.stderr.contains("/dev/tty"), "{out:?}");
    c.finish();
}

/// Recursive atime options reach every mount below the bind (the kernel
/// takes an atime mode only with the whole atime mask cleared).
#[test]
fn recursive_atime_options() {
    if !need_root() {
        return;
    }
    for (opt, want, unwanted) in [
        ("rnoatime", Some("noatime"), "relatime"),
        ("rstrictatime", None, "relatime"),
        ("rrelatime", Some("relatime"), "noatime"),
        ("ratime", Some("relatime"), "noatime"),
    ] {
        let mut c = Container::new("ratime");
        let src = c.scratch().join("src");
        fs::create_dir(&src).unwrap();
        c.config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt", "type": "bind", "source": src,
                         "options": ["rbind", "noatime", opt]}));
        c.sh("grep ' /mnt ' /proc/self/mountinfo");
        let out = c.run();
        out.assert_ok(opt);
        let opts = out
            .stdout
            .split_whitespace()
            .nth(5)
            .unwrap_or("")
            .to_string();
        let list: Vec<&str> = opts.split(',').collect();
        if let Some(w) = want {
            assert!(list.contains(&w), "{opt}: {}", out.stdout);
        }
        assert!(!list.contains(&unwanted), "{opt}: {}", out.stdout);
        if opt == "rstrictatime" {
            assert!(!list.contains(&"noatime"), "{opt}: {}", out.stdout);
        }
        c.finish();
    }
}

/// Masked directories are an empty read-only tmpfs that can be listed
/// (`ls /proc/acpi` works, as with runc), files stay /dev/null.
#[test]
fn masked_directory_can_be_listed() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("mask-ls");
    // A directory and a file present on any Linux host.
    c.config["linux"]["maskedPaths"] = json!(["/sys/firmware", "/proc/timer_list"]);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.sh(
        "ls -a /sys/firmware && echo n=$(ls /sys/firmware | wc -l) && \
          (touch /sys/firmware/x 2>/dev/null && echo writable); \
          echo c=$(wc -c < /proc/timer_list)",
    );
    let out = c.run();
    out.assert_ok("ls of a masked directory");
    assert!(out.stdout.contains("n=0"), "{out:?}");
    assert!(out.stdout.contains("c=0"), "{out:?}");
    assert!(!out.stdout.contains("writable"), "{out:?}");
    c.finish();
}

/// A proc (or sysfs) mount whose destination in the image is a symlink is
/// refused with runc's words instead of being mounted where it points.
#[test]
fn proc_on_a_symlink_is_refused() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("proc-link");
    let target = c.rootfs().join("proc2");
    fs::create_dir_all(&target).unwrap();
    let proc = c.rootfs().join("proc");
    let _ = fs::remove_dir(&proc);
    std::os::unix::fs::symlink("proc2", &proc).unwrap();
    let out = c.create();
    out.assert_fail("proc on a symlink");
    assert!(
        out.stderr.contains("must be mounted on ordinary directory"),
        "{out:?}"
    );
    c.assert_clean();
    c.finish();
}

/// A hook without `env` runs with the runtime's environment (as runc's and
/// youki's); a hook with `env` gets exactly that.
#[test]
fn hook_without_env_inherits_the_runtime_environment() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("hook-env");
    let log = c.scratch().join("env.log");
    let log2 = c.scratch().join("env2.log");
    c.config["hooks"] = json!({
        "createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", format!("env > {}", log.display())]},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("env > {}", log2.display())],
             "env": ["ONLY=1"]},
        ]
    });
    c.save();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let id = c.id.clone();
    let mut cmd = c.cmd();
    cmd.env("SKIFF_HOOK_MARK", "present");
    cmd.args(["run", "--bundle", &bundle, &id]);
    output_timeout(&mut cmd, TIMEOUT).assert_ok("run with hooks");
    let env = fs::read_to_string(&log).unwrap();
    assert!(env.contains("SKIFF_HOOK_MARK=present"), "{env}");
    let env2 = fs::read_to_string(&log2).unwrap();
    assert!(env2.contains("ONLY=1"), "{env2}");
    assert!(!env2.contains("SKIFF_HOOK_MARK"), "{env2}");
    c.finish();
}

/// A seccomp profile that refuses syscalls newer than itself (openat2
/// with EPERM, as runtime-tools' and older engines' default profiles do)
/// and no `noNewPrivileges`: the filter is loaded before the user and
/// capabilities are set, and the cwd is still entered (as root first).
#[test]
fn old_seccomp_profile_without_nnp_still_enters_cwd() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("old-seccomp");
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.config["process"]["cwd"] = json!("/tmp");
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["openat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    });
    c.sh("pwd; id -u");
    let out = c.run();
    out.assert_ok("run with an old-style seccomp profile");
    assert_eq!(out.stdout, "/tmp\n1000\n", "{out:?}");
    c.finish();
}

/// Drops the namespace `typ` from the config's namespaces.
fn without_ns(c: &mut Container, typ: &str) {
    let ns: Vec<Value> = c.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != typ)
        .cloned()
        .collect();
    c.config["linux"]["namespaces"] = json!(ns);
}

/// A config without a mount namespace: the container shares the runtime's
/// (runtime-spec: a namespace type that is absent is inherited), its mounts
/// are made under the rootfs there, and `delete` takes them away again.
#[test]
fn no_mount_namespace_is_inherited_and_cleaned_up() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc leaves a no-mount-namespace container's mounts on the host");
        return;
    }
    let mut c = Container::new("nomntns");
    without_ns(&mut c, "mount");
    let linux = c.config["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    c.sh("readlink /proc/self/ns/mnt; test -c /dev/null && echo devnull; ls /proc/1/status");
    c.create().assert_ok("create");
    let mounted = mounts_under(&c.rootfs());
    assert!(
        mounted.iter().any(|m| m.ends_with("/rootfs/proc")),
        "the container's /proc is a mount in the host's namespace: {mounted:?}"
    );
    c.start().assert_ok("start");
    c.wait_status("stopped", Duration::from_secs(10));
    let out = c.container_stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(host_ns("mnt").as_str()),
        "{out}"
    );
    assert!(out.contains("devnull\n/proc/1/status"), "{out}");
    // finish() deletes and asserts no mount is left under the bundle
    c.finish();
}

/// Without a mount namespace, masking paths would mean mounting over the
/// host's view: refused with a clear error, like runc, leaving nothing.
#[test]
fn no_mount_namespace_refuses_masked_paths() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("nomntns-mask");
    without_ns(&mut c, "mount");
    c.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    c.config["linux"]["readonlyPaths"] = json!([]);
    let out = c.create();
    out.assert_fail("create with maskedPaths and no mount namespace");
    if is_skiff() {
        assert!(
            out.stderr
                .contains("linux.maskedPaths needs a mount namespace"),
            "{}",
            out.stderr
        );
    }
    c.assert_clean();
    c.finish();
}

#[test]
fn process_args_env_cwd() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("args");
    fs::create_dir(c.rootfs().join("work")).unwrap();
    c.config["process"]["args"] = json!([
        "sh",
        "-c",
        "echo \"$0|$1|$2\"; pwd; echo \"$FOO\"; echo \"$PATH\"",
        "arg0",
        "a b",
        "c"
    ]);
    c.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar baz"]);
    c.config["process"]["cwd"] = json!("/work");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout, "arg0|a b|c\n/work\nbar baz\n/bin:/usr/bin\n");
    c.finish();
}

#[test]
fn process_user_groups_umask() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("user");
    c.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 100], "umask": 0o027});
    c.config["process"]["cwd"] = json!("/home/test");
    c.sh("id -u; id -g; umask; grep -E '^(Uid|Gid|Groups):' /proc/self/status; touch f; stat -c '%u %g %a' f");
    let out = c.run();
    out.assert_ok("run");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "0027");
    let status = out.stdout.clone();
    assert_eq!(status_field(&status, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(&status, "Gid"), "1000\t1000\t1000\t1000");
    let mut groups: Vec<&str> = status_field(&status, "Groups").split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, vec!["10", "100"], "{status}");
    assert_eq!(lines.last().unwrap(), &"1000 1000 640");
    c.finish();
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_RAW: u64 = 1 << 13;

fn caps_config(c: &mut Container) {
    c.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"],
    });
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.config["process"]["args"] = json!(["cat", "/proc/self/status"]);
}

#[test]
fn capabilities_all_five_sets_non_root() {
    if !need_root() {
        return;
    }
    // As a non-root user, execve keeps exactly: bounding and inheritable as
    // set, ambient as set, permitted = effective = ambient (no file caps).
    let mut c = Container::new("caps-user");
    caps_config(&mut c);
    c.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = c.run();
    out.assert_ok("run");
    let s = &out.stdout;
    assert_eq!(
        cap_field(s, "CapBnd"),
        CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW,
        "{s}"
    );
    assert_eq!(
        cap_field(s, "CapInh"),
        CAP_KILL | CAP_NET_BIND_SERVICE,
        "{s}"
    );
    assert_eq!(cap_field(s, "CapAmb"), CAP_KILL, "{s}");
    assert_eq!(cap_field(s, "CapPrm"), CAP_KILL, "{s}");
    assert_eq!(cap_field(s, "CapEff"), CAP_KILL, "{s}");
    c.finish();
}

#[test]
fn capabilities_all_five_sets_root() {
    if !need_root() {
        return;
    }
    // As uid 0 the kernel grants the bounding set (plus inheritable) across
    // execve: permitted = effective = bounding | inheritable.
    let mut c = Container::new("caps-root");
    caps_config(&mut c);
    let out = c.run();
    out.assert_ok("run");
    let s = &out.stdout;
    let bnd = CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE | CAP_NET_RAW;
    assert_eq!(cap_field(s, "CapBnd"), bnd, "{s}");
    assert_eq!(
        cap_field(s, "CapInh"),
        CAP_KILL | CAP_NET_BIND_SERVICE,
        "{s}"
    );
    assert_eq!(cap_field(s, "CapAmb"), CAP_KILL, "{s}");
    assert_eq!(cap_field(s, "CapPrm"), bnd, "{s}");
    assert_eq!(cap_field(s, "CapEff"), bnd, "{s}");
    c.finish();
}

#[test]
fn runc_spec_capabilities_shape_runs() {
    // `runc spec` lists ambient capabilities but no inheritable set; raising
    // them then fails in the kernel and runc carries on (ambient stays
    // empty).  Configs written by `runc spec` must keep working.
    if !need_root() {
        return;
    }
    let mut c = Container::new("runc-caps");
    let three = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    c.config["process"]["capabilities"] = json!({
        "bounding": three, "effective": three, "permitted": three, "ambient": three,
    });
    c.config["process"]["args"] = json!(["cat", "/proc/self/status"]);
    let out = c.run();
    out.assert_ok("run with runc spec's capability sets");
    let want = (1u64 << 29) | CAP_KILL | CAP_NET_BIND_SERVICE;
    assert_eq!(cap_field(&out.stdout, "CapBnd"), want);
    assert_eq!(cap_field(&out.stdout, "CapEff"), want);
    c.finish();
}

#[test]
fn no_new_privileges() {
    if !need_root() {
        return;
    }
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut c = Container::new("nnp");
        c.config["process"]["noNewPrivileges"] = json!(nnp);
        c.config["process"]["args"] = json!(["cat", "/proc/self/status"]);
        let out = c.run();
        out.assert_ok("run");
        assert_eq!(
            status_field(&out.stdout, "NoNewPrivs"),
            want,
            "noNewPrivileges={nnp}"
        );
        c.finish();
    }
}

#[test]
fn rlimits_at_or_below_host() {
    if !need_root() {
        return;
    }
    let nofile_hard = host_hard_limit(libc::RLIMIT_NOFILE).min(2048);
    let nproc_hard = host_hard_limit(libc::RLIMIT_NPROC).min(4096);
    let mut c = Container::new("rlimits");
    c.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": nofile_hard},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": nproc_hard},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]);
    c.config["process"]["args"] = json!(["cat", "/proc/self/limits"]);
    let out = c.run();
    out.assert_ok("run");
    let limit = |name: &str| -> (String, String) {
        let line = out.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        let f: Vec<&str> = line[name.len()..].split_whitespace().collect();
        (f[0].to_string(), f[1].to_string())
    };
    assert_eq!(
        limit("Max open files"),
        ("100".into(), nofile_hard.to_string())
    );
    assert_eq!(
        limit("Max processes"),
        ("300".into(), nproc_hard.to_string())
    );
    assert_eq!(limit("Max core file size"), ("0".into(), "0".into()));
    c.finish();
}

#[test]
fn rlimit_above_host_hard_fails() {
    if !need_root() {
        return;
    }
    let hard = host_hard_limit(libc::RLIMIT_NOFILE);
    let status = fs::read_to_string("/proc/self/status").unwrap();
    if cap_field(&status, "CapBnd") & (1 << 24) != 0 {
        skip("CAP_SYS_RESOURCE is available: raising the hard limit would succeed");
        return;
    }
    if hard == libc::RLIM_INFINITY {
        skip("host nofile hard limit is unlimited");
        return;
    }
    let mut c = Container::new("rlimit-high");
    c.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]);
    c.create()
        .assert_fail("create with rlimit above host hard limit");
    c.finish();
}

#[test]
fn oom_score_adj() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("oom");
    c.config["process"]["oomScoreAdj"] = json!(500);
    c.config["process"]["args"] = json!(["cat", "/proc/self/oom_score_adj"]);
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout.trim(), "500");
    c.finish();
}

#[test]
fn hostname_and_domainname() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("uts");
    c.config["hostname"] = json!("skiff-box");
    c.config["domainname"] = json!("example.test");
    c.sh("hostname; cat /proc/sys/kernel/domainname");
    let out = c.run();
    out.assert_ok("run");
    if is_runc() {
        // runc 1.1 ignores `domainname`
        assert!(out.stdout.starts_with("skiff-box\n"), "{}", out.stdout);
    } else {
        assert_eq!(out.stdout, "skiff-box\nexample.test\n");
    }
    c.finish();
}

#[test]
fn sysctl_in_new_namespaces() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("sysctl");
    c.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "kernel.shm_rmid_forced": "1",
    });
    c.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout, "1\n1\n");
    // the host is unaffected (the container had its own net namespace)
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim()
            .len(),
        1
    );
    c.finish();
}

// ---------------------------------------------------------------- namespaces

const NS_KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user", "time"];

fn ns_script() -> String {
    NS_KINDS
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k};"))
        .collect()
}

fn ns_map(out: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| (k.to_string(), l.to_string()))
        })
        .collect()
}

#[test]
fn namespaces_new_vs_host() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("ns");
    c.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
        {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
    ]);
    c.sh(&format!("{} echo pid=$$", ns_script()));
    let out = c.run();
    out.assert_ok("run");
    let inside = ns_map(&out.stdout);
    for (k, new) in [
        ("pid", true),
        ("net", true),
        ("ipc", true),
        ("uts", true),
        ("mnt", true),
        ("cgroup", true),
        ("user", false),
        ("time", false),
    ] {
        let host = host_ns(k);
        let got = inside
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {}", out.stdout));
        if new {
            assert_ne!(got, &host, "{k} namespace should be new");
        } else {
            assert_eq!(got, &host, "{k} namespace should be the host's");
        }
    }
    assert!(
        out.stdout.contains("pid=1\n"),
        "init is pid 1 in a new pid ns: {}",
        out.stdout
    );
    c.finish();
}

#[test]
fn namespace_user_with_mappings() {
    if !need_root() {
        return;
    }
    if !Path::new("/proc/self/ns/user").exists() {
        skip("no user namespaces");
        return;
    }
    let mut c = Container::new("userns");
    let ns = c.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    c.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    c.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let data = c.rootfs().join("data");
    fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(200000), Some(200000)).unwrap();
    c.sh("id -u; id -g; cat /proc/self/uid_map; touch /data/f; readlink /proc/self/ns/user");
    let out = c.run();
    out.assert_ok("run");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "0");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, vec!["0", "200000", "65536"]);
    assert_ne!(lines[3], host_ns("user"));
    let md = fs::metadata(data.join("f")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (200000, 200000),
        "file owned by the mapped host ids"
    );
    c.finish();
}

/// Removes a named network namespace on drop.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn namespace_join_existing_netns_by_path() {
    if !need_root() {
        return;
    }
    let name = unique_id("netns");
    let ok = Command::new("ip").args(["netns", "add", &name]).status();
    if !matches!(ok, Ok(s) if s.success()) {
        skip("ip netns add failed");
        return;
    }
    let _guard = NetnsGuard(name.clone());
    let path = format!("/var/run/netns/{name}");
    let ino = fs::metadata(&path).unwrap().ino();
    let mut c = Container::new("joinns");
    for ns in c.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = json!(path);
        }
    }
    c.config["process"]["args"] = json!(["readlink", "/proc/self/ns/net"]);
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout.trim(), format!("net:[{ino}]"));
    c.finish();
}

#[test]
fn namespace_time_offsets() {
    if !need_root() {
        return;
    }
    if !Path::new("/proc/self/ns/time").exists() {
        skip("kernel has no time namespaces");
        return;
    }
    if is_runc() {
        skip("runc 1.1 does not support the time namespace");
        return;
    }
    let offset = 10 * 86400;
    let mut c = Container::new("timens");
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    c.config["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": offset, "nanosecs": 0},
        "monotonic": {"secs": offset, "nanosecs": 0},
    });
    c.sh("cat /proc/uptime; readlink /proc/self/ns/time");
    let out = c.run();
    out.assert_ok("run");
    let host_up: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let up: f64 = lines[0].split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        up >= host_up + offset as f64 - 10.0 && up <= host_up + offset as f64 + 10.0,
        "uptime {up} vs host {host_up}"
    );
    assert_ne!(lines[1], host_ns("time"));
    c.finish();
}

// ---------------------------------------------------------------- mounts

/// Mounts a tmpfs at `path` on the host and unmounts it on drop.
struct HostMount(std::path::PathBuf);
impl HostMount {
    fn tmpfs(path: &Path) -> HostMount {
        fs::create_dir_all(path).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs at {}", path.display());
        HostMount(path.to_path_buf())
    }
}
impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn mounts_bind_rbind_flags_tmpfs() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("mounts");
    let src = c.scratch().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("hello"), "hi\n").unwrap();
    let sub = HostMount::tmpfs(&src.join("sub"));
    fs::write(src.join("sub/inner"), "inner\n").unwrap();
    let s = src.to_string_lossy().into_owned();
    let mounts = c.config["mounts"].as_array_mut().unwrap();
    mounts.extend([
        json!({"destination": "/mnt/bind", "type": "bind", "source": s, "options": ["bind"]}),
        json!({"destination": "/mnt/rbind", "type": "bind", "source": s, "options": ["rbind"]}),
        json!({"destination": "/mnt/ro", "type": "bind", "source": s, "options": ["bind", "ro"]}),
        json!({"destination": "/mnt/flags", "type": "bind", "source": s, "options": ["bind", "nosuid", "nodev", "noexec", "noatime"]}),
        json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=1770", "nosuid"]}),
    ]);
    c.sh("cat /mnt/bind/hello; \
         test -e /mnt/bind/sub/inner && echo bind-sees-sub || echo bind-no-sub; \
         cat /mnt/rbind/sub/inner; \
         touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused; \
         touch /mnt/tmp/x && echo tmp-writable; stat -c %a /mnt/tmp; \
         echo ---; cat /proc/self/mountinfo");
    let out = c.run();
    out.assert_ok("run");
    let (head, mi) = out.stdout.split_once("---\n").unwrap();
    assert_eq!(
        head, "hi\nbind-no-sub\ninner\nro-refused\ntmp-writable\n1770\n",
        "{}",
        out.stdout
    );
    let m = parse_mountinfo(mi);
    assert!(find_mount(&m, "/mnt/ro").opts.contains(&"ro".into()));
    assert!(find_mount(&m, "/mnt/bind").opts.contains(&"rw".into()));
    let f = find_mount(&m, "/mnt/flags");
    for o in ["nosuid", "nodev", "noexec", "noatime"] {
        assert!(
            f.opts.contains(&o.to_string()),
            "{o} missing on /mnt/flags: {f:?}"
        );
    }
    let t = find_mount(&m, "/mnt/tmp");
    assert_eq!(t.fstype, "tmpfs");
    assert!(t.super_opts.contains(&"size=1024k".into()), "{t:?}");
    assert!(t.super_opts.contains(&"mode=1770".into()), "{t:?}");
    assert!(t.opts.contains(&"nosuid".into()));
    find_mount(&m, "/mnt/rbind/sub");
    // the host source is unchanged
    assert_eq!(fs::read_to_string(src.join("hello")).unwrap(), "hi\n");
    assert!(!src.join("x").exists());
    drop(sub);
    c.finish();
}

#[test]
fn mounts_recursive_readonly() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("rro");
    let src = c.scratch().join("src");
    fs::create_dir(&src).unwrap();
    let sub = HostMount::tmpfs(&src.join("sub"));
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/mnt/rro", "type": "bind", "source": s, "options": ["rbind", "rro"]}),
    );
    c.sh("touch /mnt/rro/a 2>/dev/null && echo top-rw || echo top-ro; touch /mnt/rro/sub/a 2>/dev/null && echo sub-rw || echo sub-ro");
    let out = c.run();
    if !out.ok() && out.stderr.contains("mount_setattr") {
        skip("kernel lacks mount_setattr for recursive read-only");
        drop(sub);
        c.finish();
        return;
    }
    out.assert_ok("run");
    assert_eq!(out.stdout, "top-ro\nsub-ro\n");
    drop(sub);
    c.finish();
}

#[test]
fn mounts_propagation_flags() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("propagation");
    let src = c.scratch().join("src");
    fs::create_dir(&src).unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt/shared", "type": "bind", "source": s, "options": ["rbind", "rshared"]}),
        json!({"destination": "/mnt/private", "type": "bind", "source": s, "options": ["rbind", "rprivate"]}),
    ]);
    c.config["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
    let out = c.run();
    out.assert_ok("run");
    let m = parse_mountinfo(&out.stdout);
    let shared = find_mount(&m, "/mnt/shared");
    assert!(
        shared.optional.iter().any(|o| o.starts_with("shared:")),
        "{shared:?}"
    );
    let private = find_mount(&m, "/mnt/private");
    assert!(private.optional.is_empty(), "{private:?}");
    c.finish();
}

/// `rootfsPropagation: rshared` with an `rshared` bind of a shared host
/// directory: a mount made in the container under the bind appears on the
/// host (and one made on the host appears in the container), as with runc
/// (critest's bidirectional mount propagation).
#[test]
fn rootfs_propagation_rshared_reaches_the_host() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("rshared");
    let src = c.scratch().join("shared-src");
    fs::create_dir_all(src.join("from-container")).unwrap();
    fs::create_dir_all(src.join("from-host")).unwrap();
    let s = src.to_string_lossy().into_owned();
    // The host side: a shared mount (its own peer group).
    let sh = |args: &[&str]| {
        let out = output_timeout(Command::new("mount").args(args), TIMEOUT);
        out.assert_ok(&format!("mount {args:?}"));
    };
    sh(&["--bind", &s, &s]);
    sh(&["--make-shared", &s]);
    let host_sub = src.join("from-host");
    let cleanup = || {
        for m in mounts_under(&src).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    };
    c.config["linux"]["rootfsPropagation"] = json!("rshared");
    c.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/mnt", "type": "bind", "source": s, "options": ["rbind", "rshared"]}),
    );
    let caps = json!(["CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE"]);
    c.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    c.config["process"]["args"] = json!(["sleep", "60"]);
    let created = c.create();
    if !created.ok() {
        cleanup();
    }
    created.assert_ok("create");
    c.start().assert_ok("start");
    let out = c.runtime(&[
        "exec",
        &c.id,
        "mount",
        "-t",
        "tmpfs",
        "ctr",
        "/mnt/from-container",
    ]);
    out.assert_ok("mount inside the container");
    let seen = mounts_under(&src)
        .iter()
        .any(|m| m.ends_with("/from-container"));
    sh(&["-t", "tmpfs", "hst", &host_sub.to_string_lossy()]);
    let back = c.runtime(&[
        "exec",
        &c.id,
        "grep",
        "-c",
        " /mnt/from-host ",
        "/proc/self/mountinfo",
    ]);
    c.runtime(&["exec", &c.id, "umount", "/mnt/from-container"]);
    cleanup();
    assert!(
        seen,
        "the container's mount did not reach the host: {:?}",
        mounts_under(&src)
    );
    back.assert_ok("the host's mount is seen in the container");
    c.finish();
}

#[test]
fn rootfs_propagation_private_and_slave() {
    if !need_root() {
        return;
    }
    for (prop, check) in [
        ("private", "none"),
        ("rslave", "no-shared"),
        ("runbindable", "unbindable"),
    ] {
        let mut c = Container::new("rootprop");
        c.config["linux"]["rootfsPropagation"] = json!(prop);
        c.config["process"]["args"] = json!(["cat", "/proc/self/mountinfo"]);
        let out = c.run();
        out.assert_ok("run");
        let m = parse_mountinfo(&out.stdout);
        let root = find_mount(&m, "/");
        match check {
            "none" => assert!(root.optional.is_empty(), "{prop}: {root:?}"),
            "unbindable" => assert!(
                root.optional.iter().any(|o| o == "unbindable"),
                "{prop}: {root:?}"
            ),
            _ => assert!(
                !root.optional.iter().any(|o| o.starts_with("shared:")),
                "{prop}: {root:?}"
            ),
        }
        c.finish();
    }
}

#[test]
fn root_readonly() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("rootro");
    c.config["root"]["readonly"] = json!(true);
    c.sh("touch /x 2>/dev/null && echo writable || echo refused; touch /dev/shm/x && echo shm-ok; echo ---; cat /proc/self/mountinfo");
    let out = c.run();
    out.assert_ok("run");
    let (head, mi) = out.stdout.split_once("---\n").unwrap();
    assert_eq!(head, "refused\nshm-ok\n");
    assert!(find_mount(&parse_mountinfo(mi), "/")
        .opts
        .contains(&"ro".into()));
    assert!(!c.rootfs().join("x").exists());
    c.finish();
}

#[test]
fn masked_paths() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("masked");
    fs::write(c.rootfs().join("etc/secret"), "top secret\n").unwrap();
    fs::create_dir(c.rootfs().join("secretdir")).unwrap();
    fs::write(c.rootfs().join("secretdir/file"), "hidden\n").unwrap();
    c.config["linux"]["maskedPaths"] = json!([
        "/proc/timer_list",
        "/etc/secret",
        "/secretdir",
        "/does/not/exist"
    ]);
    c.sh(
        "echo timer_list=$(wc -c < /proc/timer_list); echo secret=$(cat /etc/secret); \
         echo dir=$(ls /secretdir | wc -l); touch /secretdir/new 2>/dev/null && echo dir-writable || echo dir-ro",
    );
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(
        out.stdout, "timer_list=0\nsecret=\ndir=0\ndir-ro\n",
        "{out:?}"
    );
    assert_eq!(
        fs::read_to_string(c.rootfs().join("etc/secret")).unwrap(),
        "top secret\n"
    );
    c.finish();
}

#[test]
fn readonly_paths() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("ropaths");
    fs::create_dir(c.rootfs().join("data")).unwrap();
    c.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/data", "/does/not/exist"]);
    c.sh(
        "touch /data/x 2>/dev/null && echo data-writable || echo data-ro; \
         touch /okdir 2>/dev/null && echo root-writable; echo ---; cat /proc/self/mountinfo",
    );
    let out = c.run();
    out.assert_ok("run");
    let (head, mi) = out.stdout.split_once("---\n").unwrap();
    assert_eq!(head, "data-ro\nroot-writable\n");
    let m = parse_mountinfo(mi);
    assert!(find_mount(&m, "/proc/sys").opts.contains(&"ro".into()));
    assert!(find_mount(&m, "/data").opts.contains(&"ro".into()));
    c.finish();
}

// ---------------------------------------------------------------- devices

#[test]
fn default_devices_and_symlinks() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("devices");
    c.sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo /dev/$l=$(readlink /dev/$l); done; \
         test -d /dev/pts && test -d /dev/shm && echo dirs-ok; \
         echo x > /dev/null && head -c 3 /dev/zero | wc -c",
    );
    let out = c.run();
    out.assert_ok("run");
    let want = "/dev/null character special file 1:3\n\
                /dev/zero character special file 1:5\n\
                /dev/full character special file 1:7\n\
                /dev/random character special file 1:8\n\
                /dev/urandom character special file 1:9\n\
                /dev/tty character special file 5:0\n\
                /dev/fd=/proc/self/fd\n\
                /dev/stdin=/proc/self/fd/0\n\
                /dev/stdout=/proc/self/fd/1\n\
                /dev/stderr=/proc/self/fd/2\n\
                /dev/ptmx=pts/ptmx\n\
                dirs-ok\n3\n";
    assert_eq!(out.stdout, want);
    c.finish();
}

#[test]
fn linux_devices_created() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("lindev");
    c.config["linux"]["devices"] = json!([
        {"path": "/dev/testnull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 1000},
        {"path": "/dev/sub/testzero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666, "uid": 0, "gid": 0},
    ]);
    c.sh("stat -c '%F %a %u %g %t:%T' /dev/testnull /dev/sub/testzero");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(
        out.stdout,
        "character special file 640 1000 1000 1:3\ncharacter special file 666 0 0 1:5\n"
    );
    c.finish();
}

// ---------------------------------------------------------------- terminal, fds, pid file

#[test]
fn terminal_with_console_socket() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("tty");
    c.config["process"]["terminal"] = json!(true);
    c.config["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    c.sh("tty; stty size; test -c /dev/console && echo console-ok; test -t 0 && test -t 1 && echo isatty; echo done");
    let sock_path = c.scratch().join("console.sock");
    let sock = ConsoleSocket::bind(&sock_path);
    let sp = sock_path.to_string_lossy().into_owned();
    let out = c.create_with(&["--console-socket", &sp]);
    out.assert_ok("create --console-socket");
    let master = sock.recv_master(SEC5);
    c.start().assert_ok("start");
    let text = read_pty(master, SEC5).replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "pty output: {text:?}");
    assert!(
        lines[0].starts_with("/dev/pts/") || lines[0] == "/dev/console",
        "tty: {text:?}"
    );
    assert_eq!(lines[1], "33 111", "{text:?}");
    assert_eq!(&lines[2..5], &["console-ok", "isatty", "done"], "{text:?}");
    c.wait_status("stopped", SEC5);
    c.delete(false).assert_ok("delete");
    c.finish();
}

#[test]
fn pid_file_matches_state() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("pidfile");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    let pid_file = c.scratch().join("pid");
    let pf = pid_file.to_string_lossy().into_owned();
    c.create_with(&["--pid-file", &pf]).assert_ok("create");
    let state = c.state();
    let pid = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid.trim(), state["pid"].as_i64().unwrap().to_string());
    c.finish();
}

#[test]
fn preserve_fds_and_no_host_fd_leak() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("fds");
    let extra = c.scratch().join("extra");
    fs::write(&extra, "extra-data\n").unwrap();
    let extra_file = fs::File::open(&extra).unwrap();
    let leak_dir = fs::File::open(c.scratch()).unwrap();
    let leak_file = fs::File::open(&extra).unwrap();
    c.sh(
        "cat <&3; i=0; while [ $i -lt 64 ]; do [ -e /proc/self/fd/$i ] && echo fd$i; i=$((i+1)); done; readlink /proc/self/cwd",
    );
    c.save();
    let mut cmd = c.cmd();
    cmd.args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id);
    pass_fd(&mut cmd, raw(&extra_file), 3);
    pass_fd(&mut cmd, raw(&leak_dir), 7);
    pass_fd(&mut cmd, raw(&leak_file), 9);
    let out = output_timeout(&mut cmd, TIMEOUT);
    out.assert_ok("run --preserve-fds 1");
    assert_eq!(
        out.stdout, "extra-data\nfd0\nfd1\nfd2\nfd3\n/\n",
        "only stdio and the preserved fd"
    );
    c.finish();
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn lifecycle_create_start_stop_delete() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("lifecycle");
    c.sh("touch /started; sleep 0.5");
    c.create().assert_ok("create");
    let st = c.state();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().expect("pid in created state");
    assert!(
        pid > 0 && pid_alive(pid),
        "init process {pid} exists while created"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !c.rootfs().join("started").exists(),
        "user process must not run before start"
    );
    c.start().assert_ok("start");
    assert!(
        wait_for_path(&c.rootfs().join("started"), SEC5),
        "user process ran after start"
    );
    assert_eq!(c.status().as_deref(), Some("running"));
    c.wait_status("stopped", SEC5);
    c.delete(false).assert_ok("delete of a stopped container");
    assert!(
        !c.runtime(&["state", &c.id]).ok(),
        "state after delete must fail"
    );
    c.assert_clean();
    c.finish();
}

#[test]
fn exited_init_is_stopped_even_if_unreaped() {
    // A caller that does not reap (not a subreaper, e.g. the runtime-tools
    // suite) may end up the parent of an exited init: a zombie has exited,
    // so `state` must say stopped and `delete` must work.
    if !need_root() {
        return;
    }
    let mut c = Container::new("zombie");
    c.reap_children = false;
    c.sh("exit 0");
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.wait_status("stopped", SEC5);
    c.delete(false).assert_ok("delete");
    c.reap_children = true;
    c.finish();
}

#[test]
fn start_twice_fails() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("start2");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.start().assert_fail("second start");
    assert_eq!(c.status().as_deref(), Some("running"));
    c.finish();
}

#[test]
fn run_detach() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("detach");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    let out = c.run_with(&["--detach"]);
    out.assert_ok("run --detach");
    assert_eq!(c.status().as_deref(), Some("running"));
    c.finish();
}

fn trap_script() -> &'static str {
    "trap 'echo usr1 >> /sig' USR1; trap 'echo term >> /sig; exit 0' TERM; touch /ready; \
     while true; do sleep 0.05; done"
}

#[test]
fn kill_by_name_and_number() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("kill");
    c.sh(trap_script());
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    assert!(wait_for_path(&c.rootfs().join("ready"), SEC5));
    let sig = c.rootfs().join("sig");
    let count = |n: usize| {
        let start = Instant::now();
        while start.elapsed() < SEC5 {
            if fs::read_to_string(&sig).unwrap_or_default().lines().count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("signal {n} not seen: {:?}", fs::read_to_string(&sig));
    };
    c.kill("USR1").assert_ok("kill USR1");
    count(1);
    c.kill("SIGUSR1").assert_ok("kill SIGUSR1");
    count(2);
    c.kill("10").assert_ok("kill 10");
    count(3);
    c.kill("15").assert_ok("kill 15");
    c.wait_status("stopped", SEC5);
    assert_eq!(
        fs::read_to_string(&sig).unwrap(),
        "usr1\nusr1\nusr1\nterm\n"
    );
    c.finish();

    for sig in ["KILL", "9", "SIGKILL"] {
        let mut c = Container::new("kill9");
        c.config["process"]["args"] = json!(["sleep", "30"]);
        c.create().assert_ok("create");
        c.start().assert_ok("start");
        c.kill(sig).assert_ok(sig);
        c.wait_status("stopped", SEC5);
        c.finish();
    }
}

#[test]
fn kill_bad_signal_fails() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("killbad");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.kill("NOSUCHSIG")
        .assert_fail("kill with an unknown signal name");
    c.kill("999")
        .assert_fail("kill with an out-of-range signal number");
    c.finish();
}

#[test]
fn kill_all_processes() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("killall");
    // No pid namespace: killing init alone would leave the sleeps running.
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    c.sh("sleep 100 & sleep 100 & touch /ready; wait");
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    assert!(wait_for_path(&c.rootfs().join("ready"), SEC5));
    let pid = c.state()["pid"].as_i64().unwrap();
    let children: Vec<i64> = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 2, "two sleeps");
    c.runtime(&["kill", "--all", &c.id, "KILL"])
        .assert_ok("kill --all");
    c.wait_status("stopped", SEC5);
    for p in children {
        assert!(wait_pid_gone(p, SEC5), "child {p} survived kill --all");
    }
    c.finish();
}

#[test]
fn state_json_fields() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("state");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.config["annotations"] = json!({"org.skiff.test": "yes"});
    c.create().assert_ok("create");
    let st = c.state();
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().is_some_and(|p| p > 0));
    assert_eq!(st["bundle"], c.bundle.to_string_lossy().as_ref());
    assert_eq!(st["annotations"]["org.skiff.test"], "yes", "{st}");
    c.start().assert_ok("start");
    assert_eq!(c.state()["status"], "running");
    c.kill("KILL").assert_ok("kill");
    c.wait_status("stopped", SEC5);
    let st = c.state();
    assert_eq!(st["status"], "stopped");
    c.finish();
    // state of an unknown container fails
    let c2 = Container::new("state-missing");
    c2.runtime(&["state", &c2.id])
        .assert_fail("state of a missing container");
    c2.finish();
}

#[test]
fn list_json_and_quiet() {
    if !need_root() {
        return;
    }
    let mut a = Container::new("list-a");
    a.config["process"]["args"] = json!(["sleep", "30"]);
    let mut b = Container::new("list-b");
    b.config["process"]["args"] = json!(["sleep", "30"]);
    b.root = a.root.clone();
    a.create().assert_ok("create a");
    b.create().assert_ok("create b");
    b.start().assert_ok("start b");
    let out = a.runtime(&["list", "-q"]);
    out.assert_ok("list -q");
    let mut ids: Vec<&str> = out.stdout.lines().collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let out = a.runtime(&["list", "--format", "json"]);
    out.assert_ok("list --format json");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    for e in arr {
        let (c, status) = if e["id"] == a.id.as_str() {
            (&a, "created")
        } else {
            (&b, "running")
        };
        assert_eq!(e["id"], c.id.as_str());
        assert_eq!(e["status"], status, "{e}");
        assert!(e["pid"].as_i64().is_some_and(|p| p > 0));
        assert_eq!(e["bundle"], c.bundle.to_string_lossy().as_ref());
    }
    let out = a.runtime(&["list"]);
    out.assert_ok("list");
    assert!(out.stdout.starts_with("ID"), "table header: {}", out.stdout);
    // b's state lives in a's temp dir: finish b first
    b.finish();
    a.finish();
}

#[test]
fn delete_running_needs_force() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("delrun");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.delete(false)
        .assert_fail("delete of a running container without --force");
    assert_eq!(c.status().as_deref(), Some("running"));
    let pid = c.state()["pid"].as_i64().unwrap();
    c.delete(true).assert_ok("delete --force");
    assert!(wait_pid_gone(pid, SEC5), "process killed by delete --force");
    c.finish();
}

#[test]
fn delete_created_needs_force() {
    if !need_root() {
        return;
    }
    if !is_skiff() {
        skip("runc deletes a created container without --force (runtime.md says it MUST fail)");
        return;
    }
    let mut c = Container::new("delcreated");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.delete(false)
        .assert_fail("delete of a created container without --force");
    assert_eq!(c.status().as_deref(), Some("created"));
    c.delete(true).assert_ok("delete --force");
    c.finish();
}

// ---------------------------------------------------------------- hooks

/// Config with all six hook kinds logging to `<scratch>/hooks/log`; the log
/// directory is bind-mounted at the same path inside the container so the
/// in-container hooks (createContainer, startContainer) write to it too.
fn with_all_hooks(c: &mut Container) -> std::path::PathBuf {
    let dir = c.scratch().join("hooks");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let log = dir.join("log");
    let d = dir.to_string_lossy().into_owned();
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": d, "type": "bind", "source": d, "options": ["bind"]}));
    let mut hooks = serde_json::Map::new();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        hooks.insert(kind.into(), json!([logging_hook(kind, &log)]));
    }
    c.config["hooks"] = Value::Object(hooks);
    log
}

#[test]
fn hooks_order_and_state_on_stdin() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("hooks");
    c.config["process"]["args"] = json!(["sleep", "0.3"]);
    c.config["annotations"] = json!({"hook.test": "1"});
    let log = with_all_hooks(&mut c);
    c.create().assert_ok("create");
    let names = |l: &[(String, Value)]| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let after_create = read_hook_log(&log);
    let mut n = names(&after_create);
    if is_runc() {
        // runc 1.1 runs poststart during create; the spec says after start
        n.retain(|h| h != "poststart");
    }
    assert_eq!(n.len(), 3, "hooks after create: {n:?}");
    assert!(
        n.contains(&"prestart".into()) && n.contains(&"createRuntime".into()),
        "{n:?}"
    );
    assert_eq!(n[2], "createContainer", "{n:?}");
    c.start().assert_ok("start");
    c.wait_status("stopped", SEC5);
    let after_start = read_hook_log(&log);
    if is_skiff() {
        assert_eq!(names(&after_start)[3..], ["startContainer", "poststart"]);
    } else {
        assert!(names(&after_start).contains(&"startContainer".into()));
    }
    c.delete(false).assert_ok("delete");
    let all = read_hook_log(&log);
    assert_eq!(names(&all).last().map(String::as_str), Some("poststop"));
    assert_eq!(all.len(), 6, "{:?}", names(&all));
    let pid = c_pid(&all);
    for (name, st) in &all {
        assert_eq!(st["id"], c.id.as_str(), "{name}: {st}");
        assert_eq!(
            st["bundle"],
            c.bundle.to_string_lossy().as_ref(),
            "{name}: {st}"
        );
        assert!(
            st["status"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: {st}"
        );
        assert_eq!(st["annotations"]["hook.test"], "1", "{name}: {st}");
        // runc passes the pid as seen in the container to the hooks it
        // runs there; the spec asks for the host's view
        let in_container = name == "createContainer" || name == "startContainer";
        if name != "poststop" && (is_skiff() || !in_container) {
            assert_eq!(st["pid"].as_i64(), Some(pid), "{name}: {st}");
        }
        if is_skiff() {
            let want: &[&str] = match name.as_str() {
                "prestart" | "createRuntime" | "createContainer" => &["creating", "created"],
                "startContainer" => &["created", "running"],
                "poststart" => &["running"],
                _ => &["stopped"],
            };
            assert!(
                want.contains(&st["status"].as_str().unwrap()),
                "{name}: status {}",
                st["status"]
            );
        }
    }
    c.finish();
}

#[test]
fn hooks_run_in_the_right_namespaces() {
    // createContainer and startContainer run in the container's namespaces
    // (its hostname, its mount namespace); the others in the runtime's
    if !need_root() {
        return;
    }
    let mut c = Container::new("hook-ns");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.config["hostname"] = json!("hook-ns-box");
    let dir = c.scratch().join("hooks");
    fs::create_dir(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": d, "type": "bind", "source": d, "options": ["bind"]}));
    let mut hooks = serde_json::Map::new();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
    ] {
        let script = format!(
            "echo {kind} $(readlink /proc/self/ns/uts) $(readlink /proc/self/ns/mnt) >> {d}/log"
        );
        hooks.insert(
            kind.into(),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
        );
    }
    c.config["hooks"] = Value::Object(hooks);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let pid = c.state()["pid"].as_i64().unwrap();
    let ctr_mnt = fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let ctr_uts = fs::read_link(format!("/proc/{pid}/ns/uts"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let log = fs::read_to_string(dir.join("log")).unwrap_or_default();
    for kind in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
    ] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("{kind} did not run: {log}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        let inside = kind == "createContainer" || kind == "startContainer";
        if inside {
            assert_eq!(
                f[1], ctr_uts,
                "{kind} runs in the container's uts ns: {line}"
            );
            assert_eq!(
                f[2], ctr_mnt,
                "{kind} runs in the container's mount ns: {line}"
            );
        } else {
            assert_eq!(
                f[1],
                host_ns("uts"),
                "{kind} runs in the runtime's uts ns: {line}"
            );
            assert_eq!(
                f[2],
                host_ns("mnt"),
                "{kind} runs in the runtime's mount ns: {line}"
            );
        }
    }
    c.finish();
}

fn c_pid(log: &[(String, Value)]) -> i64 {
    log.iter()
        .find(|(n, _)| n == "prestart" || n == "createRuntime")
        .and_then(|(_, st)| st["pid"].as_i64())
        .expect("a pid in the prestart/createRuntime state")
}

#[test]
fn hook_env_args_and_timeout() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("hook-timeout");
    let log = c.scratch().join("hooklog");
    c.config["hooks"] = json!({
        "createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$HOOKVAR $1\" > {}", log.display()), "sh", "arg1"],
             "env": ["HOOKVAR=hello"]},
            {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 20"], "timeout": 1}
        ]
    });
    let start = Instant::now();
    c.create()
        .assert_fail("create with a hook exceeding its timeout");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "hook timeout not enforced: {:?}",
        start.elapsed()
    );
    assert_eq!(fs::read_to_string(&log).unwrap_or_default(), "hello arg1\n");
    c.finish();
}

#[test]
fn failing_prestart_aborts_create() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("prestart-fail");
    c.config["process"]["args"] = json!(["touch", "/ran"]);
    c.config["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]});
    c.create()
        .assert_fail("create with a failing prestart hook");
    c.start().assert_fail("start after a failed create");
    assert!(!c.rootfs().join("ran").exists());
    c.finish();
}

#[test]
fn failing_poststart_and_poststop_only_warn() {
    if !need_root() {
        return;
    }
    if !is_skiff() {
        skip("runc aborts on failing poststart/poststop hooks (config.md says warn and continue)");
        return;
    }
    // Up to runtime-spec 1.2 a failing poststart hook is a warning.
    let mut c = Container::new("post-fail");
    c.config["ociVersion"] = json!("1.2.0");
    c.config["process"]["args"] = json!(["sleep", "0.3"]);
    let fail = json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 1"]}]);
    c.config["hooks"] = json!({"poststart": fail, "poststop": fail});
    c.create().assert_ok("create");
    c.start().assert_ok("start despite failing poststart");
    c.wait_status("stopped", SEC5);
    c.delete(false).assert_ok("delete despite failing poststop");
    c.finish();
}

/// runtime-spec 1.3 lifecycle step 9: a failing poststart hook is an
/// error: `start` fails, the container is stopped and destroyed (step 12)
/// and the poststop hooks run.
#[test]
fn failing_poststart_fails_start_and_destroys_the_container() {
    if !need_root() {
        return;
    }
    if !is_skiff() {
        skip("runc 1.1 predates runtime-spec 1.3's poststart lifecycle");
        return;
    }
    let mut c = Container::new("post-fail13");
    c.config["ociVersion"] = json!("1.3.0");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    let stopped = c.scratch().join("poststop-ran");
    c.config["hooks"] = json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}],
        "poststop": [{"path": "/bin/sh",
                      "args": ["sh", "-c", format!("touch {}", stopped.display())]}],
    });
    c.create().assert_ok("create");
    let pid = c.state()["pid"].as_i64().unwrap();
    let out = c.start();
    out.assert_fail("start with a failing poststart hook");
    assert!(out.stderr.contains("poststart"), "{out:?}");
    assert!(stopped.exists(), "poststop hooks ran");
    c.reap();
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .is_empty(),
        "the container's process is gone"
    );
    c.assert_clean();
    c.finish();
}

// ---------------------------------------------------------------- bad input

/// Create must fail, name `needle` in its error (skiff only) and leave
/// nothing behind.
fn expect_create_error(mut c: Container, needle: &str) {
    let out = c.create();
    out.assert_fail(&format!("create (expecting an error about {needle})"));
    if is_skiff() {
        assert!(
            out.stderr.contains(needle),
            "error should name {needle:?}: {}",
            out.stderr
        );
    }
    c.finish();
}

#[test]
fn bad_missing_config() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-noconfig");
    c.write_config = false;
    fs::remove_file(c.bundle.join("config.json")).unwrap();
    expect_create_error(c, "config.json");
}

#[test]
fn bad_invalid_json() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-json");
    c.write_config = false;
    fs::write(
        c.bundle.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    expect_create_error(c, "config.json");
}

#[test]
fn bad_unknown_namespace() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-ns");
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "bogusns"}));
    expect_create_error(c, "bogusns");
}

#[test]
fn bad_nonexistent_rootfs() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-rootfs");
    c.config["root"]["path"] = json!("no-such-rootfs");
    expect_create_error(c, "no-such-rootfs");
}

#[test]
fn bad_empty_args() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-args");
    c.config["process"]["args"] = json!([]);
    expect_create_error(c, "args");
}

#[test]
fn bad_oci_version() {
    if !need_root() {
        return;
    }
    if !is_skiff() {
        skip("runc does not check ociVersion");
        return;
    }
    let mut c = Container::new("bad-version");
    c.config["ociVersion"] = json!("9.9.9");
    expect_create_error(c, "ociVersion");
}

#[test]
fn bad_duplicate_id() {
    if !need_root() {
        return;
    }
    let mut a = Container::new("dup");
    a.config["process"]["args"] = json!(["sleep", "30"]);
    a.create().assert_ok("first create");
    let mut b = Container::new("dup");
    b.id = a.id.clone();
    b.root = a.root.clone();
    let out = b.create();
    out.assert_fail("second create with the same id");
    if is_skiff() {
        assert!(
            out.stderr.contains(&a.id),
            "error names the id: {}",
            out.stderr
        );
    }
    assert_eq!(
        a.status().as_deref(),
        Some("created"),
        "first container untouched"
    );
    // b shares a's id and root: drop it without deleting a's container
    assert!(mounts_under(&b.bundle).is_empty());
    b.disarm();
    a.finish();
}

// ---------------------------------------------------------------- CLI odds and ends

/// Output into a closed pipe ends the command quietly (killed by SIGPIPE,
/// as runc and the coreutils are): no panic message, no abort (134).
#[test]
fn closed_pipe_ends_commands_quietly() {
    if !need_root() {
        return;
    }
    let c = Container::new("epipe");
    for args in [
        &["features"][..],
        &["list"][..],
        &["--help"][..],
        &["spec", "--help"][..],
    ] {
        let mut cmd = c.cmd();
        cmd.args(args);
        cmd.stdout(std::process::Stdio::piped());
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        let sig = std::os::unix::process::ExitStatusExt::signal(&out.status);
        assert!(
            out.status.success() || sig == Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
    c.finish();
}

/// `--log-format json` without `--log` writes the error as a JSON line on
/// stderr (runc's logrus does), so an engine that asked for JSON can parse
/// it.
#[test]
fn log_format_json_without_log_file_is_json_on_stderr() {
    if !need_root() {
        return;
    }
    let c = Container::new("logjson");
    let mut cmd = c.cmd();
    cmd.args(["--log-format", "json", "state", "skiff-no-such-container"]);
    let out = output_timeout(&mut cmd, TIMEOUT);
    out.assert_fail("state of a missing container");
    let line = out
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(v["level"], "error", "{v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    c.finish();
}

/// `update --help` explains every resource flag.
#[test]
fn update_flags_have_help() {
    let out = output_timeout(Command::new(test_bin()).args(["update", "--help"]), TIMEOUT);
    out.assert_ok("update --help");
    if !is_skiff() {
        return;
    }
    // clap puts the help after the flag, or on the next line when flags
    // are long.
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if !(t.starts_with("--") || t.starts_with("-r,")) || t.starts_with("--help") {
            continue;
        }
        let inline = line.split_whitespace().count() > 2;
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
        let below = !next.is_empty() && !next.starts_with('-');
        assert!(
            inline || below,
            "flag without help: {line:?}\n{}",
            out.stdout
        );
    }
}

/// Fields this runtime does not implement are refused with the field's
/// name, never run without them.
#[test]
fn unsupported_fields_are_refused() {
    if !need_root() || !is_skiff() {
        return;
    }
    let cases = [
        (
            "intelRdt",
            json!({"closID": "x", "l3CacheSchema": "L3:0=f"}),
        ),
        ("netDevices", json!({"skiff-no-such0": {"name": "eth9"}})),
        ("memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "0"})),
    ];
    for (field, value) in cases {
        let mut c = Container::new("unsupported");
        c.config["linux"][field] = value;
        let out = c.create();
        out.assert_fail(field);
        assert!(out.stderr.contains(&format!("linux.{field}")), "{out:?}");
        c.assert_clean();
        c.finish();
    }
}

#[test]
fn features_json() {
    if !need_root() {
        return;
    }
    let out = output_timeout(Command::new(test_bin()).arg("features"), TIMEOUT);
    out.assert_ok("features");
    let f: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        f["ociVersionMin"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.0")),
        "{f}"
    );
    assert!(f["ociVersionMax"].as_str().is_some(), "{f}");
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "{h} in features.hooks");
    }
    let opts: Vec<&str> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for o in [
        "bind", "rbind", "ro", "nosuid", "nodev", "noexec", "rro", "rprivate", "rshared",
    ] {
        assert!(opts.contains(&o), "{o} in features.mountOptions");
    }
    let linux = &f["linux"];
    let ns: Vec<&str> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for n in ["pid", "network", "mount", "ipc", "uts", "user", "cgroup"] {
        assert!(ns.contains(&n), "{n} in features.linux.namespaces");
    }
    assert!(linux["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "CAP_SYS_ADMIN"));
    assert!(linux["cgroup"].is_object());
    assert!(linux["seccomp"].is_object());
    assert!(linux["apparmor"].is_object());
    assert!(linux["selinux"].is_object());
    if is_skiff() {
        assert!(
            !out.stdout.contains("Some("),
            "Debug formatting: {}",
            out.stdout
        );
        let layout = f["annotations"]["run.skiff.cgroup.layout"]
            .as_str()
            .unwrap();
        assert!(["v1", "v2", "hybrid", "unknown"].contains(&layout), "{f}");
        assert!(linux.get("net_devices").is_none(), "{f}");
        assert_eq!(linux["netDevices"]["enabled"], json!(false), "{f}");
        assert!(ns.contains(&"time"), "time in features.linux.namespaces");
        assert!(linux["intelRdt"].is_object(), "features.linux.intelRdt");
        assert!(
            f["ociVersionMax"].as_str().unwrap().starts_with("1.3"),
            "{f}"
        );
    }
}

#[test]
fn version_names_spec() {
    let out = output_timeout(Command::new(test_bin()).arg("--version"), TIMEOUT);
    out.assert_ok("--version");
    assert!(out.stdout.contains("spec"), "{}", out.stdout);
}

#[test]
fn log_format_json_lines() {
    if !need_root() {
        return;
    }
    let c = Container::new("logjson");
    let log = c.scratch().join("runtime.log");
    let out = output_timeout(
        c.cmd().arg("--log").arg(&log).args([
            "--log-format",
            "json",
            "state",
            "no-such-container-xyz",
        ]),
        TIMEOUT,
    );
    out.assert_fail("state of a missing container");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the error is logged");
    for l in lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
        assert!(
            v["level"].is_string() && v["msg"].is_string() && v["time"].is_string(),
            "{l}"
        );
    }
    c.finish();
}

#[test]
fn spec_writes_default_config() {
    if !need_root() {
        return;
    }
    let dir = temp_dir("spec");
    let out = output_timeout(
        Command::new(test_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path()),
        TIMEOUT,
    );
    out.assert_ok("spec --bundle");
    let v: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(v["root"]["path"], "rootfs");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for n in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&n), "{n} in spec's namespaces");
    }
    // a second spec refuses to overwrite
    let again = output_timeout(
        Command::new(test_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path()),
        TIMEOUT,
    );
    again.assert_fail("spec over an existing config.json");
}

// ---------------------------------------------------------------- podman

#[test]
fn podman_runs_with_this_runtime() {
    if !need_root() {
        return;
    }
    if Command::new("podman")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        skip("podman not installed");
        return;
    }
    let c = Container::new("podman");
    let store = c.scratch().join("storage");
    let run = c.scratch().join("run");
    let tar = c.scratch().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(c.rootfs())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root").arg(&store).arg("--runroot").arg(&run);
        cmd.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
        cmd.arg("--runtime").arg(test_bin());
        cmd.args(args);
        output_timeout(&mut cmd, Duration::from_secs(120))
    };
    let tag = format!("localhost/skiff-test-busybox:{}", std::process::id());
    podman(&["import", &tar.to_string_lossy(), &tag]).assert_ok("podman import");
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &tag,
        "sh",
        "-c",
        "echo hello from podman; id -u",
    ]);
    let cleanup = || {
        let _ = podman(&["rm", "-af"]);
        let _ = podman(&["rmi", "-af"]);
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&store)
            .status();
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&run)
            .status();
    };
    if !out.ok() {
        cleanup();
    }
    out.assert_ok("podman run");
    assert_eq!(out.stdout, "hello from podman\n0\n");
    cleanup();
    c.finish();
}

// ---------------------------------------------------------------- newer process fields

#[test]
fn personality_linux32() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc 1.1 ignores process personality");
        return;
    }
    let mut c = Container::new("personality");
    c.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    c.config["process"]["args"] = json!(["uname", "-m"]);
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout.trim(), "i686");
    c.finish();
}

#[test]
fn io_priority() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc 1.1 has no process.ioPriority");
        return;
    }
    let mut c = Container::new("ioprio");
    c.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    c.sh("ionice -p $$");
    let out = c.run();
    out.assert_ok("run");
    assert!(
        out.stdout.contains("best-effort") && out.stdout.contains('6'),
        "{}",
        out.stdout
    );
    c.finish();
}

#[test]
fn scheduler_policy_and_nice() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc 1.1 has no process.scheduler");
        return;
    }
    let mut c = Container::new("sched");
    c.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    c.config["process"]["args"] = json!(["cat", "/proc/self/stat"]);
    let out = c.run();
    out.assert_ok("run");
    // fields after the ")" of comm: state is field 3; nice is 19, policy 41
    let rest: Vec<&str> = out
        .stdout
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(rest[19 - 3], "7", "nice");
    assert_eq!(rest[41 - 3], "3", "policy SCHED_BATCH");
    c.finish();
}

#[test]
fn exec_cpu_affinity() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc 1.1 has no process.execCPUAffinity");
        return;
    }
    let mut c = Container::new("affinity");
    c.config["process"]["execCPUAffinity"] = json!({"initial": "0", "final": "0"});
    c.sh("grep Cpus_allowed_list /proc/self/status");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(
        out.stdout.split_whitespace().nth(1),
        Some("0"),
        "{}",
        out.stdout
    );
    c.finish();
}

// ---------------------------------------------------------------- more CLI

#[test]
fn no_pivot_runs() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("nopivot");
    c.sh("cat /etc/hostname; ls /");
    let out = c.run_with(&["--no-pivot"]);
    out.assert_ok("run --no-pivot");
    assert!(out.stdout.starts_with("template\n"), "{}", out.stdout);
    assert!(out.stdout.contains("bin\n"));
    c.finish();
}

#[test]
fn exec_joins_the_container() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("exec");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.config["hostname"] = json!("exec-box");
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let pid = c.state()["pid"].as_i64().unwrap();
    let out = c.runtime(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "hostname; for n in net mnt pid; do readlink /proc/self/ns/$n; done; exit 4",
    ]);
    assert_eq!(
        out.code,
        Some(4),
        "exec returns the process's exit code: {out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "exec-box");
    for (i, k) in ["net", "mnt", "pid"].iter().enumerate() {
        let init = fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap();
        assert_eq!(
            lines[i + 1],
            init.to_string_lossy(),
            "{k} namespace of exec"
        );
    }
    // exec with an explicit process.json-style user and env via flags
    let out = c.runtime(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "X=y",
        &c.id,
        "sh",
        "-c",
        "id -u; echo $X",
    ]);
    out.assert_ok("exec --user --env");
    assert_eq!(out.stdout, "1000\ny\n");
    c.finish();
}

/// `exec --user UID` keeps the container process's gid (runc's rule);
/// a user that is not numeric is refused naming the flag.
#[test]
fn exec_user_without_gid_keeps_the_process_gid() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("exec-gid");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.config["process"]["user"] = json!({"uid": 0, "gid": 5});
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let out = c.runtime(&["exec", "--user", "1000", &c.id, "sh", "-c", "id -u; id -g"]);
    out.assert_ok("exec --user 1000");
    assert_eq!(out.stdout, "1000\n5\n", "{out:?}");
    if is_skiff() {
        let out = c.runtime(&["exec", "--user", "nobody", &c.id, "true"]);
        out.assert_fail("exec --user nobody");
        assert!(out.stderr.contains("--user"), "{out:?}");
    }
    c.finish();
}

/// `exec` into a paused container fails at once with a clear error (with
/// or without `--ignore-paused`) and leaves the container paused, instead
/// of hanging.
#[test]
fn exec_into_a_paused_container_is_refused() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("exec-paused");
    c.config["process"]["args"] = json!(["sleep", "60"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.runtime(&["pause", &c.id]).assert_ok("pause");
    let out = c.runtime(&["exec", &c.id, "true"]);
    out.assert_fail("exec into a paused container");
    if is_skiff() {
        assert!(out.stderr.contains("paused"), "{out:?}");
        let out = c.runtime(&["exec", "--ignore-paused", &c.id, "true"]);
        out.assert_fail("exec --ignore-paused into a paused container");
        assert!(out.stderr.contains("--ignore-paused"), "{out:?}");
    }
    assert_eq!(c.status().as_deref(), Some("paused"));
    c.runtime(&["resume", &c.id]).assert_ok("resume");
    c.finish();
}

#[test]
fn pause_resume_and_ps() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("pause");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let pid = c.state()["pid"].as_i64().unwrap();
    let out = c.runtime(&["ps", "--format", "json", &c.id]);
    out.assert_ok("ps --format json");
    let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    c.runtime(&["pause", &c.id]).assert_ok("pause");
    assert_eq!(c.status().as_deref(), Some("paused"));
    c.runtime(&["resume", &c.id]).assert_ok("resume");
    assert_eq!(c.status().as_deref(), Some("running"));
    c.finish();
}

/// Host path of the container's cgroup for v1 `controller` (None on a
/// host without that v1 hierarchy).
fn v1_cgroup_dir(pid: i64, controller: &str) -> Option<std::path::PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let line = text.lines().find(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|x| x == controller))
    })?;
    let path = line.splitn(3, ':').nth(2)?;
    let dir = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'));
    dir.exists().then_some(dir)
}

#[test]
fn update_and_events_stats() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("update");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let pid = c.state()["pid"].as_i64().unwrap();
    c.runtime(&["update", "--pids-limit", "77", &c.id])
        .assert_ok("update --pids-limit");
    match v1_cgroup_dir(pid, "pids") {
        Some(dir) => {
            assert_eq!(
                fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
                "77"
            );
        }
        None => skip("no v1 pids hierarchy: pids.max not checked"),
    }
    let out = c.runtime(&["events", "--stats", &c.id]);
    out.assert_ok("events --stats");
    let v: Value = serde_json::from_str(out.stdout.lines().next().unwrap_or("")).unwrap();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str(), "{v}");
    assert!(v["data"].is_object(), "{v}");
    c.finish();
}

#[test]
fn listen_fds_are_passed() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("listenfds");
    let extra = c.scratch().join("sock-standin");
    fs::write(&extra, "listen\n").unwrap();
    let f = fs::File::open(&extra).unwrap();
    c.sh("echo $LISTEN_FDS; cat <&3; [ -e /proc/self/fd/4 ] && echo fd4-leaked; true");
    c.save();
    // LISTEN_PID must name the runtime process itself (systemd's
    // convention): set it from a shell that then execs the runtime
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"", "sh"]);
    cmd.arg(&c.bin).arg("--root").arg(&c.root);
    cmd.args(["run", "--bundle"]).arg(&c.bundle).arg(&c.id);
    cmd.stdin(std::process::Stdio::null());
    pass_fd(&mut cmd, raw(&f), 3);
    let out = output_timeout(&mut cmd, TIMEOUT);
    out.assert_ok("run with LISTEN_FDS=1");
    assert_eq!(out.stdout, "1\nlisten\n");
    c.finish();
}

#[test]
fn concurrent_creates_of_one_id() {
    if !need_root() {
        return;
    }
    // four creates race for one id in one root: exactly one wins, and the
    // state stays readable throughout
    let mut base = Container::new("race");
    base.config["process"]["args"] = json!(["sleep", "30"]);
    base.save();
    let id = base.id.clone();
    let root = base.root.clone();
    let mut handles = Vec::new();
    for i in 0..4 {
        let mut c = Container::new(&format!("race{i}"));
        c.id = id.clone();
        c.root = root.clone();
        c.config = base.config.clone();
        handles.push(std::thread::spawn(move || {
            let out = c.create();
            (out.ok(), c)
        }));
    }
    let results: Vec<(bool, Container)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(wins, 1, "exactly one create of {id} succeeds");
    let st = base.state();
    assert_eq!(st["status"], "created");
    // delete through the winner's handle (its bundle is the one recorded)
    let mut winner = None;
    for (ok, c) in results {
        if ok {
            winner = Some(c);
        } else {
            c.disarm();
        }
    }
    let winner = winner.unwrap();
    winner.delete(true).assert_ok("delete --force");
    winner.disarm();
    base.finish();
}

// ---------------------------------------------------------------- more edges

#[test]
fn default_spec_mounts_and_umask() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("specmounts");
    c.sh("umask; echo ---; cat /proc/self/mountinfo");
    let out = c.run();
    out.assert_ok("run");
    let (head, mi) = out.stdout.split_once("---\n").unwrap();
    assert_eq!(head, "0022\n", "default umask");
    let m = parse_mountinfo(mi);
    assert_eq!(find_mount(&m, "/proc").fstype, "proc");
    let dev = find_mount(&m, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.super_opts.contains(&"mode=755".into()), "{dev:?}");
    assert!(dev.opts.contains(&"nosuid".into()), "{dev:?}");
    let pts = find_mount(&m, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(pts.super_opts.contains(&"ptmxmode=666".into()), "{pts:?}");
    let shm = find_mount(&m, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(
            shm.opts.contains(&o.to_string()),
            "{o} on /dev/shm: {shm:?}"
        );
    }
    assert_eq!(find_mount(&m, "/dev/mqueue").fstype, "mqueue");
    let sys = find_mount(&m, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    assert!(sys.opts.contains(&"ro".into()), "{sys:?}");
    assert!(
        m.iter()
            .any(|x| x.mount_point.starts_with("/sys/fs/cgroup")),
        "a cgroup mount under /sys/fs/cgroup"
    );
    for x in m
        .iter()
        .filter(|x| x.mount_point.starts_with("/sys/fs/cgroup") && x.fstype.starts_with("cgroup"))
    {
        assert!(
            x.opts.contains(&"ro".into()),
            "cgroup mounts are read-only: {x:?}"
        );
    }
    c.finish();
}

#[test]
fn file_bind_and_symlinks_inside_rootfs() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("filebind");
    let src = c.scratch().join("file");
    fs::write(&src, "file-content\n").unwrap();
    // /var/run -> /run inside the rootfs: a mount below it follows the link
    // within the rootfs
    fs::create_dir_all(c.rootfs().join("var")).unwrap();
    std::os::unix::fs::symlink("/run", c.rootfs().join("var/run")).unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/new/dir/file", "type": "bind", "source": s, "options": ["bind", "ro"]}),
        json!({"destination": "/var/run/lock", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
    ]);
    c.sh("cat /new/dir/file; test -f /new/dir/file && echo is-file; grep -c ' /run/lock ' /proc/self/mountinfo");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout, "file-content\nis-file\n1\n");
    c.finish();
}

#[test]
fn stopped_container_refuses_start_and_kill() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("stopped");
    c.sh("exit 0");
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    c.wait_status("stopped", SEC5);
    c.start().assert_fail("start of a stopped container");
    c.kill("KILL").assert_fail("kill of a stopped container");
    assert_eq!(c.status().as_deref(), Some("stopped"));
    c.delete(false).assert_ok("delete");
    c.runtime(&["delete", &c.id])
        .assert_fail("delete of a missing container");
    c.finish();
}

#[test]
fn fifo_and_block_devices() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("devtypes");
    c.config["linux"]["devices"] = json!([
        {"path": "/dev/testfifo", "type": "p", "fileMode": 0o600},
        {"path": "/dev/testblk", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600},
    ]);
    c.sh("stat -c '%F %a %t:%T' /dev/testfifo /dev/testblk");
    let out = c.run();
    out.assert_ok("run");
    assert_eq!(out.stdout, "fifo 600 0:0\nblock special file 600 7:c8\n");
    c.finish();
}

#[test]
fn cgroups_path_and_pids_limit() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("cgpath");
    let rel = format!("skiff-itest/{}", c.id);
    c.config["linux"]["cgroupsPath"] = json!(format!("/{rel}"));
    c.config["linux"]["resources"]["pids"] = json!({"limit": 42});
    c.extra_cgroups.push(rel.clone());
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    let pid = c.state()["pid"].as_i64().unwrap();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let pids_line = text.lines().find(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|x| x == "pids"))
    });
    match pids_line {
        Some(l) => {
            assert!(l.ends_with(&format!("/{rel}")), "pids cgroup {l}");
            let dir = v1_cgroup_dir(pid, "pids").unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
                "42"
            );
        }
        None => {
            let l = text.lines().find(|l| l.starts_with("0::")).unwrap();
            assert!(l.ends_with(&format!("/{rel}")), "cgroup2 path {l}");
        }
    }
    c.finish();
    // the parent the runtime created may stay (runc keeps it); the
    // container's own directory must be gone (checked by finish)
    for ctrl in [
        "pids", "memory", "cpu", "unified", "systemd", "freezer", "devices",
    ] {
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctrl).join("skiff-itest"));
    }
}

#[test]
fn run_forwards_signals_and_reports_signal_exit() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("sigfwd");
    c.sh("trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done");
    c.save();
    let mut child = c
        .cmd()
        .args(["run", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // read the container's output in a thread: if the runtime dies without
    // forwarding, the container keeps the pipe open and a read would hang
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let b2 = buf.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut chunk = [0u8; 256];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let wait_for = |what: &str| {
        let start = Instant::now();
        while !buf.lock().unwrap().contains(what) {
            assert!(
                start.elapsed() < SEC5,
                "no {what:?} from the container: {:?}",
                buf.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for("ready\n");
    // SAFETY: sending SIGTERM to the runtime process we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < SEC5, "run did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(7),
        "run must forward SIGTERM (sent after the container printed ready) and exit with the container's status; got {status:?}"
    );
    wait_for("got-term\n");
    c.finish();

    // killed by a signal: `run` exits 128+signal
    let mut c = Container::new("sigexit");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.save();
    let mut child = c
        .cmd()
        .args(["run", "--bundle"])
        .arg(&c.bundle)
        .arg(&c.id)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.wait_status("running", SEC5);
    c.kill("KILL").assert_ok("kill KILL");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < SEC5,
            "run did not exit after the container was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "run's exit status for SIGKILL"
    );
    c.finish();
}

#[test]
fn idmapped_bind_mount() {
    if !need_root() {
        return;
    }
    if is_runc() {
        skip("runc 1.1 has no idmap mounts");
        return;
    }
    let mut c = Container::new("idmap");
    c.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    c.config["linux"]["uidMappings"] = map.clone();
    c.config["linux"]["gidMappings"] = map.clone();
    let src = c.scratch().join("idsrc");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap(); // owned by host root
                                            // container root (host 200000) cannot create mount points in a rootfs
                                            // owned by host root (runc neither): make them up front
    fs::create_dir_all(c.rootfs().join("mnt/plain")).unwrap();
    fs::create_dir_all(c.rootfs().join("mnt/idm")).unwrap();
    let s = src.to_string_lossy().into_owned();
    c.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt/plain", "type": "bind", "source": s, "options": ["bind"]}),
        json!({"destination": "/mnt/idm", "type": "bind", "source": s, "options": ["bind", "idmap"],
               "uidMappings": map, "gidMappings": map}),
    ]);
    c.sh("stat -c %u /mnt/plain/f /mnt/idm/f; touch /mnt/idm/new && echo wrote");
    let out = c.run();
    out.assert_ok("run");
    // through the plain bind host root is unmapped (nobody); through the
    // idmapped mount it is the container's root, and so are new files
    assert_eq!(out.stdout, "65534\n0\nwrote\n");
    let md = fs::metadata(src.join("new")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (0, 0),
        "written as host root through the idmap"
    );
    c.finish();
}

#[test]
fn exec_options() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("execopts");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    // --cwd and a process.json
    let out = c.runtime(&["exec", "--cwd", "/tmp", &c.id, "pwd"]);
    out.assert_ok("exec --cwd");
    assert_eq!(out.stdout, "/tmp\n");
    let pj = c.scratch().join("process.json");
    let mut p = c.config["process"].clone();
    p["args"] = json!(["sh", "-c", "echo from-process-json $PJ; id -u"]);
    p["env"] = json!(["PATH=/bin:/usr/bin", "PJ=yes"]);
    p["user"] = json!({"uid": 1000, "gid": 1000});
    fs::write(&pj, serde_json::to_vec(&p).unwrap()).unwrap();
    let out = c.runtime(&["exec", "--process", &pj.to_string_lossy(), &c.id]);
    out.assert_ok("exec --process");
    assert_eq!(out.stdout, "from-process-json yes\n1000\n");
    // --detach with --pid-file
    let pf = c.scratch().join("exec.pid");
    let mark = c.rootfs().join("exec-ran");
    let out = c.runtime(&[
        "exec",
        "--detach",
        "--pid-file",
        &pf.to_string_lossy(),
        &c.id,
        "sh",
        "-c",
        "touch /exec-ran; sleep 5",
    ]);
    out.assert_ok("exec --detach --pid-file");
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert!(pid > 0);
    assert!(wait_for_path(&mark, SEC5), "detached exec ran");
    // exec into a stopped container fails
    c.kill("KILL").assert_ok("kill");
    c.wait_status("stopped", SEC5);
    c.runtime(&["exec", &c.id, "true"])
        .assert_fail("exec into a stopped container");
    c.finish();
}

#[test]
fn kill_a_created_container() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("killcreated");
    c.config["process"]["args"] = json!(["touch", "/ran"]);
    c.create().assert_ok("create");
    c.kill("KILL").assert_ok("kill of a created container");
    c.wait_status("stopped", SEC5);
    assert!(
        !c.rootfs().join("ran").exists(),
        "the user process never ran"
    );
    c.delete(false).assert_ok("delete");
    c.finish();
}

#[test]
fn parallel_runs_in_one_root() {
    if !need_root() {
        return;
    }
    let first = Container::new("par");
    let root = first.root.clone();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut c = Container::new(&format!("par{i}"));
                c.root = root;
                c.sh(&format!("echo {i}"));
                let out = c.run();
                (i, out, c)
            })
        })
        .collect();
    for h in handles {
        let (i, out, c) = h.join().unwrap();
        out.assert_ok(&format!("parallel run {i}"));
        assert_eq!(out.stdout, format!("{i}\n"));
        c.finish();
    }
    let left: Vec<_> = fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("skt-")),
        "containers left in the shared root: {left:?}"
    );
    first.finish();
}

#[test]
fn global_flags_rootless_systemd_and_empty_list() {
    if !need_root() {
        return;
    }
    // --rootless=false is accepted
    let mut c = Container::new("globals");
    // (`--rootless=false`: skiff takes the value only with `=`, runc both ways)
    c.global_args = vec!["--rootless=false".into()];
    c.sh("echo ok");
    let out = c.run();
    out.assert_ok("--rootless=false run");
    assert_eq!(out.stdout, "ok\n");
    c.global_args.clear();
    // --systemd-cgroup: works, or fails with an error about systemd
    let mut s = Container::new("systemd");
    s.global_args = vec!["--systemd-cgroup".into()];
    s.config["linux"]["cgroupsPath"] = json!(format!("system.slice:skiff:{}", s.id));
    s.sh("true");
    let out = s.run();
    if !out.ok() && is_skiff() {
        assert!(
            out.stderr.to_lowercase().contains("systemd"),
            "unclear --systemd-cgroup error: {}",
            out.stderr
        );
    }
    s.global_args.clear();
    s.finish();
    // list on a root that does not exist yet: empty, not an error
    let missing = c.scratch().join("no-such-root");
    let out = output_timeout(
        Command::new(&c.bin)
            .arg("--root")
            .arg(&missing)
            .args(["list", "-q"]),
        TIMEOUT,
    );
    out.assert_ok("list -q on a missing root");
    assert_eq!(out.stdout, "");
    c.finish();
}

#[test]
fn bad_missing_executable() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-exe");
    c.config["process"]["args"] = json!(["/no/such/binary"]);
    let out = c.create();
    if out.ok() {
        // a runtime may only find out at start; then start must fail
        c.start().assert_fail("start of a missing executable");
    } else if is_skiff() {
        assert!(out.stderr.contains("/no/such/binary"), "{}", out.stderr);
    }
    c.finish();
}

#[test]
fn bad_relative_cwd() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("bad-cwd");
    c.config["process"]["cwd"] = json!("relative/dir");
    expect_create_error(c, "cwd");
}

#[test]
fn bad_container_ids() {
    if !need_root() {
        return;
    }
    for id in ["../escape", "a/b", "", ".."] {
        let mut c = Container::new("bad-id");
        c.id = id.to_string();
        let out = c.create();
        out.assert_fail(&format!("create with id {id:?}"));
        let parent = c.root.parent().unwrap().to_path_buf();
        assert!(
            !parent.join("escape").exists(),
            "state written outside --root for {id:?}"
        );
        c.disarm();
    }
}

#[test]
fn root_path_absolute() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("absroot");
    c.config["root"]["path"] = json!(c.rootfs().to_string_lossy());
    c.sh("cat /etc/hostname");
    let out = c.run();
    out.assert_ok("run with an absolute root.path");
    assert_eq!(out.stdout, "template\n");
    c.finish();
}

// ---------------------------------------------------------------- static build

/// `scripts/build.sh` (what the demo, the benchmarks and users run) links
/// the runtime statically, libseccomp included, without a dynamic loader:
/// the result runs a container whose seccomp profile is enforced, and
/// create/start/state/delete work through it.
#[test]
fn static_release_build_runs_a_container_with_seccomp() {
    if !need_root() {
        return;
    }
    if !is_skiff() {
        skip("the static build is skiff's own");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dest = temp_dir("static-build");
    let out = Command::new("bash")
        .arg(repo.join("scripts/build.sh"))
        .arg("--runtime-only")
        .arg(dest.path())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("bash scripts/build.sh");
    assert!(
        out.status.success(),
        "scripts/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = dest.path().join("skiff");
    let elf = fs::read(&bin).unwrap();
    let static_build = !String::from_utf8_lossy(&out.stderr).contains("skiff stays dynamic");
    if static_build {
        // No PT_INTERP program header: no dynamic loader, no shared library.
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        let interp = (0..phnum).any(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
        });
        assert!(!interp, "{} asks for a dynamic loader", bin.display());
    } else {
        skip("no static libseccomp.a here: scripts/build.sh built a dynamic skiff");
    }
    let mut c = Container::new("static");
    c.bin = bin;
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    c.sh("mkdir /tmp/x 2>&1; echo rc=$?; hostname");
    c.config["hostname"] = json!("static-box");
    c.create().assert_ok("create");
    assert_eq!(c.status().as_deref(), Some("created"));
    c.start().assert_ok("start");
    c.wait_status("stopped", SEC5);
    let out = c.container_stdout();
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("static-box"), "{out}");
    c.finish();

    // Without a cgroup namespace the init bind-mounts its cgroup
    // directories early, while the runtime still moves it into them: they
    // must exist by then, every time. Checked at release speed, where a
    // race here once failed about one run in 20.
    let mut c = Container::new("static-cg");
    c.bin = dest.path().join("skiff");
    without_ns(&mut c, "cgroup");
    assert!(
        c.config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "cgroup"),
        "the default mounts include a cgroup mount"
    );
    c.sh("test -d /sys/fs/cgroup && echo ok");
    for i in 0..60 {
        let out = c.run();
        out.assert_ok(&format!("run {i}"));
        assert_eq!(out.stdout, "ok\n", "run {i}");
    }
    c.finish();
}

//! AppArmor and SELinux through the runtime CLI: `process.apparmorProfile`,
//! `process.selinuxLabel` and `linux.mountLabel`, and `exec --apparmor` /
//! `--process-label`.
//!
//! On a host without the LSM the expected behaviour is runc 1.1.5's (see
//! docs/security.md): empty values run; a profile or process label is
//! refused; a mount label is refused exactly when a mount would carry
//! `context=` (the kernel refuses it). Refusals name the field and leave
//! nothing behind. Tests that need an enabled LSM print `SKIP:` here.
//! `SKIFF_TEST_BIN=/usr/sbin/runc` runs the same expectations against runc
//! (only the message texts are skiff's own).

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.len() > 1 && b[0] == b'Y')
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// A refused `create`: it failed, stderr names `needle` (skiff's message;
/// other runtimes word it their own way), and nothing is left behind
/// without any delete.
fn assert_refused(c: &mut Container, needle: &str) {
    let out = c.create();
    out.assert_fail("create");
    if is_skiff() {
        assert!(
            out.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            out.stderr
        );
    }
    c.assert_clean();
}

#[test]
fn empty_profile_and_labels_run() {
    if !need_root() {
        return;
    }
    let mut c = Container::new("lsm-empty");
    c.config["process"]["apparmorProfile"] = json!("");
    c.config["process"]["selinuxLabel"] = json!("");
    c.config["linux"]["mountLabel"] = json!("");
    c.sh("echo ran");
    let out = c.run();
    out.assert_ok("run with empty LSM fields");
    assert_eq!(out.stdout.trim(), "ran");
    c.finish();
}

#[test]
fn apparmor_profile_refused_without_apparmor() {
    if !need_root() {
        return;
    }
    if apparmor_enabled() {
        skip("AppArmor is enabled on this host (the refusal is for hosts without it)");
        return;
    }
    let mut c = Container::new("lsm-aa");
    c.config["process"]["apparmorProfile"] = json!("skiff-test-profile");
    assert_refused(
        &mut c,
        "config.json: process.apparmorProfile \"skiff-test-profile\": AppArmor is not enabled on this host",
    );
    c.finish();
}

/// Without AppArmor, `unconfined` is what the process is anyway: it runs
/// (skiff's rule; runc 1.1.5 writes `exec unconfined` regardless and
/// fails with EINVAL).
#[test]
fn unconfined_profile_runs_without_apparmor() {
    if !need_root() {
        return;
    }
    if apparmor_enabled() {
        skip("AppArmor is enabled on this host (this is about hosts without it)");
        return;
    }
    if is_runc() {
        skip("runc 1.1.5 fails here (it writes `exec unconfined` without checking)");
        return;
    }
    let mut c = Container::new("lsm-aa-unconf");
    c.config["process"]["apparmorProfile"] = json!("unconfined");
    c.sh("echo ran");
    let out = c.run();
    out.assert_ok("run with apparmorProfile unconfined and no AppArmor");
    assert!(out.stdout.contains("ran"), "{out:?}");
    c.finish();
}

#[test]
fn selinux_label_refused_without_selinux() {
    if !need_root() {
        return;
    }
    if selinux_enabled() {
        skip("SELinux is enabled on this host (the refusal is for hosts without it)");
        return;
    }
    let mut c = Container::new("lsm-se");
    c.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    assert_refused(
        &mut c,
        "config.json: process.selinuxLabel \"system_u:system_r:container_t:s0:c1,c2\": SELinux is \
         not enabled on this host",
    );
    c.finish();
}

/// runc's default mounts include a tmpfs on /dev: runc passes
/// `context="..."` to it and the kernel says EINVAL.
#[test]
fn mount_label_refused_without_selinux_when_a_mount_carries_it() {
    if !need_root() {
        return;
    }
    if selinux_enabled() {
        skip("SELinux is enabled on this host (the refusal is for hosts without it)");
        return;
    }
    let mut c = Container::new("lsm-ml");
    c.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    assert_refused(
        &mut c,
        "config.json: linux.mountLabel \"system_u:object_r:container_file_t:s0\": SELinux is not \
         enabled on this host (mounts[",
    );
    c.finish();
}

/// Mounts that take no label (proc, sysfs, mqueue, binds) and only masked
/// files: runc 1.1.5 runs this, the label reaching no kernel call.
#[test]
fn mount_label_without_labelled_mounts_runs_like_runc() {
    if !need_root() {
        return;
    }
    if selinux_enabled() {
        skip("SELinux is enabled on this host (this checks the no-SELinux behaviour)");
        return;
    }
    let mut c = Container::new("lsm-ml-none");
    c.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    c.config["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]},
    ]);
    c.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    c.sh("echo ran");
    let out = c.run();
    out.assert_ok("run with a mount label that no mount carries");
    assert_eq!(out.stdout.trim(), "ran");
    c.finish();
}

/// A masked directory gets a tmpfs with the label, as in runc: without
/// SELinux that tmpfs mount is refused by the kernel, in the init.
#[test]
fn mount_label_on_masked_directory_fails_like_runc() {
    if !need_root() {
        return;
    }
    if selinux_enabled() {
        skip("SELinux is enabled on this host (this checks the no-SELinux behaviour)");
        return;
    }
    let mut c = Container::new("lsm-ml-mask");
    c.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    c.config["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
    ]);
    c.config["linux"]["maskedPaths"] = json!(["/proc/driver"]);
    let out = c.create();
    out.assert_fail("create with a labelled tmpfs over a masked directory");
    if is_skiff() {
        assert!(out.stderr.contains("/proc/driver"), "{}", out.stderr);
    }
    c.assert_clean();
    c.finish();
}

/// `exec --apparmor` / `--process-label` are checked like the config: the
/// exec is refused, the container keeps running, a plain exec works.
#[test]
fn exec_with_unavailable_profile_or_label_is_refused() {
    if !need_root() {
        return;
    }
    if apparmor_enabled() || selinux_enabled() {
        skip("an LSM is enabled on this host (the refusals are for hosts without them)");
        return;
    }
    let mut c = Container::new("lsm-exec");
    c.config["process"]["args"] = json!(["sleep", "30"]);
    c.create().assert_ok("create");
    c.start().assert_ok("start");
    let id = c.id.clone();
    let out = c.runtime(&["exec", "--apparmor", "skiff-test-profile", &id, "true"]);
    out.assert_fail("exec --apparmor");
    if is_skiff() {
        assert!(
            out.stderr.contains(
                "process.apparmorProfile \"skiff-test-profile\": AppArmor is not enabled"
            ),
            "{}",
            out.stderr
        );
    }
    let out = c.runtime(&[
        "exec",
        "--process-label",
        "system_u:system_r:container_t:s0",
        &id,
        "true",
    ]);
    out.assert_fail("exec --process-label");
    if is_skiff() {
        assert!(
            out.stderr
                .contains("process.selinuxLabel \"system_u:system_r:container_t:s0\""),
            "{}",
            out.stderr
        );
    }
    assert_eq!(c.status().as_deref(), Some("running"));
    c.runtime(&["exec", &id, "true"]).assert_ok("plain exec");
    c.finish();
}

#[test]
fn apparmor_profile_applied_where_enabled() {
    if !need_root() {
        return;
    }
    if !apparmor_enabled() {
        skip("AppArmor is not enabled on this host");
        return;
    }
    // `unconfined` always exists where AppArmor is enabled; the init writes
    // `exec unconfined` and the process reports it.
    let mut c = Container::new("lsm-aa-on");
    c.config["process"]["apparmorProfile"] = json!("unconfined");
    c.sh("cat /proc/self/attr/apparmor/current 2>/dev/null || cat /proc/self/attr/current");
    let out = c.run();
    out.assert_ok("run with apparmorProfile unconfined");
    assert!(
        out.stdout.trim().starts_with("unconfined"),
        "{}",
        out.stdout
    );
    c.finish();
}

#[test]
fn selinux_label_applied_where_enabled() {
    if !need_root() {
        return;
    }
    if !selinux_enabled() {
        skip("SELinux is not enabled on this host");
        return;
    }
    // The host's own context is valid for the policy in force.
    let label = std::fs::read_to_string("/proc/self/attr/current")
        .unwrap_or_default()
        .trim_end_matches(['\0', '\n'])
        .to_string();
    let mut c = Container::new("lsm-se-on");
    c.config["process"]["selinuxLabel"] = json!(label);
    c.sh("cat /proc/self/attr/current");
    let out = c.run();
    out.assert_ok("run with selinuxLabel");
    assert_eq!(out.stdout.trim_end_matches(['\0', '\n']), label);
    c.finish();
}

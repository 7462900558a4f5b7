//! Installing and everyday use: `scripts/install.sh` into a temporary
//! `--destdir` (every file there, `--uninstall` leaves it empty),
//! `skiff completion` covering every subcommand, and `skiff check --format
//! json` whose KVM/TCG answer matches a probe of our own (QEMU with
//! `-accel kvm` booting the guest kernel to its banner).
//!
//! The install test uses the test build's `skiff` and `skiff-tools`
//! (`target/debug/`) and the static agent of `target/dist/` (built by
//! `scripts/build.sh --only agent`, as the VM tests build it), so that no
//! release build of the whole workspace runs inside the tests.

#[path = "common/agent_build.rs"]
mod agent_build;
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skiff() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff"))
}

fn skiff_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff-tools"))
}

/// `target/dist/skiff-agent`, built when missing or stale.
fn dist_agent() -> Option<PathBuf> {
    if !agent_build::build_static_agent() {
        skip("scripts/build.sh --only agent failed (static libseccomp: libseccomp-dev)");
        return None;
    }
    let target = skiff()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap();
    let agent = target.join("dist/skiff-agent");
    assert!(
        agent.is_file(),
        "build.sh did not write {}",
        agent.display()
    );
    Some(agent)
}

/// The visible subcommands, from `skiff --help` (not from the generators
/// under test).
fn subcommands() -> Vec<String> {
    let out = output_timeout(Command::new(skiff()).arg("--help"), TIMEOUT);
    out.assert_ok("skiff --help");
    let names: Vec<String> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n != "help")
        .collect();
    for expected in [
        "run",
        "create",
        "exec",
        "image",
        "registry",
        "check",
        "completion",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    names
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn install_puts_every_file_in_destdir_and_uninstall_removes_them() {
    if !need_root() {
        return;
    }
    let Some(agent) = dist_agent() else {
        return;
    };
    let tmp = temp_dir("install");
    let from = tmp.path().join("dist");
    fs::create_dir(&from).unwrap();
    for (src, name) in [
        (skiff(), "skiff"),
        (skiff_tools(), "skiff-tools"),
        (agent, "skiff-agent"),
    ] {
        fs::copy(src, from.join(name)).unwrap();
    }
    let dest = tmp.path().join("destdir");
    fs::create_dir(&dest).unwrap();
    let install = |extra: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/install.sh"))
            .args(["--prefix", "/opt/sk", "--destdir"])
            .arg(&dest)
            .args(extra);
        output_timeout(&mut cmd, Duration::from_secs(300))
    };
    install(&["--from", from.to_str().unwrap()]).assert_ok("install.sh");
    let root = dest.join("opt/sk");
    let files = files_under(&dest);
    for bin in ["bin/skiff", "bin/skiff-tools", "libexec/skiff/skiff-agent"] {
        let meta = fs::metadata(root.join(bin)).unwrap_or_else(|e| panic!("{bin}: {e}: {files:?}"));
        assert!(
            meta.len() > 0 && meta.permissions().mode() & 0o111 != 0,
            "{bin}"
        );
    }
    assert_eq!(
        fs::read(root.join("libexec/skiff/skiff-agent")).unwrap(),
        fs::read(from.join("skiff-agent")).unwrap()
    );
    for sub in subcommands() {
        let page = root.join(format!("share/man/man8/skiff-{sub}.8"));
        let text = fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{}: {e}; installed: {files:?}", page.display()));
        assert!(
            text.contains(".TH") && text.contains(&sub),
            "{}",
            page.display()
        );
    }
    assert!(root.join("share/man/man8/skiff.8").is_file());
    for (path, marker) in [
        ("share/bash-completion/completions/skiff", "complete"),
        ("share/zsh/site-functions/_skiff", "#compdef skiff"),
        (
            "share/fish/vendor_completions.d/skiff.fish",
            "complete -c skiff",
        ),
    ] {
        let text = fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(text.contains(marker), "{path} lacks {marker:?}");
    }
    for example in [
        "containerd/config.toml",
        "podman/containers.conf",
        "docker/daemon.json",
        "kubernetes/runtimeclass.yaml",
    ] {
        let text = fs::read_to_string(root.join("share/doc/skiff/examples").join(example))
            .unwrap_or_else(|e| panic!("{example}: {e}"));
        // the examples name the installed paths of this prefix
        assert!(
            !text.contains("/usr/local/"),
            "{example} still says /usr/local"
        );
    }
    let daemon: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root.join("share/doc/skiff/examples/docker/daemon.json")).unwrap(),
    )
    .expect("daemon.json is JSON");
    assert_eq!(daemon["runtimes"]["skiff"]["path"], "/opt/sk/bin/skiff");
    let manifest = fs::read_to_string(root.join("share/skiff/install-manifest")).unwrap();
    for f in &files {
        let listed = format!("file /{}", f);
        assert!(
            manifest.lines().any(|l| l == listed),
            "{f} not in the manifest"
        );
    }

    // The installed skiff finds its agent (libexec) and its tools (bin).
    let out = output_timeout(
        Command::new(root.join("bin/skiff"))
            .args(["check", "--format", "json"])
            .env_remove("SKIFF_AGENT"),
        Duration::from_secs(300),
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check output is not JSON: {e}: {out:?}"));
    let agent_check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent")
        .cloned()
        .unwrap();
    assert_eq!(agent_check["status"], "ok", "{agent_check}");
    assert_eq!(
        Path::new(agent_check["detail"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        root.join("libexec/skiff/skiff-agent")
            .canonicalize()
            .unwrap()
    );

    // A second install over the first changes nothing that uninstall misses.
    install(&["--from", from.to_str().unwrap()]).assert_ok("install.sh again");
    install(&["--uninstall"]).assert_ok("install.sh --uninstall");
    let left: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Nothing to uninstall: a clear error.
    let again = install(&["--uninstall"]);
    again.assert_fail("uninstall twice");
    assert!(again.stderr.contains("no manifest"), "{again:?}");
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let out = output_timeout(Command::new(skiff()).args(["completion", shell]), TIMEOUT);
        out.assert_ok(shell);
        let missing: Vec<_> = subs
            .iter()
            .filter(|s| !out.stdout.contains(s.as_str()))
            .collect();
        assert!(missing.is_empty(), "{shell} completion lacks {missing:?}");
    }
    let bash = output_timeout(Command::new(skiff()).args(["completion", "bash"]), TIMEOUT);
    assert!(
        bash.stdout.contains("complete -F _skiff"),
        "{}",
        &bash.stdout[..200]
    );
    // image subcommands are completed too (the whole CLI, not the runtime's)
    assert!(
        bash.stdout.contains("image__subcmd__pull"),
        "no image pull completion"
    );
    let bad = output_timeout(Command::new(skiff()).args(["completion", "tcsh"]), TIMEOUT);
    bad.assert_fail("completion tcsh");
    assert!(bad.stderr.contains("tcsh"), "{bad:?}");
}

#[test]
fn check_json_parses_and_its_kvm_answer_matches_a_probe() {
    if !need_root() {
        return;
    }
    // the agent lets check run the VM crate's full KVM probe
    let have_agent = dist_agent().is_some();
    let out = output_timeout(
        Command::new(skiff())
            .args(["check", "--format", "json"])
            .env_remove("SKIFF_VM_ACCEL"),
        Duration::from_secs(300),
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check output is not JSON: {e}: {out:?}"));
    let checks = report["checks"].as_array().expect("checks array");
    for name in [
        "cgroups", "userns", "seccomp", "qemu", "kernel", "agent", "kvm", "vsock", "virtiofs",
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {report}"));
        assert!(
            ["ok", "warn", "missing"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(!c["why"].as_str().unwrap().is_empty(), "{c}");
        if c["status"] != "ok" {
            assert!(
                c["fix"].is_string(),
                "{name} is not ok but says no fix: {c}"
            );
        }
    }
    // this host runs containers: cgroups and seccomp are there
    let status = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap()["status"].clone();
    assert_eq!(status("cgroups"), "ok");
    assert_eq!(status("seccomp"), "ok");
    assert_eq!(out.code, Some(0), "{out:?}");
    let qemu_here = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    assert_eq!(status("qemu") == "ok", qemu_here, "{report}");

    // 60 s: a KVM guest prints its banner in about a second even under load
    let probe = kvm::boots_linux(Duration::from_secs(60));
    let accel = report["accel"].as_str();
    match (probe, accel) {
        (false, a) => assert_eq!(a, Some("tcg"), "KVM cannot boot Linux here: {report}"),
        (true, Some("kvm")) => {}
        (true, a) if !have_agent || status("kernel") != "ok" || !qemu_here => {
            skip(&format!(
                "KVM runs guest code but check could not boot a probe VM ({a:?})"
            ));
        }
        (true, a) => panic!("KVM boots Linux here, check says {a:?}: {report}"),
    }
}

/// Whether QEMU under KVM (and nothing else: `-accel kvm` alone) gets a
/// Linux guest kernel to print its banner: an independent probe for
/// `check`, whose VM crate boots its agent instead. A host whose `/dev/kvm`
/// runs guest code but not Linux (PVM here) says no, as it should.
mod kvm {
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The newest `/boot/vmlinuz-*` (or `$SKIFF_VM_KERNEL`).
    fn kernel() -> Option<PathBuf> {
        if let Some(k) = std::env::var_os("SKIFF_VM_KERNEL") {
            return Some(k.into());
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .collect();
        found.sort();
        found.pop()
    }

    /// True when the guest printed "Linux version" within `limit`.
    pub fn boots_linux(limit: Duration) -> bool {
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return false;
        }
        let Some(kernel) = kernel() else { return false };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let Ok(mut qemu) = Command::new("qemu-system-x86_64")
            .args(["-accel", "kvm", "-M", "microvm", "-m", "256", "-nodefaults"])
            .args(["-display", "none", "-no-reboot", "-kernel"])
            .arg(&kernel)
            .args(["-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let t = Instant::now();
        let mut booted = false;
        while t.elapsed() < limit {
            if std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Linux version")) {
                booted = true;
                break;
            }
            if qemu.try_wait().ok().flatten().is_some() {
                booted = std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Linux version"));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = qemu.kill();
        let _ = qemu.wait();
        booted
    }
}

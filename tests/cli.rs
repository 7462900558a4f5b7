//! Installing and everyday use: `scripts/install.sh` into a temporary
//! `--destdir` (every file there, `--uninstall` leaves it empty),
//! `skiff completion` covering every subcommand, and `skiff check --format
//! json` whose KVM/TCG answer matches a probe of our own (a real guest
//! instruction run through the KVM ioctls).
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

    let probe = kvm::runs_guest_code(Duration::from_secs(60));
    let accel = report["accel"].as_str();
    match (probe, accel) {
        (false, a) => assert_eq!(a, Some("tcg"), "KVM cannot run guest code here: {report}"),
        (true, Some("kvm")) => {}
        (true, a) if !have_agent || status("kernel") != "ok" || !qemu_here => {
            skip(&format!(
                "KVM runs guest code but check could not boot a probe VM ({a:?})"
            ));
        }
        (true, a) => panic!("KVM runs guest code here, check says {a:?}: {report}"),
    }
}

/// Runs four real-mode instructions in a KVM guest: whether this host's
/// KVM can execute guest code at all (an independent probe for `check`).
mod kvm {
    use std::fs::OpenOptions;
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;
    use std::time::Duration;

    const KVM_CREATE_VM: u64 = 0xAE01;
    const KVM_GET_VCPU_MMAP_SIZE: u64 = 0xAE04;
    const KVM_CREATE_VCPU: u64 = 0xAE41;
    const KVM_SET_USER_MEMORY_REGION: u64 = 0x4020_AE46;
    const KVM_RUN: u64 = 0xAE80;
    const KVM_SET_REGS: u64 = 0x4090_AE82;
    const KVM_GET_SREGS: u64 = 0x8138_AE83;
    const KVM_SET_SREGS: u64 = 0x4138_AE84;
    const KVM_EXIT_IO: u32 = 2;
    const KVM_EXIT_HLT: u32 = 5;

    /// True when a guest ran `out` then `hlt` within `limit`.
    pub fn runs_guest_code(limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        // A broken KVM may block in KVM_RUN: the thread is left behind then.
        std::thread::spawn(move || {
            let _ = tx.send(run());
        });
        rx.recv_timeout(limit).unwrap_or(false)
    }

    fn ioctl(fd: i32, req: u64, arg: u64) -> i64 {
        // SAFETY: KVM ioctls on descriptors owned by `run`, with arguments
        // pointing at live buffers of the size each request encodes.
        unsafe { libc::ioctl(fd, req as _, arg) as i64 }
    }

    fn run() -> bool {
        let Ok(kvm) = OpenOptions::new().read(true).write(true).open("/dev/kvm") else {
            return false;
        };
        let vm = ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0);
        if vm < 0 {
            return false;
        }
        let vm = vm as i32;
        // SAFETY: a fresh anonymous mapping, used as guest memory.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                0x2000,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return false;
        }
        // mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; hlt
        let code = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, b'0', 0xee, 0xf4];
        // SAFETY: 9 bytes into the 8 KiB mapping at offset 0x1000.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), (mem as *mut u8).add(0x1000), 9) };
        let region: [u64; 4] = [0, 0, 0x2000, mem as u64]; // slot+flags, gpa, size, hva
        if ioctl(vm, KVM_SET_USER_MEMORY_REGION, region.as_ptr() as u64) < 0 {
            return false;
        }
        let vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
        let size = ioctl(kvm.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
        if vcpu < 0 || size <= 0 {
            return false;
        }
        let vcpu = vcpu as i32;
        // SAFETY: maps the vcpu's kvm_run area, `size` bytes as KVM says.
        let kvm_run = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu,
                0,
            )
        };
        if kvm_run == libc::MAP_FAILED {
            return false;
        }
        let mut sregs = [0u8; 0x138];
        if ioctl(vcpu, KVM_GET_SREGS, sregs.as_mut_ptr() as u64) < 0 {
            return false;
        }
        sregs[0..8].fill(0); // cs.base
        sregs[12..14].fill(0); // cs.selector
        if ioctl(vcpu, KVM_SET_SREGS, sregs.as_ptr() as u64) < 0 {
            return false;
        }
        let mut regs = [0u64; 18];
        regs[0] = 2; // rax
        regs[1] = 2; // rbx
        regs[16] = 0x1000; // rip
        regs[17] = 2; // rflags
        if ioctl(vcpu, KVM_SET_REGS, regs.as_ptr() as u64) < 0 {
            return false;
        }
        // SAFETY: exit_reason is the u32 at offset 8 of struct kvm_run.
        let exit_reason = || unsafe { *((kvm_run as *const u8).add(8) as *const u32) };
        let mut saw_io = false;
        for _ in 0..4 {
            if ioctl(vcpu, KVM_RUN, 0) < 0 {
                return false;
            }
            match exit_reason() {
                KVM_EXIT_IO => saw_io = true,
                KVM_EXIT_HLT => return saw_io,
                _ => return false,
            }
        }
        false
    }
}

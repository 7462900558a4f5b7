//! VM isolation tests: busybox containers in QEMU microvms, driven through
//! the `skiff-vm` library directly (the CLI wiring is tested with the CLI).
//!
//! This file is a test target of both the `skiff` and the `skiff-vm`
//! packages; the VM tests are compiled where `skiff-vm` is linkable
//! (`cfg(skiff_vm_pkg)`, set by skiff-vm's build script):
//! `cargo test -p skiff-vm --test vm`.
//!
//! The shim created by `skiff_vm::create` inherits the caller's stdio, so
//! each VM runs under a *driver*: this test binary re-executed with
//! `SKIFF_VM_TEST_DRIVER` set, whose stdout/stderr are files the test reads.
//! VM boots are slow under TCG: the suite boots three VMs (one of them a
//! template, saved and restored twice) and restores one more.
#![allow(unexpected_cfgs)]

#[cfg(not(skiff_vm_pkg))]
#[test]
fn vm_tests_live_in_the_skiff_vm_package() {
    eprintln!("SKIP: the VM tests run as `cargo test -p skiff-vm --test vm` (they call skiff-vm directly)");
}

#[cfg(skiff_vm_pkg)]
#[path = "common/agent_build.rs"]
mod agent_build;
#[cfg(skiff_vm_pkg)]
#[path = "common/vm_driver.rs"]
mod vm_driver;

#[cfg(skiff_vm_pkg)]
mod vm {
    use super::vm_driver::{redirect, restore};
    use serde_json::{json, Value};
    use std::fs;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const DRIVER_ENV: &str = "SKIFF_VM_TEST_DRIVER";

    /// Prints SKIP and returns false when the host cannot run VM tests.
    fn vm_host_ready() -> bool {
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
        if !super::agent_build::build_static_agent() || skiff_vm::initramfs::find_agent().is_err() {
            eprintln!("SKIP: could not build the static skiff-agent");
            return false;
        }
        true
    }

    /// A bundle with a busybox rootfs.
    fn bundle(dir: &Path, process: Value, extra: Value) -> PathBuf {
        let b = dir.join("bundle");
        let rootfs = b.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for app in [
            "sh", "echo", "cat", "env", "hostname", "uname", "sleep", "true", "id", "ls", "dd",
            "head", "grep", "mkdir",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).unwrap();
        }
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "process": process,
            "root": {"path": "rootfs"},
            "hostname": "vmtest",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
            ],
            "annotations": {"run.skiff.isolation": "vm"},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
        });
        merge(&mut spec, extra);
        fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        b
    }

    /// Deep-merges `extra` into `base` (objects merge, everything else replaces).
    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn process(script: &str) -> Value {
        json!({"args": ["sh", "-c", script], "cwd": "/", "env": ["PATH=/bin", "FOO=bar-from-spec"], "user": {"uid": 0, "gid": 0}})
    }

    /// Runs the driver for one VM and returns its result JSON.
    fn drive(dir: &Path, bundle: &Path, actions: Value) -> Value {
        super::vm_driver::drive(dir, bundle, actions, "vm::driver", DRIVER_ENV)
    }

    fn wait_for(path: &Path, needle: &str, max: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < max {
            if fs::read_to_string(path)
                .unwrap_or_default()
                .contains(needle)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
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
        // process.terminal: the host pty master arrives on this socket.
        let init_console = dir.join("init-console.sock");
        let init_reader = (actions["terminal"].as_bool() == Some(true)).then(|| {
            let listener = std::os::unix::net::UnixListener::bind(&init_console).unwrap();
            std::thread::spawn(move || read_console(listener))
        });
        let t = Instant::now();
        let created = skiff_vm::create(&skiff_vm::CreateOptions {
            id: "vmtest",
            bundle: &bundle,
            spec: &spec,
            state_dir: &state,
            console_socket: init_reader.as_ref().map(|_| init_console.as_path()),
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
        result["shim_pid"] = json!(pid);
        result["vmm_pid"] = json!(fs::read_to_string(state.join("vmm.pid"))
            .unwrap_or_default()
            .trim());
        result["start"] = json!(skiff_vm::start(&state).map_err(|e| e.to_string()).err());
        if let Some(marker) = actions["wait_for"].as_str() {
            result["marker_seen"] = json!(wait_for(&o, marker, Duration::from_secs(120)));
        }
        if let Some(args) = actions["exec"].as_array() {
            let user = match &actions["exec_user"] {
                Value::Null => json!({"uid": 0, "gid": 0}),
                u => u.clone(),
            };
            let p: oci_spec::runtime::Process = serde_json::from_value(json!({
                "args": args, "cwd": "/", "env": ["PATH=/bin", "EXECVAR=yes"], "user": user
            }))
            .unwrap();
            let so = redirect(1, &dir.join("exec.out"));
            let r = skiff_vm::exec(&state, &p, None, false);
            restore(1, so);
            result["exec_status"] = json!(r.as_ref().ok());
            result["exec_error"] = json!(r.err().map(|e| e.to_string()));
            result["exec_out"] =
                json!(fs::read_to_string(dir.join("exec.out")).unwrap_or_default());
        }
        if let Some(args) = actions["exec_tty"].as_array() {
            let sock = dir.join("console.sock");
            let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            let reader = std::thread::spawn(move || read_console(listener));
            let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
            let p: oci_spec::runtime::Process = serde_json::from_value(json!({
                "args": args, "cwd": "/", "env": ["PATH=/bin"], "terminal": true, "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
            }))
            .unwrap();
            let r = skiff_vm::exec(&state, &p, Some(&sock), false);
            result["tty_status"] = json!(r.as_ref().ok());
            result["tty_error"] = json!(r.err().map(|e| e.to_string()));
            result["tty_out"] = json!(reader.join().unwrap());
        }
        if actions["stats"].as_bool() == Some(true) {
            result["stats"] =
                skiff_vm::stats(&state).unwrap_or_else(|e| json!({"error": e.to_string()}));
        }
        if actions["pause"].as_bool() == Some(true) {
            result["pause"] = json!(skiff_vm::pause(&state).map_err(|e| e.to_string()).err());
            result["stats_paused"] =
                skiff_vm::stats(&state).unwrap_or_else(|e| json!({"error": e.to_string()}));
            result["resume"] = json!(skiff_vm::resume(&state).map_err(|e| e.to_string()).err());
            result["stats_resumed"] =
                skiff_vm::stats(&state).unwrap_or_else(|e| json!({"error": e.to_string()}));
        }
        if let Some(sig) = actions["signal"].as_i64() {
            // SAFETY: signalling the shim we created.
            unsafe { libc::kill(pid, sig as i32) };
        }
        if actions["kill_vmm"].as_bool() == Some(true) {
            let vmm: i32 = result["vmm_pid"].as_str().unwrap().parse().unwrap();
            // SAFETY: killing the QEMU this test started.
            unsafe { libc::kill(vmm, libc::SIGKILL) };
        }
        let mut st = 0;
        // SAFETY: reaping our child (the shim).
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if let Some(reader) = init_reader {
            result["init_tty_out"] = json!(reader.join().unwrap());
        }
        result["shim_exited"] = json!(libc::WIFEXITED(st));
        result["shim_status"] = json!(libc::WEXITSTATUS(st));
        result["stdout"] = json!(fs::read_to_string(&o).unwrap_or_default());
        result["stderr"] = json!(fs::read_to_string(&e).unwrap_or_default());
        result["timings"] = fs::read_to_string(state.join("timings.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        fs::write(dir.join("result.json"), result.to_string()).unwrap();
    }

    /// Receives a pty master on the console socket and reads it until the slave closes.
    fn read_console(listener: std::os::unix::net::UnixListener) -> String {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 256];
        let mut cmsg = [0u8; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: recvmsg into local buffers; the fd is taken from the SCM_RIGHTS cmsg.
        let master = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = cmsg.len();
            assert!(libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) >= 0);
            let c = libc::CMSG_FIRSTHDR(&msg);
            assert!(!c.is_null(), "no fd on the console socket");
            std::fs::File::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()))
        };
        let mut master = master;
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(120) {
            let mut pfd = libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 200) } == 0 {
                continue;
            }
            match master.read(&mut chunk) {
                Ok(n) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break, // EIO: every slave fd closed
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Processes whose command line mentions `needle` (e.g. the state dir).
    fn procs_mentioning(needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(c) = fs::read(e.path().join("cmdline")) {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                if c.contains(needle) {
                    found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
                }
            }
        }
        found
    }

    fn assert_cleaned(dir: &Path, state: &Path) {
        skiff_vm::delete(state).unwrap();
        skiff_vm::delete(state).unwrap(); // idempotent
        let left: Vec<_> = fs::read_dir(state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "files left in the state dir: {left:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let st = state.to_string_lossy();
        assert!(
            !mounts.lines().any(|l| l.contains(&*st)),
            "mounts left under {st}"
        );
        let procs = procs_mentioning(&dir.to_string_lossy());
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }

    #[test]
    fn busybox_in_a_vm_stdout_env_hostname_kernel_caps_seccomp_binds_signal() {
        if !vm_host_ready() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let script = "echo hello-from-vm; echo to-stderr >&2; echo FOO=$FOO; echo HOST=$(hostname); echo KERNEL=$(uname -r); \
                      grep -E '^Cap(Eff|Bnd)' /proc/self/status; mkdir /tmp/denied || echo MKDIR-DENIED; \
                      cat /mnt/shared/hello.txt /etc/vmtest.conf; echo from-guest > /mnt/shared/out.txt; \
                      head -c 9 /big.dat; echo; echo guest-wrote >> /big.dat; \
                      echo x >> /etc/vmtest.conf || echo RO-DENIED; \
                      test -L /rootlink && test -L /mnt/shared/hostlink && echo LINKS-SEEN; \
                      if cat /../config.json /../secret.txt /rootlink /mnt/shared/hostlink /mnt/shared/rel \
                         /mnt/shared/../secret.txt 2>/dev/null | grep -q -e HOST-SECRET -e ociVersion; \
                      then echo SECRET-LEAKED; else echo NO-SECRET; fi; \
                      test -d /tmp/denied && echo MKDIR-HAPPENED; \
                      trap 'echo got-TERM; exit 3' TERM; echo ready; while :; do sleep 0.2; done";
        // skiff-runtime in the guest applies capabilities and seccomp.
        let mut proc = process(script);
        let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
        proc["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        // Bind mounts: a host directory (9p share, writable), a read-only file
        // and a 2 MiB writable one (host bind mounts in one more share).
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::write(shared.join("hello.txt"), "dir-bind-ok\n").unwrap();
        fs::write(tmp.path().join("vmtest.conf"), "file-bind-ok\n").unwrap();
        let big = tmp.path().join("big.dat");
        let mut content = b"big-start".to_vec();
        content.resize(2 << 20, b'.');
        fs::write(&big, &content).unwrap();
        let mounts = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/mnt/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]},
            {"destination": "/etc/vmtest.conf", "type": "bind", "source": tmp.path().join("vmtest.conf"), "options": ["bind", "ro"]},
            {"destination": "/big.dat", "type": "bind", "source": big, "options": ["bind", "rw"]}
        ]);
        let seccomp = json!({"mounts": mounts, "linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }}});
        let b = bundle(tmp.path(), proc, seccomp.clone());
        // A hostile container: host files next to its rootfs and shares
        // (the bundle's config.json, a secret), reached through `..` and
        // through symlinks the host put into the rootfs and the share.
        let secret = tmp.path().join("secret.txt");
        fs::write(&secret, "HOST-SECRET\n").unwrap();
        std::os::unix::fs::symlink(&secret, b.join("rootfs/rootlink")).unwrap();
        std::os::unix::fs::symlink(&secret, shared.join("hostlink")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", shared.join("rel")).unwrap();
        let r = drive(
            tmp.path(),
            &b,
            json!({"wait_for": "ready", "signal": libc::SIGTERM}),
        );
        eprintln!("result: {r:#}");
        assert!(
            r["create_error"].is_null(),
            "create failed: {}",
            r["create_error"]
        );
        assert!(r["start"].is_null(), "start failed: {}", r["start"]);
        let out = r["stdout"].as_str().unwrap();
        assert!(out.contains("hello-from-vm\n"), "stdout: {out}");
        assert!(out.contains("FOO=bar-from-spec\n"), "stdout: {out}");
        assert!(out.contains("HOST=vmtest\n"), "stdout: {out}");
        // CAP_CHOWN (0) and CAP_KILL (5) only; mkdir denied by the profile.
        assert!(out.contains("CapEff:\t0000000000000021\n"), "stdout: {out}");
        assert!(out.contains("CapBnd:\t0000000000000021\n"), "stdout: {out}");
        assert!(out.contains("MKDIR-DENIED\n"), "stdout: {out}");
        assert!(!out.contains("MKDIR-HAPPENED"), "stdout: {out}");
        assert!(out.contains("dir-bind-ok\nfile-bind-ok\n"), "stdout: {out}");
        assert!(out.contains("big-start\n"), "stdout: {out}");
        assert!(out.contains("RO-DENIED\n"), "stdout: {out}");
        assert!(out.contains("LINKS-SEEN\n"), "stdout: {out}");
        assert!(
            out.contains("NO-SECRET\n") && !out.contains("SECRET-LEAKED"),
            "the guest reached host files beyond its rootfs and shares: {out}"
        );
        let big_now = fs::read(&big).unwrap();
        assert!(
            big_now.ends_with(b"guest-wrote\n") && big_now.len() == (2 << 20) + 12,
            "the guest's write to the file bind mount is not on the host ({} bytes)",
            big_now.len()
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("vmtest.conf")).unwrap(),
            "file-bind-ok\n"
        );
        assert_eq!(
            fs::read_to_string(shared.join("out.txt")).unwrap_or_default(),
            "from-guest\n"
        );
        let host_kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let guest_kernel = out.lines().find_map(|l| l.strip_prefix("KERNEL=")).unwrap();
        assert_ne!(
            guest_kernel,
            host_kernel.trim(),
            "uname -r shows the host kernel"
        );
        let expected = skiff_vm::kernel::default_kernel().unwrap();
        assert!(
            expected.to_string_lossy().ends_with(guest_kernel),
            "guest kernel {guest_kernel} vs {}",
            expected.display()
        );
        assert!(
            r["stderr"].as_str().unwrap().contains("to-stderr"),
            "stderr: {}",
            r["stderr"]
        );
        // SIGTERM to the shim reached the trap in the guest; its exit code is the shim's.
        assert!(out.contains("got-TERM"), "stdout: {out}");
        assert_eq!(r["shim_exited"], json!(true));
        assert_eq!(r["shim_status"], json!(3));
        // The VM was restored from a template (built by this create or an
        // earlier one with the same machine), as `--debug` says.
        assert_eq!(r["timings"]["boot"], json!("template"), "{r:#}");
        assert!(
            r["stderr"].as_str().unwrap().contains("boot=template"),
            "stderr: {}",
            r["stderr"]
        );
        assert_cleaned(tmp.path(), &tmp.path().join("state"));

        // A second container with the same machine (RAM, vCPUs, one directory
        // share) restores the template the first one left, and its clock is
        // the host's, not the template's.
        let second = tmp.path().join("second");
        fs::create_dir(&second).unwrap();
        // It runs with a terminal, built by skiff-runtime in the guest (pty
        // master over the runtime's console socket): caps and seccomp apply.
        let mut proc2 = process(
            "test -t 0 && test -t 1 && echo tty-init-yes; echo second-container; \
             grep -E '^CapEff' /proc/self/status; mkdir /tmp/denied2 || echo MKDIR-DENIED; \
             echo DATE=$(date +%s)",
        );
        proc2["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        proc2["terminal"] = json!(true);
        let b2 = bundle(&second, proc2, seccomp.clone());
        let r2 = drive(&second, &b2, json!({"terminal": true}));
        eprintln!("second: {r2:#}");
        assert!(r2["create_error"].is_null(), "{}", r2["create_error"]);
        let out2 = r2["init_tty_out"].as_str().unwrap_or_default();
        assert!(out2.contains("tty-init-yes"), "tty: {out2:?}");
        assert!(out2.contains("second-container"), "tty: {out2:?}");
        assert!(out2.contains("CapEff:\t0000000000000021"), "tty: {out2:?}");
        assert!(out2.contains("MKDIR-DENIED"), "tty: {out2:?}");
        assert_eq!(r2["timings"]["boot"], json!("template"), "{r2:#}");
        assert_eq!(r2["timings"]["template_built"], json!(false), "{r2:#}");
        assert_eq!(r2["timings"]["template"], r["timings"]["template"]);
        let guest_now: i64 = out2
            .lines()
            .find_map(|l| l.strip_prefix("DATE="))
            .and_then(|d| d.trim().parse().ok())
            .unwrap_or_else(|| panic!("no DATE in {out2}"));
        let host_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (host_now - guest_now).abs() < 120,
            "guest clock {guest_now} vs host {host_now}"
        );
        assert_eq!(r2["shim_status"], json!(0));
        assert_cleaned(&second, &second.join("state"));
    }

    #[test]
    fn exec_stats_memory_limit_pause_resume_then_vmm_killed() {
        if !vm_host_ready() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let script = "echo ready; while :; do sleep 0.2; done";
        let limit = 64u64 << 20;
        // This one boots its kernel (templates off): the cold path stays
        // tested. Its rootfs reaches the guest with virtio-fs (virtiofsd)
        // when QEMU's virtiofsd is installed, else with 9p.
        let virtiofs = Path::new("/usr/lib/qemu/virtiofsd").exists();
        if !virtiofs {
            eprintln!("note: /usr/lib/qemu/virtiofsd missing: the cold-boot test shares the rootfs with 9p");
        }
        let rootfs_kind = if virtiofs { "virtiofs" } else { "9p" };
        let b = bundle(
            tmp.path(),
            process(script),
            json!({"linux": {"resources": {"memory": {"limit": limit}},
                             "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                         "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}},
                   "annotations": {"run.skiff.isolation": "vm", "run.skiff.vm.template": "false",
                                   "run.skiff.vm.rootfs": rootfs_kind}}),
        );
        // dd's 100 MiB buffer fits in the guest (256 MiB) but not in the 64 MiB cgroup: the OOM killer ends dd.
        let r = drive(
            tmp.path(),
            &b,
            json!({"wait_for": "ready", "stats": true, "pause": true, "kill_vmm": true,
                   "exec_tty": ["sh", "-c", "test -t 0 && test -t 1 && echo tty-yes; grep -E '^CapEff' /proc/self/status; \
                                 mkdir /tmp/x || echo MKDIR-DENIED; exit 4"],
                   "exec_user": {"uid": 1000, "gid": 1000, "additionalGids": [2000]},
                   "exec": ["sh", "-c", "echo exec-ran EXECVAR=$EXECVAR; echo ID=$(id -u):$(id -g):$(id -G); \
                             grep ' / ' /proc/self/mounts; cat /sys/fs/cgroup/memory.max 2>/dev/null; \
                             dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null && echo survived; exit 5"]}),
        );
        eprintln!("result: {r:#}");
        assert!(
            r["create_error"].is_null(),
            "create failed: {}",
            r["create_error"]
        );
        let exec_out = r["exec_out"].as_str().unwrap_or_default();
        assert!(
            exec_out.contains("exec-ran EXECVAR=yes"),
            "exec output: {exec_out} ({})",
            r["exec_error"]
        );
        // the exec'd process runs as the user it names, with its groups
        assert!(
            exec_out.contains("ID=1000:1000:1000 2000\n"),
            "exec user: {exec_out}"
        );
        assert!(
            !exec_out.contains("survived"),
            "200 MiB fit in a 64 MiB limit: {exec_out}"
        );
        assert_eq!(r["exec_status"], json!(5));
        // The container's root is the share of the chosen kind.
        assert!(
            exec_out.contains(&format!(" / {rootfs_kind} ")),
            "root mount: {exec_out}"
        );
        // exec with a terminal: the pty master arrives on the console socket.
        let tty_out = r["tty_out"].as_str().unwrap_or_default();
        assert!(
            tty_out.contains("tty-yes"),
            "tty output: {tty_out:?} ({})",
            r["tty_error"]
        );
        assert_eq!(r["tty_status"], json!(4));
        // The terminal process is built by skiff-runtime: its caps, the container's seccomp.
        assert!(
            tty_out.contains("CapEff:\t0000000000000021"),
            "tty: {tty_out:?}"
        );
        assert!(tty_out.contains("MKDIR-DENIED"), "tty: {tty_out:?}");
        assert_eq!(
            r["stats"]["memory"]["limit"],
            json!(limit),
            "stats: {}",
            r["stats"]
        );
        // pause/resume freeze and thaw the container's cgroup in the guest.
        assert!(r["pause"].is_null(), "pause: {}", r["pause"]);
        assert_eq!(
            r["stats_paused"]["frozen"],
            json!(true),
            "{}",
            r["stats_paused"]
        );
        assert!(r["resume"].is_null(), "resume: {}", r["resume"]);
        assert_eq!(
            r["stats_resumed"]["frozen"],
            json!(false),
            "{}",
            r["stats_resumed"]
        );
        assert_eq!(r["timings"]["boot"], json!("cold"), "{r:#}");
        assert!(
            r["stderr"].as_str().unwrap().contains("boot=cold"),
            "stderr: {}",
            r["stderr"]
        );
        // The VMM was killed: the shim reports an error status.
        assert_eq!(r["shim_exited"], json!(true));
        assert_eq!(r["shim_status"], json!(255));
        assert!(
            r["stderr"].as_str().unwrap().contains("VMM"),
            "stderr: {}",
            r["stderr"]
        );
        assert_cleaned(tmp.path(), &tmp.path().join("state"));
    }

    #[test]
    fn guest_that_never_boots_fails_create_with_console_log() {
        if !vm_host_ready() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        // No init to run and panic=0 (wait forever): the guest hangs after printing its panic.
        // The boot deadline leaves room for a slow TCG boot on a loaded host.
        let extra = json!({
            "vm": {"kernel": {"path": skiff_vm::kernel::default_kernel().unwrap(), "parameters": ["rdinit=/does-not-exist", "init=/does-not-exist", "panic=0"]}},
            "annotations": {"run.skiff.isolation": "vm", "run.skiff.vm.boot_timeout": "45"}
        });
        let b = bundle(tmp.path(), process("true"), extra);
        let t = Instant::now();
        let r = drive(tmp.path(), &b, json!({}));
        let err = r["create_error"]
            .as_str()
            .unwrap_or_else(|| panic!("create succeeded: {r}"));
        assert!(err.contains("VM boot failed"), "{err}");
        assert!(
            err.contains("Kernel panic") || err.contains("init"),
            "console log missing from: {err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "create took {:?}",
            t.elapsed()
        );
        assert_cleaned(tmp.path(), &tmp.path().join("state"));
    }
}

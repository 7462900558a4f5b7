//! VM templates: boot once, restore many times.
//!
//! A template is a guest booted to the point where the agent waits for the
//! host's `hello`, saved with QEMU's migration (`migrate` to a file), so a
//! container's VM starts by *restoring* it instead of booting a kernel.
//! This is what Kata Containers calls VM templating.
//!
//! * **RAM**: the template VM runs with its RAM in a file
//!   (`memory-backend-file,share=on`) and the `x-ignore-shared` migration
//!   capability, so the saved state holds only device state (~50 KB); a
//!   restored VM maps that file *privately* (`share=off`: copy on write),
//!   so pages are read lazily from the page cache and the template is never
//!   modified.
//! * **Devices**: the migration stream carries device state, not backend
//!   configuration: the 9p export path, the chardev socket path and the
//!   console file are per container and may differ between save and
//!   restore; what must match (machine, RAM size, vCPUs, device list and
//!   order, 9p mount tags, kernel and initramfs that shaped RAM) is exactly
//!   what the template [`key`] hashes. The template VM never mounts its 9p
//!   shares (QEMU refuses to migrate a mounted 9p export); it shares an
//!   empty directory.
//! * **Files**: `<cache>/templates/<key>/{memory,state,meta.json}`. A
//!   builder takes `<key>.lock` (flock), builds in `<key>.tmp<pid>/` and
//!   renames it into place, so readers never see a partial template and
//!   concurrent creates build it once. A template-machinery failure writes
//!   `<key>.failed` (ignored after an hour) so creates do not rebuild a
//!   template that cannot work on this host. Templates and leftovers not
//!   used for an hour are pruned when a new one is built.
//! * **Guest**: the agent (started with `skiff.template` on its command line)
//!   prints [`READY_MARKER`] on the console when it waits for `hello`; after
//!   a restore it sets the clock and reseeds the kernel RNG from the
//!   host's `hello` (every clone shares the template's RNG state).

use crate::qemu::{self, VmConfig};
use crate::qmp::Qmp;
use crate::{cache_dir, io_err, Error};
use serde_json::json;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Bumped when the template layout or the way it is made changes.
const FORMAT: u32 = 1;
/// Printed by the agent on the console when a template VM is ready to be saved.
pub const READY_MARKER: &str = "SKIFF-TEMPLATE-READY";
/// Id of the RAM backend object (part of the migration stream: RAM block name).
const MEM_ID: &str = "skiff-mem";
/// Templates, leftovers and failure markers older than this are pruned/ignored.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// Why a template could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// The guest did not come up within the boot deadline: a cold boot
    /// would not either. Carries the reason.
    Boot(String),
    /// The template machinery failed (QMP, migration, files): a cold boot
    /// may still work.
    Other(String),
}

/// Directory holding the templates.
pub fn templates_dir() -> Result<PathBuf, Error> {
    let d = cache_dir()?.join("templates");
    fs::create_dir_all(&d).map_err(|e| io_err(&format!("create {}", d.display()), e))?;
    let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
    Ok(d)
}

/// Path, size and mtime of a file; without the mtime for the initramfs
/// archives of the cache, whose names are content hashes and whose mtime
/// marks their last use.
fn identity(p: &Path) -> String {
    let canon = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let m = fs::metadata(&canon).ok();
    let content_named = canon
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("initramfs-"))
        && cache_dir().is_ok_and(|c| canon.parent() == c.canonicalize().ok().as_deref());
    let mtime = m
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .filter(|_| !content_named)
        .unwrap_or(0);
    format!(
        "{}:{}:{mtime}",
        canon.display(),
        m.map(|m| m.len()).unwrap_or(0)
    )
}

/// The key of the template `cfg` can be restored from, or `None` when
/// `cfg` cannot use templates (extra hypervisor parameters, whose effect on
/// the machine is unknown). Hashes the QEMU command line with the
/// per-container paths (rootfs, shares, channel, console) replaced by fixed
/// ones, and the identity (path, size, mtime) of QEMU, kernel and initramfs.
pub fn key(cfg: &VmConfig) -> Option<String> {
    use sha2::Digest;
    if !cfg.extra_args.is_empty() || cfg.virtiofs.is_some() {
        // vhost-user-fs devices cannot be migrated (QEMU 7.2).
        return None;
    }
    let canon = canonical(cfg, Path::new("/"));
    let mut h = sha2::Sha256::new();
    h.update(format!("format {FORMAT}\n"));
    for a in qemu::args(&canon) {
        // The TSC frequency hint only matters at boot and may drift on the host.
        let a = a
            .split(' ')
            .map(|w| {
                if w.starts_with("tsc_early_khz=") {
                    "tsc_early_khz=*"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        h.update(a.as_bytes());
        h.update(b"\0");
    }
    for p in [&cfg.qemu, &cfg.kernel, &cfg.initrd] {
        h.update(identity(p).as_bytes());
        h.update(b"\n");
    }
    Some(hex::encode(&h.finalize()[..12]))
}

/// `cfg` with the per-container paths pointed under `dir`.
fn canonical(cfg: &VmConfig, dir: &Path) -> VmConfig {
    let mut c = cfg.clone();
    c.template = true;
    c.debug = false;
    c.rootfs = dir.join("empty");
    c.channel = dir.join("agent.sock");
    c.console_log = dir.join("console.log");
    for s in &mut c.shares {
        s.path = dir.join("empty");
    }
    c
}

/// QEMU arguments for a VM whose RAM is the template file `memory`:
/// `share=true` while building (writes go to the file), `false` to restore
/// (private copy-on-write mapping); `qmp` is the QMP socket to listen on.
pub(crate) fn vm_args(cfg: &VmConfig, memory: &Path, share: bool, qmp: &Path) -> Vec<String> {
    let mut a = qemu::args(cfg);
    if let Some(i) = a.iter().position(|x| x == "-M") {
        a[i + 1] = format!("{},memory-backend={MEM_ID}", a[i + 1]);
    }
    a.extend([
        "-object".into(),
        format!(
            "memory-backend-file,id={MEM_ID},size={}M,mem-path={},share={}",
            cfg.memory_mib,
            qemu::share_path(memory),
            if share { "on" } else { "off" }
        ),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu::share_path(qmp)),
    ]);
    if !share {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

/// The ready template for `key`, if any (and templates were not found to
/// fail for it within the last hour: then `Err` with the reason).
pub(crate) fn lookup(key: &str) -> Result<Option<PathBuf>, String> {
    lookup_in(&templates_dir().map_err(|e| e.to_string())?, key)
}

fn lookup_in(root: &Path, key: &str) -> Result<Option<PathBuf>, String> {
    let failed = root.join(format!("{key}.failed"));
    if let Ok(m) = fs::metadata(&failed) {
        if m.modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a < MAX_AGE)
        {
            let why = fs::read_to_string(&failed).unwrap_or_default();
            return Err(format!(
                "templates failed for this configuration within the hour ({}): {}",
                failed.display(),
                why.trim()
            ));
        }
    }
    let dir = root.join(key);
    Ok(dir.join("state").is_file().then_some(dir))
}

/// Records that the template machinery failed for `key`.
pub(crate) fn mark_failed(key: &str, why: &str) {
    if let Ok(root) = templates_dir() {
        mark_failed_in(&root, key, why);
    }
}

fn mark_failed_in(root: &Path, key: &str, why: &str) {
    let _ = crate::write_atomic(&root.join(format!("{key}.failed")), why.as_bytes());
}

/// Removes a template that failed to restore.
pub(crate) fn discard(dir: &Path) {
    let gone = dir.with_extension(format!("bad{}", std::process::id()));
    if fs::rename(dir, &gone).is_ok() {
        let _ = fs::remove_dir_all(&gone);
    }
}

/// Marks a template as used now (pruning spares recently used ones).
pub(crate) fn touch(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Spawns QEMU in its own process group, killed with the calling process.
/// `keep_fd` is left open across exec (the migration stream of a restore).
pub(crate) fn spawn_qemu(
    qemu: &Path,
    args: &[String],
    log: &Path,
    keep_fd: Option<i32>,
) -> io::Result<Child> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(qemu);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: pre_exec runs async-signal-safe syscalls only.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(fd) = keep_fd {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

fn kill(q: &mut Child) {
    // SAFETY: QEMU leads its own process group (setpgid in pre_exec).
    unsafe { libc::kill(-(q.id() as i32), libc::SIGKILL) };
    let _ = q.kill();
    let _ = q.wait();
}

struct Lock(File);

impl Lock {
    /// Takes an exclusive flock on `path`, polling until `deadline`.
    fn take(path: &Path, deadline: Duration) -> Result<Lock, String> {
        let f = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = Instant::now();
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock(f));
            }
            if t.elapsed() > deadline {
                return Err(format!(
                    "{} still locked after {deadline:?} (another template build)",
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Returns the template for `key`, building it first if needed (waiting
/// for a concurrent builder of the same key instead of building twice).
/// The template VM's console goes to `console_log` and QEMU's messages to
/// `vmm_log` (the container's files: a boot failure shows there). The
/// bool is true when this call built it.
pub(crate) fn find_or_build(
    cfg: &VmConfig,
    key: &str,
    console_log: &Path,
    vmm_log: &Path,
    deadline: Duration,
) -> Result<(PathBuf, bool), BuildError> {
    let other = |e: Error| BuildError::Other(e.to_string());
    let root = templates_dir().map_err(other)?;
    let dir = root.join(key);
    if dir.join("state").is_file() {
        return Ok((dir, false));
    }
    let _lock =
        Lock::take(&root.join(format!("{key}.lock")), deadline).map_err(BuildError::Other)?;
    if dir.join("state").is_file() {
        return Ok((dir, false));
    }
    let tmp = root.join(format!("{key}.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("empty"))
        .map_err(|e| BuildError::Other(format!("create {}: {e}", tmp.display())))?;
    let r = build_in(cfg, &tmp, console_log, vmm_log, deadline);
    if let Err(e) = r {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    for f in ["agent.sock", "qmp.sock", "empty"] {
        let _ = fs::remove_file(tmp.join(f));
        let _ = fs::remove_dir(tmp.join(f));
    }
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(BuildError::Other(format!(
            "rename {} to {}: {e}",
            tmp.display(),
            dir.display()
        )));
    }
    prune(&root, key);
    Ok((dir, true))
}

fn build_in(
    cfg: &VmConfig,
    tmp: &Path,
    console_log: &Path,
    vmm_log: &Path,
    deadline: Duration,
) -> Result<(), BuildError> {
    let t0 = Instant::now();
    let mut c = canonical(cfg, tmp);
    c.console_log = console_log.to_path_buf();
    let qmp_path = tmp.join("qmp.sock");
    let memory = tmp.join("memory");
    let args = vm_args(&c, &memory, true, &qmp_path);
    let mut q = spawn_qemu(&c.qemu, &args, vmm_log, None)
        .map_err(|e| BuildError::Other(format!("spawn {}: {e}", c.qemu.display())))?;
    let r = save(&mut q, tmp, console_log, &qmp_path, deadline, t0);
    kill(&mut q);
    r?;
    for f in ["memory", "state"] {
        if let Ok(f) = File::open(tmp.join(f)) {
            let _ = f.sync_all();
        }
    }
    let meta = json!({
        "format": FORMAT, "qemu": identity(&c.qemu), "kernel": identity(&c.kernel),
        "initrd": identity(&c.initrd), "memory_mib": c.memory_mib, "vcpus": c.vcpus,
        "accel": c.accel.name(), "build_ms": t0.elapsed().as_millis() as u64, "args": args,
    });
    fs::write(tmp.join("meta.json"), meta.to_string())
        .map_err(|e| BuildError::Other(format!("meta.json: {e}")))?;
    Ok(())
}

/// Waits for the agent's ready marker, then saves the VM into `tmp/state`.
fn save(
    q: &mut Child,
    tmp: &Path,
    console_log: &Path,
    qmp_path: &Path,
    deadline: Duration,
    t0: Instant,
) -> Result<(), BuildError> {
    loop {
        if fs::read_to_string(console_log)
            .unwrap_or_default()
            .contains(READY_MARKER)
        {
            break;
        }
        if let Ok(Some(st)) = q.try_wait() {
            return Err(BuildError::Other(format!(
                "template VM exited during boot ({st})"
            )));
        }
        if t0.elapsed() > deadline {
            return Err(BuildError::Boot(format!(
                "template VM: guest agent not ready within {deadline:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let qerr = |e: io::Error| BuildError::Other(format!("template VM: {e}"));
    let mut qmp = Qmp::connect(qmp_path, Duration::from_secs(10), || {
        matches!(q.try_wait(), Ok(None))
    })
    .map_err(qerr)?;
    qmp.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]}),
    )
    .map_err(qerr)?;
    qmp.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": 1u64 << 40}),
    )
    .map_err(qerr)?;
    let state = tmp.join("state");
    let s = state.to_string_lossy();
    if s.contains('\'') {
        return Err(BuildError::Other(format!("unusable path {s}")));
    }
    qmp.execute("migrate", json!({"uri": format!("exec:cat > '{s}'")}))
        .map_err(qerr)?;
    let t = Instant::now();
    loop {
        let st = qmp
            .execute("query-migrate", serde_json::Value::Null)
            .map_err(qerr)?;
        match st["status"].as_str() {
            Some("completed") => break,
            Some("failed") | Some("cancelled") => {
                return Err(BuildError::Other(format!(
                    "template VM: migration {}: {}",
                    st["status"],
                    st["error-desc"].as_str().unwrap_or("")
                )))
            }
            _ => {}
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err(BuildError::Other(
                "template VM: saving took over 60 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = qmp.execute("quit", serde_json::Value::Null);
    let t = Instant::now();
    while matches!(q.try_wait(), Ok(None)) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Removes templates, build leftovers and failure markers not used for an hour.
fn prune(root: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == keep || name.starts_with(&format!("{keep}.")) {
            continue;
        }
        if crate::initramfs::unused_for(&e, MAX_AGE) {
            let p = e.path();
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Accel, Share};

    fn cfg(dir: &Path) -> VmConfig {
        VmConfig {
            qemu: "/bin/true".into(),
            extra_args: vec![],
            kernel: "/bin/true".into(),
            initrd: "/bin/true".into(),
            kernel_params: vec![],
            memory_mib: 256,
            vcpus: 1,
            accel: Accel::Tcg,
            rootfs: dir.join("rootfs"),
            virtiofs: None,
            channel: dir.join("agent.sock"),
            console_log: dir.join("console.log"),
            debug: false,
            cmdline_devices: true,
            shares: vec![Share {
                tag: "bind0".into(),
                path: dir.join("data"),
                readonly: false,
            }],
            template: true,
        }
    }

    #[test]
    fn key_ignores_per_container_paths_but_not_the_machine() {
        let a = cfg(Path::new("/run/a"));
        let b = cfg(Path::new("/srv/other/b"));
        let mut dbg = cfg(Path::new("/x"));
        dbg.debug = true;
        assert_eq!(key(&a), key(&b));
        assert_eq!(
            key(&a),
            key(&dbg),
            "debug travels in hello, not the template"
        );
        let mut mem = cfg(Path::new("/run/a"));
        mem.memory_mib = 512;
        assert_ne!(key(&a), key(&mem));
        let mut shares = cfg(Path::new("/run/a"));
        shares.shares.clear();
        assert_ne!(key(&a), key(&shares));
        let mut params = cfg(Path::new("/run/a"));
        params.kernel_params.push("panic=0".into());
        assert_ne!(key(&a), key(&params));
        let mut extra = cfg(Path::new("/run/a"));
        extra.extra_args.push("-device".into());
        assert_eq!(key(&extra), None);
        let mut vfs = cfg(Path::new("/run/a"));
        vfs.virtiofs = Some("/run/a/virtiofs.sock".into());
        assert_eq!(key(&vfs), None, "vhost-user-fs cannot migrate");
    }

    #[test]
    fn restore_args_map_the_template_privately_and_wait_for_incoming() {
        let c = cfg(Path::new("/run/a"));
        let a = vm_args(
            &c,
            Path::new("/t/memory"),
            false,
            Path::new("/run/a/qmp.sock"),
        );
        let joined = a.join(" ");
        assert!(joined
            .contains("memory-backend-file,id=skiff-mem,size=256M,mem-path=/t/memory,share=off"));
        assert!(joined.contains(",memory-backend=skiff-mem"));
        assert!(joined.ends_with("-incoming defer"));
        let b = vm_args(&c, Path::new("/t/memory"), true, Path::new("/q"));
        assert!(b.join(" ").contains("share=on"));
        assert!(!b.contains(&"-incoming".to_string()));
    }

    #[test]
    fn failure_markers_block_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let k = "k-test-failure";
        assert_eq!(lookup_in(tmp.path(), k).unwrap(), None);
        fs::create_dir_all(tmp.path().join(k)).unwrap();
        fs::write(tmp.path().join(k).join("state"), "x").unwrap();
        assert_eq!(lookup_in(tmp.path(), k).unwrap(), Some(tmp.path().join(k)));
        mark_failed_in(tmp.path(), k, "no migration here");
        let e = lookup_in(tmp.path(), k).unwrap_err();
        assert!(e.contains("no migration here"), "{e}");
    }
}

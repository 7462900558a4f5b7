//! `skiff completion`, `skiff check` and the hidden `skiff man`: the
//! commands about skiff itself and the host it runs on, in `skiff-tools`
//! (the runtime binary execs it for them, see [`crate::dispatch`]).
//!
//! Completions and man pages are generated from the clap definitions of the
//! whole command line (`skiff-tools`'s, a superset of the runtime's), so
//! they cannot drift from the flags the binaries accept.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

/// `skiff completion SHELL`.
#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// Shell to print the completion script for.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// `skiff man DIR` (hidden; `scripts/install.sh` runs it).
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write `skiff.8` and one `skiff-<command>.8` per subcommand to.
    pub dir: PathBuf,
}

/// `skiff check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Output format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

/// Prints the completion script of `shell` for the command line `cmd`.
pub fn completion(mut cmd: clap::Command, args: &CompletionArgs) -> anyhow::Result<i32> {
    use clap_complete::Shell;
    let shell = match args.shell.as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        _ => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "skiff", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("write to stdout"),
        _ => Ok(0),
    }
}

/// Writes `skiff.8` and a page per visible subcommand (and nested
/// subcommand: `skiff-image-pull.8`) of `cmd` into `args.dir`.
pub fn man(mut cmd: clap::Command, args: &ManArgs) -> anyhow::Result<i32> {
    fs::create_dir_all(&args.dir).with_context(|| format!("create {}", args.dir.display()))?;
    cmd.build();
    write_pages(&cmd, "skiff", &args.dir)?;
    Ok(0)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    // clap takes `'static` names without its `string` feature (kept off for
    // the runtime binary's size); a few leaked strings in a one-shot command.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let page = cmd
        .clone()
        .name(leak(name.to_owned()))
        .bin_name(name.replace('-', " "));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .section("8")
        .manual("skiff manual")
        .render(&mut out)
        .with_context(|| format!("render the man page of {name}"))?;
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// The outcome of one check.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Present and usable.
    Ok,
    /// Works, degraded (TCG instead of KVM, a fallback backend).
    Warn,
    /// Missing: some feature does not work.
    Missing,
}

/// One line of `skiff check`.
#[derive(Serialize, Debug)]
struct Check {
    name: &'static str,
    status: Status,
    /// What was found (or not).
    detail: String,
    /// What needs it: why a missing one matters.
    why: &'static str,
    /// How to get it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

/// The whole report of `skiff check --format json`.
#[derive(Serialize, Debug)]
struct Report {
    /// The VM accelerator `--isolation vm` would use: "kvm", "tcg", or
    /// null when it cannot be decided (no QEMU, kernel or agent).
    accel: Option<&'static str>,
    /// True when `--isolation vm` can start a VM here.
    vm_ready: bool,
    checks: Vec<Check>,
}

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    why: &'static str,
    fix: Option<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        why,
        fix: if status == Status::Ok { None } else { fix },
    }
}

/// `skiff check`: what this host supports; exits 0 when the namespace
/// runtime works (VM isolation missing is reported, not an error).
pub fn check_host(args: &CheckArgs) -> anyhow::Result<i32> {
    let mut checks = vec![cgroups(), user_namespaces(), seccomp()];
    let qemu =
        find_in_path(&std::env::var("SKIFF_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()));
    checks.push(check(
        "qemu",
        if qemu.is_some() {
            Status::Ok
        } else {
            Status::Missing
        },
        qemu.as_ref()
            .map(|q| q.display().to_string())
            .unwrap_or_else(|| "qemu-system-x86_64 not found ($SKIFF_QEMU, PATH)".into()),
        "--isolation vm runs each container in a QEMU microvm",
        Some("apt-get install qemu-system-x86".into()),
    ));
    let (kernel_check, kernel) = guest_kernel();
    checks.push(kernel_check);
    let agent = skiff_vm::initramfs::find_agent();
    checks.push(check(
        "agent",
        if agent.is_ok() {
            Status::Ok
        } else {
            Status::Missing
        },
        match &agent {
            Ok(p) => p.display().to_string(),
            Err(_) => {
                "no static skiff-agent (next to skiff, ../libexec/skiff/, $SKIFF_AGENT)".into()
            }
        },
        "the VM's /init: it builds the container inside the guest",
        Some("scripts/build.sh (target/dist/skiff-agent), then scripts/install.sh".into()),
    ));
    let accel = accel(qemu.as_deref(), kernel.as_ref(), agent.as_ref().ok());
    checks.push(accel.0);
    checks.push(vsock());
    checks.push(virtiofs());
    let vm_ready = qemu.is_some() && kernel.is_some() && agent.is_ok();
    let runtime_ok = checks
        .iter()
        .filter(|c| ["cgroups", "seccomp"].contains(&c.name))
        .all(|c| c.status != Status::Missing);
    let report = Report {
        accel: accel.1,
        vm_ready,
        checks,
    };
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if runtime_ok { 0 } else { 1 })
}

fn print_text(report: &Report) {
    for c in &report.checks {
        let tag = match c.status {
            Status::Ok => "ok     ",
            Status::Warn => "warn   ",
            Status::Missing => "MISSING",
        };
        println!("{tag} {:<14} {}", c.name, c.detail);
        if c.status != Status::Ok {
            println!("        {:<14} needed for: {}", "", c.why);
            if let Some(fix) = &c.fix {
                println!("        {:<14} fix: {fix}", "");
            }
        }
    }
    println!(
        "namespace isolation: {}; vm isolation: {}",
        if report
            .checks
            .iter()
            .any(|c| ["cgroups", "seccomp"].contains(&c.name) && c.status == Status::Missing)
        {
            "NOT ready"
        } else {
            "ready"
        },
        match (report.vm_ready, report.accel) {
            (true, Some(a)) => format!("ready ({a})"),
            (true, None) => "ready".to_owned(),
            (false, _) => "NOT ready (see MISSING above)".to_owned(),
        }
    );
}

fn cgroups() -> Check {
    use skiff_cgroups::Layout;
    let why = "resource limits (memory, cpu, pids) and stats of every container";
    match skiff_cgroups::detect_layout() {
        Ok(l) => check(
            "cgroups",
            Status::Ok,
            match l {
                Layout::V1 => "cgroup v1",
                Layout::V2 => "cgroup v2 (unified)",
                Layout::Hybrid => "hybrid (cgroup v1 controllers + cgroup2)",
            },
            why,
            None,
        ),
        Err(e) => check(
            "cgroups",
            Status::Missing,
            format!("no cgroup hierarchy mounted: {e}"),
            why,
            Some("mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)".into()),
        ),
    }
}

fn user_namespaces() -> Check {
    let why = "--rootless containers and linux.uidMappings (user namespaces)";
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let present = Path::new("/proc/self/ns/user").exists();
    match (present, max) {
        (true, Some(n)) if n > 0 => check(
            "userns",
            Status::Ok,
            format!("user namespaces (max {n})"),
            why,
            None,
        ),
        _ => check(
            "userns",
            Status::Missing,
            "user namespaces disabled (CONFIG_USER_NS or user.max_user_namespaces=0)",
            why,
            Some("sysctl -w user.max_user_namespaces=15000".into()),
        ),
    }
}

fn seccomp() -> Check {
    let why = "the syscall filters of config.json (linux.seccomp; docker's default profile)";
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let actions = fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) && !actions.trim().is_empty() {
        check(
            "seccomp",
            Status::Ok,
            format!("seccomp filters ({})", actions.trim()),
            why,
            None,
        )
    } else {
        check(
            "seccomp",
            Status::Missing,
            "the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)",
            why,
            Some("a kernel built with CONFIG_SECCOMP_FILTER=y (Debian's has it)".into()),
        )
    }
}

/// The guest kernel, prepared (extracted) as `--isolation vm` would.
fn guest_kernel() -> (Check, Option<skiff_vm::kernel::Kernel>) {
    let why = "--isolation vm boots it (the host's own kernel package works)";
    let fix = Some("apt-get install linux-image-amd64 (or set $SKIFF_VM_KERNEL)".to_owned());
    let path = match skiff_vm::kernel::default_kernel() {
        Ok(p) => p,
        Err(e) => {
            return (
                check("kernel", Status::Missing, e.to_string(), why, fix),
                None,
            )
        }
    };
    match skiff_vm::kernel::prepare(&path) {
        Ok(k) => (
            check("kernel", Status::Ok, path.display().to_string(), why, None),
            Some(k),
        ),
        Err(e) => (
            check(
                "kernel",
                Status::Missing,
                format!("{}: {e}", path.display()),
                why,
                fix,
            ),
            None,
        ),
    }
}

/// KVM or TCG, with the VM crate's own probe (which boots the agent under
/// KVM once per boot and caches the answer) when everything is there.
fn accel(
    qemu: Option<&Path>,
    kernel: Option<&skiff_vm::kernel::Kernel>,
    agent: Option<&PathBuf>,
) -> (Check, Option<&'static str>) {
    use skiff_vm::qemu::Accel;
    let why = "VM containers run at native speed under KVM; under TCG (emulation) a first \
               start takes tens of seconds and CPU-bound work is 10-50x slower";
    let fix = Some(
        "a host with hardware virtualisation (nested virtualisation in a VM) and access to \
         /dev/kvm"
            .to_owned(),
    );
    let kvm_dev = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let (Some(qemu), Some(kernel), Some(agent)) = (qemu, kernel, agent) else {
        let detail = if kvm_dev {
            "/dev/kvm opens; whether KVM can boot a guest is probed once QEMU, a kernel and \
             the agent are there"
        } else {
            "/dev/kvm cannot be opened: VMs would run under TCG (emulation)"
        };
        let accel = (!kvm_dev).then_some("tcg");
        return (check("kvm", Status::Warn, detail, why, fix), accel);
    };
    let probed = skiff_vm::initramfs::build(agent, kernel.modules.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|initrd| Ok(skiff_vm::qemu::choose_accel(qemu, kernel, &initrd)?));
    match probed {
        Ok(Accel::Kvm) => (
            check("kvm", Status::Ok, "KVM boots guests", why, None),
            Some("kvm"),
        ),
        Ok(Accel::Tcg) => {
            let detail = match std::env::var("SKIFF_VM_ACCEL") {
                Ok(v) if v == "tcg" => "TCG (emulation): $SKIFF_VM_ACCEL=tcg".to_owned(),
                _ if kvm_dev => {
                    "TCG (emulation): /dev/kvm opens but a probe guest did not boot under KVM"
                        .to_owned()
                }
                _ => "TCG (emulation): /dev/kvm cannot be opened".to_owned(),
            };
            (check("kvm", Status::Warn, detail, why, fix), Some("tcg"))
        }
        Err(e) => (
            check(
                "kvm",
                Status::Warn,
                format!("KVM probe failed: {e:#}"),
                why,
                fix,
            ),
            None,
        ),
    }
}

fn vsock() -> Check {
    let why = "the optional vsock agent channel (run.skiff.vm.channel=vsock); \
               virtio-serial, the default, needs nothing";
    match skiff_vm::channel::vsock::choose() {
        Ok(skiff_vm::channel::vsock::Backend::Kernel) => {
            check("vsock", Status::Ok, "/dev/vhost-vsock", why, None)
        }
        Ok(skiff_vm::channel::vsock::Backend::VhostUser(p)) => check(
            "vsock",
            Status::Ok,
            format!("vhost-user backend {}", p.display()),
            why,
            None,
        ),
        Err(e) => check(
            "vsock",
            Status::Warn,
            e,
            why,
            Some(
                "modprobe vhost_vsock, or cargo install --locked vhost-device-vsock --version 0.3.0"
                    .into(),
            ),
        ),
    }
}

fn virtiofs() -> Check {
    let why = "the optional virtio-fs rootfs (run.skiff.vm.rootfs=virtiofs); 9p, the \
               default, needs nothing";
    let found = std::env::var_os("SKIFF_VIRTIOFSD")
        .map(PathBuf::from)
        .or_else(|| {
            let d = PathBuf::from("/usr/lib/qemu/virtiofsd");
            d.exists().then_some(d)
        })
        .or_else(|| find_in_path("virtiofsd"));
    match found {
        Some(p) => check("virtiofs", Status::Ok, p.display().to_string(), why, None),
        None => check(
            "virtiofs",
            Status::Warn,
            "virtiofsd not found (/usr/lib/qemu/virtiofsd, $SKIFF_VIRTIOFSD, PATH)",
            why,
            Some("apt-get install qemu-system-common (Debian 12 ships virtiofsd in it)".into()),
        ),
    }
}

/// `name` as is when it has a slash, else the first match on `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

//! runc-compatible runtime commands: create, start, run, state, kill, delete,
//! list, spec, features, exec, ps, events, pause, resume, update.
//!
//! Each command parses its flags and calls `skiff-runtime`.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use skiff_runtime::{CreateOptions, ExecOptions, Runtime};

use crate::Global;

/// How `run --image` is carried out: `skiff-tools` pulls and unpacks the
/// image; the runtime-only `skiff` execs `skiff-tools`.
pub type RunImage =
    fn(&Global, &str, Option<String>, Vec<String>, bool, ImageRunArgs) -> anyhow::Result<i32>;

/// `skiff --version` text (runc's format, with the runtime-spec version).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nspec: 1.3.0\nskiff: an OCI runtime in Rust"
);

/// Options shared by `create` and `run`.
#[derive(clap::Args, Debug)]
pub struct CreateFlags {
    /// Path to the bundle directory (default: current directory).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket that receives the console pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process (MS_MOVE + chroot instead).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
}

/// The runtime subcommands (runc's command line). Every variant with
/// arguments wraps an `Args` struct, so that [`fast_subcommand`] can build
/// the parser of one subcommand alone.
#[derive(clap::Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Create a container (its process waits for `start`).
    Create(CreateCmd),
    /// Start the user process of a created container.
    Start(IdArg),
    /// Create and start a container (or run an image with --image).
    Run(RunCmd),
    /// Print the state of a container as JSON.
    State(IdArg),
    /// Send a signal to the container's init (or all its processes).
    Kill(KillCmd),
    /// Delete a container and its resources.
    Delete(DeleteCmd),
    /// List containers.
    #[command(alias = "ls")]
    List(ListCmd),
    /// Write a default config.json.
    Spec(SpecCmd),
    /// Print the runtime's features as JSON (runtime-spec features.md).
    Features,
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps(PsCmd),
    /// Print container events: resource stats and OOM notifications.
    Events(EventsCmd),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Update the resource limits of a container.
    Update(UpdateArgs),
    /// Checkpointing is not supported.
    #[command(hide = true)]
    Checkpoint(CheckpointCmd),
}

/// The parser of the subcommand `name` alone (its arguments only; no help
/// text), or `None` for a name that is not a runtime subcommand. Building
/// every subcommand's parser was most of clap's work, heap and stack at
/// each container command; `tests` check this against the full parser.
pub fn fast_subcommand(name: &str) -> Option<clap::Command> {
    use clap::{Args, Command};
    Some(match name {
        "create" => CreateCmd::augment_args(Command::new("create")),
        "start" => IdArg::augment_args(Command::new("start")),
        "run" => RunCmd::augment_args(Command::new("run")),
        "state" => IdArg::augment_args(Command::new("state")),
        "kill" => KillCmd::augment_args(Command::new("kill")),
        "delete" => DeleteCmd::augment_args(Command::new("delete")),
        "list" | "ls" => ListCmd::augment_args(Command::new("list").alias("ls")),
        "spec" => SpecCmd::augment_args(Command::new("spec")),
        "features" => Command::new("features"),
        "exec" => ExecArgs::augment_args(Command::new("exec")),
        "ps" => PsCmd::augment_args(Command::new("ps")),
        "events" => EventsCmd::augment_args(Command::new("events")),
        "pause" => IdArg::augment_args(Command::new("pause")),
        "resume" => IdArg::augment_args(Command::new("resume")),
        "update" => UpdateArgs::augment_args(Command::new("update")),
        "checkpoint" => CheckpointCmd::augment_args(Command::new("checkpoint").hide(true)),
        _ => return None,
    })
}

/// A container id, the only argument of `start`, `state`, `pause`, `resume`.
#[derive(clap::Args, Debug)]
pub struct IdArg {
    /// Container id.
    pub id: String,
}

/// `create`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CreateCmd {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Container id.
    pub id: String,
}

/// `run`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RunCmd {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Detach from the container's process.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it exits (bundle mode).
    #[arg(long)]
    pub keep: bool,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
    /// Run this image instead of a bundle (pulled when missing).
    #[arg(long)]
    pub image: Option<String>,
    #[command(flatten)]
    pub image_args: ImageRunArgs,
    /// Container id (generated for --image when omitted).
    pub id: Option<String>,
    /// Command for --image (after `--`).
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

/// `kill`'s arguments.
#[derive(clap::Args, Debug)]
pub struct KillCmd {
    /// Send to every process of the container.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name or number (default SIGTERM).
    pub signal: Option<String>,
}

/// `delete`'s arguments.
#[derive(clap::Args, Debug)]
pub struct DeleteCmd {
    /// Kill the container first if it is still running.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

/// `list`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ListCmd {
    /// Output format: table or json.
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print only container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `spec`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SpecCmd {
    /// Path to the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
}

/// `ps`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PsCmd {
    /// Output format: table or json.
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Container id.
    pub id: String,
    /// Options passed to ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `events`'s arguments.
#[derive(clap::Args, Debug)]
pub struct EventsCmd {
    /// Print stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Stats interval (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id.
    pub id: String,
}

/// `checkpoint`'s arguments (refused).
#[derive(clap::Args, Debug)]
pub struct CheckpointCmd {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// `skiff exec` options (runc's).
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Current working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set environment variables (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// User as uid[:gid].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Path to a process.json (overrides args and the flags above).
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Detach from the process.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// SELinux label for the process.
    #[arg(long)]
    pub process_label: Option<String>,
    /// AppArmor profile for the process.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability.
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    /// Pass N extra fds.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Sub-cgroup to run in.
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Allow exec in a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `skiff update` options (runc's).
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Read linux.resources JSON from a file ("-" for stdin).
    #[arg(short = 'r', long)]
    pub resources: Option<String>,
    /// Block IO weight, 10-1000 (linux.resources.blockIO.weight).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight against other cgroups).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// Real-time scheduling period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Real-time runtime in microseconds per period.
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use ("0-3,6").
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use ("0-1").
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit in bytes, with an optional k/m/g suffix (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit in bytes, with an optional k/m/g suffix.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes, with an optional k/m/g suffix (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of processes (-1 or 0: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    #[arg(long, hide = true)]
    pub l3_cache_schema: Option<String>,
    #[arg(long, hide = true)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
}

/// The state root: `--root`, except that a non-root caller left at the
/// default `/run/skiff` gets `$XDG_RUNTIME_DIR/skiff` (as runc uses
/// `$XDG_RUNTIME_DIR/runc`).
fn state_root(g: &Global, euid: u32) -> PathBuf {
    if euid != 0 && g.root == Path::new("/run/skiff") && std::env::var_os("SKIFF_ROOT").is_none() {
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
            return Path::new(&xdg).join("skiff");
        }
    }
    g.root.clone()
}

fn runtime(g: &Global) -> anyhow::Result<Runtime> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut rt = Runtime::new(state_root(g, euid));
    rt.systemd_cgroup = g.systemd_cgroup;
    rt.rootless = match g.rootless.as_deref() {
        Some("true") => true,
        Some("false") => false,
        None | Some("auto") => euid != 0,
        Some(v) => bail!("--rootless: \"{v}\" is not true, false or auto"),
    };
    rt.isolation = g.isolation.clone();
    rt.debug = g.debug;
    Ok(rt)
}

/// Runs one runtime command; returns the process exit code.
pub fn main(g: &Global, cmd: RuntimeCommand, run_image: RunImage) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    match cmd {
        RuntimeCommand::Create(CreateCmd { flags, id }) => {
            let opts = create_opts(&flags, &id, None);
            rt.create(&opts)?;
            Ok(0)
        }
        RuntimeCommand::Start(IdArg { id }) => {
            let mut c = rt.load(&id)?;
            if let Err(e) = c.start(&rt) {
                if matches!(e, skiff_runtime::Error::Poststart(_)) {
                    // Lifecycle step 12: destroy, with the lock released.
                    drop(c);
                    if let Ok(c) = rt.load(&id) {
                        let _ = c.delete(&rt, true);
                    }
                }
                return Err(e.into());
            }
            Ok(0)
        }
        RuntimeCommand::Run(RunCmd {
            flags,
            detach,
            keep,
            no_subreaper: _,
            image,
            image_args,
            id,
            cmd,
        }) => {
            if let Some(image) = image {
                return run_image(g, &image, id, cmd, detach, image_args);
            }
            let id = id.context("run: a container id is required")?;
            if !cmd.is_empty() {
                bail!("run: a command after `--` needs --image (a bundle's command is in its config.json)");
            }
            run(g, &rt, &flags, &id, detach, keep)
        }
        RuntimeCommand::State(IdArg { id }) => {
            let c = rt.peek(&id)?;
            println!("{}", serde_json::to_string_pretty(&c.state(&rt))?);
            Ok(0)
        }
        RuntimeCommand::Kill(KillCmd { all, id, signal }) => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            let c = rt.load(&id)?;
            c.kill(&rt, sig, all)?;
            Ok(0)
        }
        RuntimeCommand::Delete(DeleteCmd { force, id }) => delete(&rt, &id, force),
        RuntimeCommand::List(ListCmd { format, quiet }) => list(&rt, &format, quiet),
        RuntimeCommand::Spec(SpecCmd { bundle }) => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            // SAFETY: getuid/getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let spec = if g.rootless.as_deref() == Some("true") {
                skiff_runtime::spec::rootless_spec(uid, gid)
            } else {
                skiff_runtime::spec::default_spec()
            };
            std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
        RuntimeCommand::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&skiff_runtime::features::features())?
            );
            Ok(0)
        }
        RuntimeCommand::Exec(a) => exec(&rt, a),
        RuntimeCommand::Ps(PsCmd {
            format,
            id,
            ps_args,
        }) => ps(&rt, &format, &id, ps_args),
        RuntimeCommand::Events(EventsCmd {
            stats,
            interval,
            id,
        }) => events(&rt, stats, &interval, &id),
        RuntimeCommand::Pause(IdArg { id }) => {
            rt.load(&id)?.pause(&rt)?;
            Ok(0)
        }
        RuntimeCommand::Resume(IdArg { id }) => {
            rt.load(&id)?.resume(&rt)?;
            Ok(0)
        }
        RuntimeCommand::Update(a) => update(&rt, a),
        RuntimeCommand::Checkpoint(_) => bail!("checkpoint/restore is not supported by skiff"),
    }
}

fn create_opts<'a>(f: &'a CreateFlags, id: &'a str, conn: Option<OwnedFd>) -> CreateOptions<'a> {
    CreateOptions {
        id,
        bundle: &f.bundle,
        console_socket: f.console_socket.as_deref(),
        pid_file: f.pid_file.as_deref(),
        no_pivot: f.no_pivot,
        no_new_keyring: f.no_new_keyring,
        preserve_fds: f.preserve_fds,
        console_conn: conn,
    }
}

/// A socketpair whose far end receives the pty master: used when a terminal
/// is wanted in the foreground without --console-socket.
fn console_pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair().context("console socketpair")?;
    Ok((OwnedFd::from(a), OwnedFd::from(b)))
}

/// A foreground `run` of a `terminal: true` process relays the caller's
/// terminal: without one (no tty on stdio, no controlling terminal) fail
/// before creating anything, with runc's words, instead of starting an
/// interactive process no one can reach.
fn host_terminal() -> anyhow::Result<()> {
    // SAFETY: isatty on the standard fds only reads their state.
    if [2, 1, 0].iter().any(|&fd| unsafe { libc::isatty(fd) } == 1) {
        return Ok(());
    }
    std::fs::File::open("/dev/tty").context(
        "open /dev/tty (process.terminal is true but there is no terminal: \
         give --console-socket or set terminal to false)",
    )?;
    Ok(())
}

/// Blocks the signals `wait_forwarding` forwards (it blocks the same set
/// again), so that one arriving between start and the wait stays pending
/// and is forwarded instead of killing the runtime with the container left
/// running. The container's processes reset their mask.
fn block_forwarded_signals() {
    let mask = skiff_runtime::container::forwarded_signals();
    let _ = mask.thread_block();
}

fn run(
    g: &Global,
    rt: &Runtime,
    flags: &CreateFlags,
    id: &str,
    detach: bool,
    keep: bool,
) -> anyhow::Result<i32> {
    let _ = g;
    // config.json is read and parsed once: `create_with` takes the result.
    let (bundle, spec) = Runtime::load_bundle(&flags.bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let proxy = !detach && flags.console_socket.is_none() && terminal;
    if proxy {
        host_terminal()?;
    }
    let (ours, theirs) = if proxy {
        let (a, b) = console_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    if !detach {
        skiff_runtime::container::set_subreaper();
    }
    let mut c = rt.create_with(&create_opts(flags, id, theirs), bundle, spec)?;
    let master = match &ours {
        Some(sock) => Some(skiff_runtime::linux::console::recv_fd(
            std::os::fd::AsRawFd::as_raw_fd(sock),
        )?),
        None => None,
    };
    if !detach {
        block_forwarded_signals();
    }
    if let Err(e) = c.start(rt) {
        let _ = c.delete(rt, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let pid = c.pid();
    drop(c);
    let code = skiff_runtime::container::wait_forwarding(pid, master)?;
    if !keep {
        if let Ok(c) = rt.load(id) {
            c.delete(rt, true)?;
        }
    }
    Ok(code)
}

/// Runs the bundle at `bundle` as container `id` (what `skiff run -b BUNDLE ID`
/// does): used by `run --image` once the bundle is prepared. With `keep`, a
/// foreground container stays (stopped) until `skiff delete`. Returns the
/// container's exit code (0 when detached).
pub fn run_bundle(
    global: &Global,
    bundle: &std::path::Path,
    id: &str,
    detach: bool,
    keep: bool,
    console_socket: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let rt = runtime(global)?;
    let flags = CreateFlags {
        bundle: bundle.to_path_buf(),
        console_socket,
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
    };
    run(global, &rt, &flags, id, detach, keep)
}

fn delete(rt: &Runtime, id: &str, force: bool) -> anyhow::Result<i32> {
    match rt.load(id) {
        Ok(c) => {
            c.delete(rt, force)?;
            Ok(0)
        }
        Err(skiff_runtime::Error::NotFound(_)) => {
            // A directory without state (an aborted create) is removed.
            let dir = rt.root().dir(id);
            if skiff_runtime::config::validate_id(id).is_ok()
                && dir.is_dir()
                && !dir.join("state.json").exists()
            {
                std::fs::remove_dir_all(&dir).ok();
                return Ok(0);
            }
            if force {
                return Ok(0);
            }
            bail!("container \"{id}\" does not exist")
        }
        Err(e) => Err(e.into()),
    }
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let all = rt.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &all {
            writeln!(out, "{}", s["id"].as_str().unwrap_or(""))?;
        }
        return Ok(0);
    }
    if format == "json" {
        writeln!(out, "{}", serde_json::to_string(&all)?)?;
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|s| {
            let f = |k: &str| {
                s[k].as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| s[k].to_string())
            };
            [
                f("id"),
                f("pid"),
                f("status"),
                f("bundle"),
                f("created"),
                f("owner"),
            ]
        })
        .collect();
    let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
    let mut w = [0usize; 6];
    for (i, h) in head.iter().enumerate() {
        w[i] = rows
            .iter()
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
            .max(h.len());
    }
    let line = |cells: &[&str]| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                l.push_str(&format!("{:width$}   ", c, width = w[i]));
            } else {
                l.push_str(c);
            }
        }
        l
    };
    writeln!(out, "{}", line(&head))?;
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    Ok(0)
}

/// Parses a signal name (`KILL`, `SIGKILL`) or number.
pub fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if n > 0 && n <= libc::SIGRTMAX() {
            return Ok(n);
        }
        bail!("invalid signal \"{s}\"");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if off >= 0 && libc::SIGRTMIN() + off <= libc::SIGRTMAX() {
            return Ok(libc::SIGRTMIN() + off);
        }
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('-').parse().unwrap_or(-1)
        };
        if off >= 0 && libc::SIGRTMAX() - off >= libc::SIGRTMIN() {
            return Ok(libc::SIGRTMAX() - off);
        }
    }
    let full = format!("SIG{name}");
    match full.parse::<nix::sys::signal::Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("invalid signal \"{s}\""),
    }
}

fn exec(rt: &Runtime, a: ExecArgs) -> anyhow::Result<i32> {
    let c = rt.load(&a.id)?;
    if c.status(rt) == skiff_runtime::state::Status::Paused {
        // runc's --ignore-paused lets the process wait in the frozen cgroup
        // until `resume`; here `exec` holds the container's lock until the
        // process is set up, so `resume` would wait for it: refuse instead.
        bail!(
            "cannot exec in a paused container: resume it first{}",
            if a.ignore_paused {
                " (--ignore-paused is not supported)"
            } else {
                ""
            }
        );
    }
    let mut process: oci_spec::runtime::Process = match &a.process {
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("{}: invalid process JSON", p.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec: a command is required");
            }
            let mut p = c
                .saved
                .spec
                .process()
                .clone()
                .context("container has no process")?;
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            p.set_console_size(None);
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.clone());
            }
            let mut env = p.env().clone().unwrap_or_default();
            for e in &a.env {
                let key = e.split('=').next().unwrap_or("");
                env.retain(|x| x.split('=').next() != Some(key));
                env.push(e.clone());
            }
            p.set_env(Some(env));
            if let Some(u) = &a.user {
                // As runc: uid[:gid], numeric; without a gid the process
                // keeps the container's.
                let bad = || format!("--user \"{u}\": expected a numeric uid[:gid]");
                let (uid, gid) = match u.split_once(':') {
                    Some((u, g)) => (u.parse(), g.parse()),
                    None => (u.parse(), Ok(p.user().gid())),
                };
                let (uid, gid) = (uid.with_context(bad)?, gid.with_context(bad)?);
                let user = p.user_mut();
                user.set_uid(uid);
                user.set_gid(gid);
            }
            if !a.additional_gids.is_empty() {
                p.user_mut()
                    .set_additional_gids(Some(a.additional_gids.clone()));
            }
            if a.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if let Some(ap) = &a.apparmor {
                p.set_apparmor_profile(Some(ap.clone()));
            }
            if let Some(l) = &a.process_label {
                p.set_selinux_label(Some(l.clone()));
            }
            if !a.cap.is_empty() {
                let mut caps = p.capabilities().clone().unwrap_or_default();
                let add = |set: &Option<oci_spec::runtime::Capabilities>| -> anyhow::Result<oci_spec::runtime::Capabilities> {
                    let mut s = set.clone().unwrap_or_default();
                    for c in &a.cap {
                        let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::String(c.clone()))
                            .map_err(|_| anyhow::anyhow!("--cap: unknown capability \"{c}\""))?;
                        s.insert(cap);
                    }
                    Ok(s)
                };
                caps.set_bounding(Some(add(caps.bounding())?));
                caps.set_effective(Some(add(caps.effective())?));
                caps.set_permitted(Some(add(caps.permitted())?));
                p.set_capabilities(Some(caps));
            }
            p
        }
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("exec: process.args must name a program");
    }
    if c.is_vm() {
        return Ok(c.exec_vm(&process, a.console_socket.as_deref(), a.detach)?);
    }
    let proxy = !a.detach && a.console_socket.is_none() && process.terminal().unwrap_or(false);
    // The pty master comes back over a socketpair: no path on disk that
    // another user could create first or swap, nothing left behind.
    let (ours, theirs) = if proxy {
        let (a, b) = console_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    if !a.detach {
        skiff_runtime::container::set_subreaper();
        block_forwarded_signals();
    }
    process.set_cwd(process.cwd().clone());
    let opts = ExecOptions {
        console_socket: a.console_socket.as_deref(),
        pid_file: a.pid_file.as_deref(),
        preserve_fds: a.preserve_fds,
        cgroup: a.cgroup.as_deref(),
        console_conn: theirs.as_ref().map(std::os::fd::AsFd::as_fd),
    };
    let res = c.exec(rt, &process, &opts);
    drop(theirs);
    let pid = res?;
    let master = match &ours {
        Some(sock) => Some(skiff_runtime::linux::console::recv_fd(
            std::os::fd::AsRawFd::as_raw_fd(sock),
        )?),
        None => None,
    };
    drop(c);
    if a.detach {
        return Ok(0);
    }
    Ok(skiff_runtime::container::wait_forwarding(pid, master)?)
}

fn ps(rt: &Runtime, format: &str, id: &str, ps_args: Vec<String>) -> anyhow::Result<i32> {
    let c = rt.load(id)?;
    let pids = c.pids(rt)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    if c.is_vm() {
        // Guest pids: the host's ps knows nothing of them.
        println!("PID");
        for p in pids {
            println!("{p}");
        }
        return Ok(0);
    }
    let args = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid duration \"{s}\""))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("invalid duration \"{s}\""),
    };
    if secs <= 0.0 {
        bail!("duration must be positive: \"{s}\"");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn events(rt: &Runtime, stats: bool, interval: &str, id: &str) -> anyhow::Result<i32> {
    let every = parse_duration(interval)?;
    let stat_event = |c: &skiff_runtime::Container| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({"type": "stats", "id": id, "data": c.stats(rt)?}))
    };
    if stats {
        let c = rt.load(id)?;
        println!("{}", serde_json::to_string(&stat_event(&c)?)?);
        return Ok(0);
    }
    let mut ooms = rt.load(id)?.oom_kills(rt).unwrap_or(0);
    let mut next = std::time::Instant::now();
    loop {
        let c = rt.load(id)?;
        if c.status(rt) == skiff_runtime::Status::Stopped {
            return Ok(0);
        }
        let now_ooms = c.oom_kills(rt).unwrap_or(ooms);
        let mut out = std::io::stdout().lock();
        if now_ooms > ooms {
            ooms = now_ooms;
            writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}))?;
        }
        if std::time::Instant::now() >= next {
            writeln!(out, "{}", serde_json::to_string(&stat_event(&c)?)?)?;
            next += every;
        }
        out.flush()?;
        drop(c);
        std::thread::sleep(std::time::Duration::from_millis(200).min(every));
    }
}

/// Parses sizes like 100, 64k, 100M, 1g (as runc's RAMInBytes); -1 = unlimited.
fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size \"{s}\""))?;
    Ok((n * mult as f64) as i64)
}

fn update(rt: &Runtime, a: UpdateArgs) -> anyhow::Result<i32> {
    let mut c = rt.load(&a.id)?;
    let mut v: serde_json::Value = match a.resources.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            serde_json::from_str(&s).context("--resources -: invalid JSON")?
        }
        Some(f) => {
            let d = std::fs::read(f).with_context(|| format!("reading {f}"))?;
            serde_json::from_slice(&d).with_context(|| format!("{f}: invalid JSON"))?
        }
        None => serde_json::json!({}),
    };
    let obj = v
        .as_object_mut()
        .context("resources must be a JSON object")?;
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
        s[key] = val;
    };
    if let Some(x) = a.blkio_weight {
        set("blockIO", "weight", x.into());
    }
    if let Some(x) = a.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = a.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = a.cpu_share {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", x.into());
    }
    if let Some(x) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", x.into());
    }
    if let Some(x) = &a.cpuset_cpus {
        set("cpu", "cpus", x.clone().into());
    }
    if let Some(x) = &a.cpuset_mems {
        set("cpu", "mems", x.clone().into());
    }
    if let Some(x) = &a.memory {
        set("memory", "limit", parse_bytes(x)?.into());
    }
    if let Some(x) = &a.memory_reservation {
        set("memory", "reservation", parse_bytes(x)?.into());
    }
    if let Some(x) = &a.memory_swap {
        set("memory", "swap", parse_bytes(x)?.into());
    }
    if let Some(x) = a.pids_limit {
        set("pids", "limit", x.into());
    }
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(v).context("resources: invalid linux.resources")?;
    c.update(rt, &res)?;
    Ok(0)
}

/// The error and its causes joined with ": ", leaving out a cause whose text
/// the message already holds (library errors often print their source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Reports an error the way runc does: to `--log` (text or JSON lines) and stderr.
pub fn log_error(g: &Global, err: &anyhow::Error) {
    let msg = error_chain(err);
    let json = || {
        serde_json::json!({
            "level": "error",
            "msg": msg,
            "time": skiff_runtime::state::now_rfc3339(),
        })
        .to_string()
    };
    if g.log.is_none() && g.log_format == "json" {
        // runc: without --log the log goes to stderr, in the log format.
        eprintln!("{}", json());
        return;
    }
    if let Some(path) = &g.log {
        let line = if g.log_format == "json" {
            json()
        } else {
            format!(
                "time=\"{}\" level=error msg={:?}",
                skiff_runtime::state::now_rfc3339(),
                msg
            )
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    eprintln!("skiff: {msg}");
}

/// Extra options of `skiff run --image REF` (flattened into `run`'s arguments).
#[derive(clap::Args, Debug, Default)]
pub struct ImageRunArgs {
    /// Delete the container's bundle and rootfs when it exits.
    #[arg(long, requires = "image")]
    pub rm: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long, requires = "image")]
    pub tty: bool,
    /// Keep stdin open (accepted with -t; stdin is always passed through).
    #[arg(short = 'i', long, requires = "image")]
    pub interactive: bool,
    /// Set an environment variable (K=V, or K to copy ours).
    #[arg(short = 'e', long = "env", requires = "image")]
    pub env: Vec<String>,
    /// Bind mount SRC:DST[:ro].
    #[arg(short = 'v', long = "volume", requires = "image")]
    pub volume: Vec<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short = 'm', long, requires = "image")]
    pub memory: Option<String>,
    /// User (name, uid, uid:gid, name:group).
    #[arg(short = 'u', long, requires = "image")]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long, requires = "image")]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint.
    #[arg(long, requires = "image")]
    pub entrypoint: Option<String>,
    /// Container hostname (default: the container name).
    #[arg(long, requires = "image")]
    pub hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long, requires = "image")]
    pub read_only: bool,
    /// Platform to pull (os/arch[/variant]).
    #[arg(long, requires = "image")]
    pub platform: Option<String>,
    /// Allow plain HTTP to the image's registry.
    #[arg(long, requires = "image")]
    pub insecure: bool,
    /// Pull policy: missing (default), always or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    #[command(flatten)]
    pub net: Box<crate::run_flags::NetFlags>,
    #[command(flatten)]
    pub security: Box<crate::run_flags::SecurityFlags>,
}

#[cfg(test)]
mod tests {
    use super::{fast_subcommand, RuntimeCommand};
    use clap::{Command, Subcommand};

    /// What a parser does with its arguments, help text aside.
    fn shape(cmd: &Command) -> Vec<String> {
        let mut out: Vec<String> = cmd
            .get_arguments()
            .map(|a| {
                format!(
                    "{} short={:?} long={:?} pos={} idx={:?} n={:?} action={:?} req={} hide={} last={} trail={} hyph={} def={:?} vals={:?}",
                    a.get_id(),
                    a.get_short(),
                    a.get_long(),
                    a.is_positional(),
                    a.get_index(),
                    a.get_num_args(),
                    a.get_action(),
                    a.is_required_set(),
                    a.is_hide_set(),
                    a.is_last_set(),
                    a.is_trailing_var_arg_set(),
                    a.is_allow_hyphen_values_set(),
                    a.get_default_values(),
                    a.get_possible_values().iter().map(|v| v.get_name().to_string()).collect::<Vec<_>>(),
                )
            })
            .collect();
        out.push(format!(
            "aliases={:?} hide={}",
            cmd.get_all_aliases().collect::<Vec<_>>(),
            cmd.is_hide_set()
        ));
        out.sort();
        out
    }

    /// The one-subcommand parsers of the fast path accept exactly what the
    /// full (derived) parser accepts, for every runtime subcommand.
    #[test]
    fn fast_subcommands_match_the_derived_parser() {
        let mut full = RuntimeCommand::augment_subcommands(Command::new("skiff"));
        full.build();
        let mut names = 0;
        for sub in full.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut fast = fast_subcommand(sub.get_name())
                .unwrap_or_else(|| panic!("no fast parser for {}", sub.get_name()));
            let mut wrapped = Command::new("skiff").subcommand(fast.clone());
            wrapped.build();
            fast = wrapped.find_subcommand(sub.get_name()).unwrap().clone();
            assert_eq!(shape(sub), shape(&fast), "subcommand {}", sub.get_name());
            for alias in sub.get_all_aliases() {
                assert!(fast_subcommand(alias).is_some(), "alias {alias}");
            }
            names += 1;
        }
        assert!(names >= 16, "{names} subcommands");
        assert!(fast_subcommand("image").is_none());
    }
}

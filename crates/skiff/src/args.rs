//! The arguments of the runc-compatible runtime commands (create, start,
//! run, state, kill, delete, list, spec, features, exec, ps, events, pause,
//! resume, update), shared by both executables (`skiff`, `skiff-tools`)
//! as youki's `liboci-cli` is. No behaviour here: [`crate::commands`] runs
//! them.

use std::path::PathBuf;

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
    /// Options shared with `run`.
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Container id.
    pub id: String,
}

/// `run`'s arguments.
#[derive(clap::Args, Debug)]
pub struct RunCmd {
    /// Options shared with `create`.
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
    /// Options that only apply with `--image`.
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
    /// Ignored: checkpoint/restore is not supported, the command always fails.
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
    /// Intel RDT/CAT L3 cache schema (accepted for runc compatibility).
    #[arg(long, hide = true)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT/MBA memory bandwidth schema (accepted for runc compatibility).
    #[arg(long, hide = true)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
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
    /// Networking of the container: `--network`, `-p`, `--dns`, `--add-host`.
    #[command(flatten)]
    pub net: Box<crate::run_flags::NetFlags>,
    /// Privileges of the container: `--privileged`, `--cap-add`, `--cap-drop`,
    /// `--security-opt`.
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

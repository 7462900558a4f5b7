//! The `skiff` command line as a library shared by the two executables:
//!
//! - `skiff` (`main.rs`): the OCI runtime (runc's command line). It is what
//!   containerd, podman and Kubernetes run for every container, so it links
//!   only the runtime: a small binary starts faster and keeps less resident.
//! - `skiff-tools` (`bin/skiff-tools.rs`): everything, including the image
//!   and registry commands. `skiff image ...`, `skiff registry ...` and
//!   `skiff run --image ...` exec it (see [`dispatch`]), so users still type
//!   one command.
//!
//! The `tools` feature (default) builds `skiff-tools` and its image and
//! registry dependencies; `--no-default-features` builds the runtime alone
//! (what `scripts/build.sh` links statically).
//!
//! No logic worth testing lives here: each command parses its flags and
//! calls `skiff-runtime`, `skiff-image` or `skiff-registry`.

pub mod dispatch;
#[cfg(feature = "tools")]
pub mod host_cmd;
#[cfg(feature = "tools")]
pub mod image_cmd;
#[cfg(feature = "tools")]
pub mod network_cmd;
#[cfg(feature = "tools")]
pub mod registry_cmd;
pub mod run_flags;
pub mod runtime_cmd;

use std::path::PathBuf;

/// Defines [`Global`] (flags accepted anywhere on the command line, as
/// clap's `global = true` args) and [`LeadingGlobal`] (the same flags,
/// accepted before the subcommand only, as runc takes them) from one list.
///
/// The two exist for speed: clap copies every `global` arg into every
/// subcommand when it builds the parser, which was 40% of the runtime's
/// heap at start (46 page faults on every container command). Callers such
/// as containerd and podman put global flags first, so the cheaper parser
/// is used unless a global flag follows the subcommand
/// ([`dispatch::globals_after_command`]).
macro_rules! global_flags {
    ($( $(#[doc = $doc:literal])* #[arg($($a:tt)*)] pub $f:ident: $t:ty, )*) => {
        /// Global options shared by every command (runc's global flags plus
        /// skiff's own), accepted before or after the subcommand.
        #[derive(clap::Args, Debug, Clone)]
        pub struct Global {
            $( $(#[doc = $doc])* #[arg(global = true, $($a)*)] pub $f: $t, )*
        }

        /// [`Global`]'s flags, accepted before the subcommand only.
        #[derive(clap::Args, Debug, Clone)]
        pub struct LeadingGlobal {
            $( $(#[doc = $doc])* #[arg($($a)*)] pub $f: $t, )*
        }

        impl From<LeadingGlobal> for Global {
            fn from(g: LeadingGlobal) -> Self {
                Global { $( $f: g.$f, )* }
            }
        }
    };
}

global_flags! {
    /// Root directory for container state (tmpfs recommended).
    #[arg(long, default_value = "/run/skiff", env = "SKIFF_ROOT")]
    pub root: PathBuf,
    /// Log file for errors and debug output (default: stderr).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (runc's JSON lines, read by containerd).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Enable debug output.
    #[arg(long)]
    pub debug: bool,
    /// Use systemd to manage cgroups.
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    /// Default isolation for containers without a `run.skiff.isolation`
    /// annotation: namespace (default) or vm.
    #[arg(long, env = "SKIFF_ISOLATION", value_parser = ["namespace", "vm"])]
    pub isolation: Option<String>,
    /// Directory for image content and snapshots.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_STORE")]
    pub store: PathBuf,
}

/// The command line of both executables: the global flags, `--version`,
/// and the executable's own subcommands `C`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "skiff",
    about = "skiff: OCI container runtime, images and registry",
    version = runtime_cmd::VERSION,
    disable_version_flag = true
)]
pub struct Cli<C: clap::Subcommand, G: clap::Args = Global> {
    /// Global flags.
    #[command(flatten)]
    pub global: G,
    /// Print version information.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// The command.
    #[command(subcommand)]
    pub command: C,
}

impl<C: clap::Subcommand> Cli<C> {
    /// Parses `argv` (with argv[0]; exits with clap's message and code on
    /// bad usage) into the global flags and the command, with the cheaper
    /// [`LeadingGlobal`] parser unless a global flag follows the subcommand.
    pub fn parse_argv(argv: &[std::ffi::OsString]) -> (Global, C) {
        if dispatch::globals_after_command(argv) {
            let cli = parse::<Cli<C, Global>>(argv);
            (cli.global, cli.command)
        } else {
            let cli = parse::<Cli<C, LeadingGlobal>>(argv);
            (cli.global.into(), cli.command)
        }
    }
}

/// The runtime's fast path: parses a runtime command with a parser of the
/// leading global flags and that one subcommand (see
/// [`runtime_cmd::fast_subcommand`]). `None` (use [`Cli::parse_argv`])
/// for help and version requests, global flags after the subcommand, and
/// names that are not runtime subcommands; usage errors exit as clap does.
pub fn parse_runtime_fast(
    argv: &[std::ffi::OsString],
) -> Option<(Global, runtime_cmd::RuntimeCommand)> {
    use clap::{Args, FromArgMatches};
    let help = |a: &std::ffi::OsString| ["-h", "--help", "-v", "--version"].iter().any(|h| a == h);
    if argv.iter().skip(1).any(help) || dispatch::globals_after_command(argv) {
        return None;
    }
    let name = argv.get(dispatch::subcommand_index(argv)?)?.to_str()?;
    let sub = runtime_cmd::fast_subcommand(name)?;
    let mut cmd = LeadingGlobal::augment_args(clap::Command::new("skiff"))
        .subcommand(sub)
        .subcommand_required(true);
    let mut matches = cmd
        .try_get_matches_from_mut(argv)
        .unwrap_or_else(|e| e.exit());
    let global = LeadingGlobal::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    let command = runtime_cmd::RuntimeCommand::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    std::mem::forget(matches);
    std::mem::forget(cmd);
    Some((global.into(), command))
}

/// Like `clap::Parser::parse_from`, but without freeing the parser
/// afterwards: the process is short-lived, and dropping clap's tree of
/// every subcommand's arguments was a quarter of the parse's instructions.
fn parse<P: clap::Parser>(argv: &[std::ffi::OsString]) -> P {
    let mut cmd = P::command();
    let mut matches = cmd
        .try_get_matches_from_mut(argv)
        .unwrap_or_else(|e| e.exit());
    let parsed =
        P::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut cmd).exit());
    std::mem::forget(matches);
    std::mem::forget(cmd);
    parsed
}

/// Output into a closed pipe (`skiff list | head -1`) ends the process
/// quietly, killed by SIGPIPE as runc (Go) and the coreutils are, instead
/// of a panic ("failed printing to stdout") and an abort. Rust ignores
/// SIGPIPE, so every write reports EPIPE: `print!` panics with it, and
/// explicit writes return it (see [`exit`]).
pub fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            die_of_sigpipe();
        }
        default(info)
    }));
}

fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default SIGPIPE action and raising it ends the
    // process; _exit is the fallback should it be blocked.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGPIPE);
        libc::_exit(128 + libc::SIGPIPE)
    }
}

/// Exits with the command's exit code, or reports its error the way runc
/// does (`--log`, `--log-format`, stderr) and exits 1 (126 or 127 when the
/// container's program cannot be executed; quietly, by SIGPIPE, when the
/// error is a write into a closed pipe).
pub fn exit(global: &Global, result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let broken_pipe = err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                die_of_sigpipe();
            }
            runtime_cmd::log_error(global, &err);
            let code = err
                .chain()
                .find_map(|e| e.downcast_ref::<skiff_runtime::Error>())
                .and_then(skiff_runtime::Error::exec_exit_code);
            std::process::exit(code.unwrap_or(1));
        }
    }
}

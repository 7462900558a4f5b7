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
//! No logic worth testing lives here: each command parses its flags and
//! calls `skiff-runtime`, `skiff-image` or `skiff-registry`.

pub mod dispatch;
pub mod image_cmd;
pub mod registry_cmd;
pub mod runtime_cmd;

use std::path::PathBuf;

/// Global options shared by every command (runc's global flags plus skiff's own).
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Root directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/skiff", env = "SKIFF_ROOT")]
    pub root: PathBuf,
    /// Log file for errors and debug output (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json (runc's JSON lines, read by containerd).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Enable debug output.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Default isolation for containers without a `run.skiff.isolation`
    /// annotation: namespace (default) or vm.
    #[arg(long, global = true, env = "SKIFF_ISOLATION", value_parser = ["namespace", "vm"])]
    pub isolation: Option<String>,
    /// Directory for image content and snapshots.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/skiff",
        env = "SKIFF_STORE"
    )]
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
pub struct Cli<C: clap::Subcommand> {
    /// Global flags.
    #[command(flatten)]
    pub global: Global,
    /// Print version information.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// The command.
    #[command(subcommand)]
    pub command: C,
}

/// Exits with the command's exit code, or reports its error the way runc
/// does (`--log`, `--log-format`, stderr) and exits 1.
pub fn exit(global: &Global, result: anyhow::Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            runtime_cmd::log_error(global, &err);
            std::process::exit(1);
        }
    }
}

//! `skiff`: the command line. A thin layer over the workspace libraries:
//! it parses runc-compatible arguments, calls `skiff-runtime`, `skiff-image`
//! and `skiff-registry`, and prints. No logic worth testing lives here.

mod image_cmd;
mod registry_cmd;
mod runtime_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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

#[derive(Parser, Debug)]
#[command(
    name = "skiff",
    about = "skiff: OCI container runtime, images and registry",
    version = runtime_cmd::VERSION,
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    /// Print version information.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Runtime(runtime_cmd::RuntimeCommand),
    /// Manage images: pull, push, ls, inspect, rm, prune, import, export, login.
    Image(image_cmd::ImageArgs),
    /// Run or maintain an OCI distribution registry.
    Registry(registry_cmd::RegistryArgs),
}

fn main() {
    let cli = Cli::parse();
    let global = cli.global;
    let result = match cli.command {
        Command::Runtime(cmd) => runtime_cmd::main(&global, cmd),
        Command::Image(args) => image_cmd::main(&global, args),
        Command::Registry(args) => registry_cmd::main(&global, args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            runtime_cmd::log_error(&global, &err);
            std::process::exit(1);
        }
    }
}

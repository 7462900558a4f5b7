//! runc-compatible runtime commands: create, start, run, state, kill, delete,
//! list, spec, features, exec, ps, events, pause, resume, update.
//!
//! Each command parses its flags and calls `skiff-runtime`.

use std::path::PathBuf;

use crate::{image_cmd, Global};

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

/// The runtime subcommands (runc's command line).
#[derive(clap::Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Create a container (its process waits for `start`).
    Create {
        #[command(flatten)]
        flags: CreateFlags,
        /// Container id.
        id: String,
    },
    /// Start the user process of a created container.
    Start { id: String },
    /// Create and start a container (or run an image with --image).
    Run {
        #[command(flatten)]
        flags: CreateFlags,
        /// Detach from the container's process.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits (bundle mode).
        #[arg(long)]
        keep: bool,
        /// Accepted for runc compatibility.
        #[arg(long, hide = true)]
        no_subreaper: bool,
        /// Run this image instead of a bundle (pulled when missing).
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        image_args: image_cmd::ImageRunArgs,
        /// Container id (generated for --image when omitted).
        id: Option<String>,
        /// Command for --image (after `--`).
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal to the container's init (or all its processes).
    Kill {
        /// Send to every process of the container.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        /// Signal name or number (default SIGTERM).
        signal: Option<String>,
    },
    /// Delete a container and its resources.
    Delete {
        /// Kill the container first if it is still running.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// Output format: table or json.
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only container ids.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        /// Path to the bundle directory.
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// Generate a config for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the runtime's features as JSON (runtime-spec features.md).
    Features,
}

/// Runs one runtime command; returns the process exit code.
pub fn main(_global: &Global, _cmd: RuntimeCommand) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}

/// Reports an error the way runc does: to `--log` (text or JSON lines) and stderr.
pub fn log_error(_global: &Global, err: &anyhow::Error) {
    eprintln!("skiff: {err:#}");
}

/// Runs the bundle at `bundle` as container `id` (what `skiff run -b BUNDLE ID`
/// does): used by `run --image` once the bundle is prepared. Returns the
/// container's exit code (0 when detached).
pub fn run_bundle(
    _global: &Global,
    _bundle: &std::path::Path,
    _id: &str,
    _detach: bool,
    _console_socket: Option<PathBuf>,
) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}

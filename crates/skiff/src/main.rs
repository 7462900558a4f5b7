//! `skiff`: the OCI runtime command line (runc's commands and flags).
//!
//! This executable links only the runtime, because containerd, podman and
//! Kubernetes run it for every container. `skiff image ...`,
//! `skiff registry ...`, `skiff run --image ...`, `skiff check` and
//! `skiff completion` are handled by the
//! sibling executable `skiff-tools`, which this one execs before parsing
//! anything (see `skiff::dispatch`).

use std::ffi::OsString;

use clap::Subcommand;
use skiff::{dispatch, runtime_cmd, Cli};

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Runtime(runtime_cmd::RuntimeCommand),
    /// Manage images: pull, push, ls, inspect, rm, prune, import, export, login.
    #[command(disable_help_flag = true)]
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Run or maintain an OCI distribution registry.
    #[command(disable_help_flag = true)]
    Registry {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Print a shell completion script: bash, zsh or fish.
    #[command(disable_help_flag = true)]
    Completion {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Manage container networks: create, ls, rm, inspect.
    #[command(disable_help_flag = true)]
    Network {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Report what this host supports: cgroups, namespaces, seccomp, KVM, QEMU, kernel, agent.
    #[command(disable_help_flag = true)]
    Check {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() {
    skiff::quiet_on_closed_pipe();
    let argv = dispatch::normalize_args(std::env::args_os().collect());
    if dispatch::wants_tools(&argv) {
        dispatch::exec_tools();
    }
    let (global, command) = match skiff::parse_runtime_fast(&argv) {
        Some((global, cmd)) => (global, Command::Runtime(cmd)),
        None => Cli::<Command>::parse_argv(&argv),
    };
    let result = match command {
        Command::Runtime(cmd) => {
            runtime_cmd::main(&global, cmd, |_, _, _, _, _, _| dispatch::exec_tools())
        }
        Command::Image { .. }
        | Command::Registry { .. }
        | Command::Network { .. }
        | Command::Completion { .. }
        | Command::Check { .. } => dispatch::exec_tools(),
    };
    skiff::exit(&global, result)
}

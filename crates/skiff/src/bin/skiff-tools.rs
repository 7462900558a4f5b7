//! `skiff-tools`: the whole `skiff` command line (runtime, images,
//! registry). `skiff` execs it for `image`, `registry` and `run --image`;
//! it also accepts every runtime command itself.

use clap::{CommandFactory as _, Subcommand};
use skiff::{dispatch, host_cmd, image_cmd, network_cmd, registry_cmd, runtime_cmd, Cli};

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
    /// Print a shell completion script: bash, zsh or fish.
    Completion(host_cmd::CompletionArgs),
    /// Report what this host supports: cgroups, namespaces, seccomp, KVM, QEMU, kernel, agent.
    Check(host_cmd::CheckArgs),
    /// Write the man pages (one per subcommand) into a directory.
    #[command(hide = true)]
    Man(host_cmd::ManArgs),
    /// Manage container networks: create, ls, rm, inspect.
    Network(network_cmd::NetworkArgs),
}

fn main() {
    skiff::quiet_on_closed_pipe();
    let argv = dispatch::normalize_args(std::env::args_os().collect());
    let (global, command) = Cli::<Command>::parse_argv(&argv);
    let result = match command {
        Command::Runtime(cmd) => runtime_cmd::main(&global, cmd, image_cmd::run_image),
        Command::Image(args) => image_cmd::main(&global, args),
        Command::Registry(args) => registry_cmd::main(&global, args),
        Command::Completion(args) => host_cmd::completion(Cli::<Command>::command(), &args),
        Command::Check(args) => host_cmd::check_host(&args),
        Command::Man(args) => host_cmd::man(Cli::<Command>::command(), &args),
        Command::Network(args) => network_cmd::main(&global, args),
    };
    skiff::exit(&global, result)
}

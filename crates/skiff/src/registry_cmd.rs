//! `skiff registry ...`: thin CLI over `skiff-registry`.
//!
//! Owned by the registry work (issue 6). `main.rs` only dispatches here.

use crate::Global;

/// `skiff registry <command>`.
#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// Registry subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API.
    Serve,
}

/// Runs `skiff registry ...`; returns the process exit code.
pub fn main(_global: &Global, _args: RegistryArgs) -> anyhow::Result<i32> {
    anyhow::bail!("skiff registry: not implemented yet")
}

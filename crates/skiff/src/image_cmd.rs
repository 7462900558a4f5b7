//! `skiff image ...` and `skiff run --image ...`: thin CLI over `skiff-image`.
//!
//! Owned by the images work (issue 5). `main.rs` only dispatches here.

use crate::Global;

/// `skiff image <command>`.
#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// Image subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// List images in the store.
    Ls,
}

/// Extra options of `skiff run --image REF` (flattened into `run`'s arguments).
#[derive(clap::Args, Debug, Default)]
pub struct ImageRunArgs {}

/// Runs `skiff run --image REF [NAME] [-- CMD...]`; returns the exit code.
pub fn run_image(
    _global: &Global,
    _image: &str,
    _name: Option<String>,
    _cmd: Vec<String>,
    _detach: bool,
    _args: ImageRunArgs,
) -> anyhow::Result<i32> {
    anyhow::bail!("skiff run --image: not implemented yet")
}

/// Runs `skiff image ...`; returns the process exit code.
pub fn main(_global: &Global, _args: ImageArgs) -> anyhow::Result<i32> {
    anyhow::bail!("skiff image: not implemented yet")
}

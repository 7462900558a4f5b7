//! `run` of a bundle: the runtime library's [`skiff_runtime::run::run`]
//! with the command's flags. (`run --image` is `skiff-tools`': it prepares a
//! bundle and calls [`run_bundle`].)

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use skiff_runtime::run::RunOptions;
use skiff_runtime::CreateOptions;

use crate::args::RunCmd;
use crate::Global;

pub(super) fn run(g: &Global, r: RunCmd) -> anyhow::Result<i32> {
    if r.image.is_some() {
        // `skiff` execs `skiff-tools` for it before parsing; `skiff-tools`
        // handles it before calling here.
        bail!("run --image: handled by skiff-tools");
    }
    let id = r.id.context("run: a container id is required")?;
    if !r.cmd.is_empty() {
        bail!("run: a command after `--` needs --image (a bundle's command is in its config.json)");
    }
    let rt = super::runtime(g)?;
    let opts = super::create_opts(&r.flags, &id, None);
    let ro = RunOptions {
        detach: r.detach,
        keep: r.keep,
    };
    Ok(skiff_runtime::run::run(&rt, opts, ro)?)
}

/// Runs the bundle at `bundle` as container `id` (what `skiff run -b BUNDLE ID`
/// does): used by `run --image` once the bundle is prepared. With `keep`, a
/// foreground container stays (stopped) until `skiff delete`. Returns the
/// container's exit code (0 when detached).
pub fn run_bundle(
    global: &Global,
    bundle: &Path,
    id: &str,
    detach: bool,
    keep: bool,
    console_socket: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let rt = super::runtime(global)?;
    let opts = CreateOptions {
        id,
        bundle,
        console_socket: console_socket.as_deref(),
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
        console_conn: None,
    };
    Ok(skiff_runtime::run::run(
        &rt,
        opts,
        RunOptions { detach, keep },
    )?)
}

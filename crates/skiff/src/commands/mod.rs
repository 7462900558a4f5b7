//! Runs the runtime commands parsed by [`crate::args`]: one module per
//! command, each calling `skiff-runtime` and printing the result.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;
use skiff_runtime::{CreateOptions, Runtime};

use crate::args::*;
use crate::Global;

mod delete;
mod events;
mod exec;
mod kill;
mod list;
mod ps;
mod run;
mod spec;
mod update;

pub use kill::parse_signal;
pub use run::run_bundle;

/// The state root: `--root`, except that a non-root caller left at the
/// default `/run/skiff` gets `$XDG_RUNTIME_DIR/skiff` (as runc uses
/// `$XDG_RUNTIME_DIR/runc`).
fn state_root(g: &Global, euid: u32) -> PathBuf {
    if euid != 0 && g.root == Path::new("/run/skiff") && std::env::var_os("SKIFF_ROOT").is_none() {
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
            return Path::new(&xdg).join("skiff");
        }
    }
    g.root.clone()
}

fn runtime(g: &Global) -> anyhow::Result<Runtime> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut rt = Runtime::new(state_root(g, euid));
    rt.systemd_cgroup = g.systemd_cgroup;
    rt.rootless = match g.rootless.as_deref() {
        Some("true") => true,
        Some("false") => false,
        None | Some("auto") => euid != 0,
        Some(v) => bail!("--rootless: \"{v}\" is not true, false or auto"),
    };
    rt.isolation = g.isolation.clone();
    rt.debug = g.debug;
    Ok(rt)
}

/// Runs one runtime command; returns the process exit code. `run --image`
/// is not one (see [`crate::args::RunCmd::image`]): the executables handle
/// it before calling this.
pub fn main(g: &Global, cmd: RuntimeCommand) -> anyhow::Result<i32> {
    let cmd = match cmd {
        RuntimeCommand::Run(r) => return run::run(g, r),
        cmd => cmd,
    };
    let rt = runtime(g)?;
    match cmd {
        RuntimeCommand::Create(CreateCmd { flags, id }) => {
            rt.create(&create_opts(&flags, &id, None))?;
        }
        RuntimeCommand::Start(IdArg { id }) => {
            let mut c = rt.load(&id)?;
            if let Err(e) = c.start(&rt) {
                if matches!(e, skiff_runtime::Error::Poststart(_)) {
                    // Lifecycle step 12: destroy, with the lock released.
                    drop(c);
                    if let Ok(c) = rt.load(&id) {
                        let _ = c.delete(&rt, true);
                    }
                }
                return Err(e.into());
            }
        }
        RuntimeCommand::Run(_) => unreachable!("handled above"),
        RuntimeCommand::State(IdArg { id }) => {
            let c = rt.peek(&id)?;
            println!("{}", serde_json::to_string_pretty(&c.state(&rt))?);
        }
        RuntimeCommand::Kill(k) => return kill::kill(&rt, k),
        RuntimeCommand::Delete(DeleteCmd { force, id }) => return delete::delete(&rt, &id, force),
        RuntimeCommand::List(ListCmd { format, quiet }) => return list::list(&rt, &format, quiet),
        RuntimeCommand::Spec(SpecCmd { bundle }) => return spec::spec(g, &bundle),
        RuntimeCommand::Features => println!(
            "{}",
            serde_json::to_string_pretty(&skiff_runtime::features::features())?
        ),
        RuntimeCommand::Exec(a) => return exec::exec(&rt, a),
        RuntimeCommand::Ps(PsCmd {
            format,
            id,
            ps_args,
        }) => return ps::ps(&rt, &format, &id, ps_args),
        RuntimeCommand::Events(EventsCmd {
            stats,
            interval,
            id,
        }) => return events::events(&rt, stats, &interval, &id),
        RuntimeCommand::Pause(IdArg { id }) => rt.load(&id)?.pause(&rt)?,
        RuntimeCommand::Resume(IdArg { id }) => rt.load(&id)?.resume(&rt)?,
        RuntimeCommand::Update(a) => return update::update(&rt, a),
        RuntimeCommand::Checkpoint(_) => bail!("checkpoint/restore is not supported by skiff"),
    }
    Ok(0)
}

fn create_opts<'a>(
    f: &'a CreateFlags,
    id: &'a str,
    conn: Option<std::os::fd::OwnedFd>,
) -> CreateOptions<'a> {
    CreateOptions {
        id,
        bundle: &f.bundle,
        console_socket: f.console_socket.as_deref(),
        pid_file: f.pid_file.as_deref(),
        no_pivot: f.no_pivot,
        no_new_keyring: f.no_new_keyring,
        preserve_fds: f.preserve_fds,
        console_conn: conn,
    }
}

/// The error and its causes joined with ": ", leaving out a cause whose text
/// the message already holds (library errors often print their source).
fn error_chain(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Reports an error the way runc does: to `--log` (text or JSON lines) and stderr.
pub fn log_error(g: &Global, err: &anyhow::Error) {
    let msg = error_chain(err);
    let json = || {
        serde_json::json!({
            "level": "error",
            "msg": msg,
            "time": skiff_runtime::state::now_rfc3339(),
        })
        .to_string()
    };
    if g.log.is_none() && g.log_format == "json" {
        // runc: without --log the log goes to stderr, in the log format.
        eprintln!("{}", json());
        return;
    }
    if let Some(path) = &g.log {
        let line = if g.log_format == "json" {
            json()
        } else {
            format!(
                "time=\"{}\" level=error msg={:?}",
                skiff_runtime::state::now_rfc3339(),
                msg
            )
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    eprintln!("skiff: {msg}");
}

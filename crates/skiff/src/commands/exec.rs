//! `exec`: a new process in a running container, from flags or `--process`.

use anyhow::{bail, Context as _};
use skiff_runtime::{ExecOptions, Runtime};

use crate::args::ExecArgs;

pub(super) fn exec(rt: &Runtime, a: ExecArgs) -> anyhow::Result<i32> {
    let c = rt.load(&a.id)?;
    if c.status(rt) == skiff_runtime::state::Status::Paused {
        // runc's --ignore-paused lets the process wait in the frozen cgroup
        // until `resume`; here `exec` holds the container's lock until the
        // process is set up, so `resume` would wait for it: refuse instead.
        bail!(
            "cannot exec in a paused container: resume it first{}",
            if a.ignore_paused {
                " (--ignore-paused is not supported)"
            } else {
                ""
            }
        );
    }
    let process: oci_spec::runtime::Process = match &a.process {
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("{}: invalid process JSON", p.display()))?
        }
        None => process_from_flags(&c, &a)?,
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("exec: process.args must name a program");
    }
    let opts = ExecOptions {
        console_socket: a.console_socket.as_deref(),
        pid_file: a.pid_file.as_deref(),
        preserve_fds: a.preserve_fds,
        cgroup: a.cgroup.as_deref(),
        detach: a.detach,
        console_conn: None,
    };
    Ok(skiff_runtime::run::exec(rt, c, &process, &opts)?)
}

/// The process of `exec CMD...`: the container's, with the command and the
/// flags' changes.
fn process_from_flags(
    c: &skiff_runtime::Container,
    a: &ExecArgs,
) -> anyhow::Result<oci_spec::runtime::Process> {
    if a.command.is_empty() {
        bail!("exec: a command is required");
    }
    let mut p = c
        .saved
        .spec
        .process()
        .clone()
        .context("container has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        // As runc: uid[:gid], numeric; without a gid the process
        // keeps the container's.
        let bad = || format!("--user \"{u}\": expected a numeric uid[:gid]");
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse(), g.parse()),
            None => (u.parse(), Ok(p.user().gid())),
        };
        let (uid, gid) = (uid.with_context(bad)?, gid.with_context(bad)?);
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(ap) = &a.apparmor {
        p.set_apparmor_profile(Some(ap.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<oci_spec::runtime::Capabilities>| -> anyhow::Result<oci_spec::runtime::Capabilities> {
            let mut s = set.clone().unwrap_or_default();
            for c in &a.cap {
                let cap: oci_spec::runtime::Capability = serde_json::from_value(serde_json::Value::String(c.clone()))
                    .map_err(|_| anyhow::anyhow!("--cap: unknown capability \"{c}\""))?;
                s.insert(cap);
            }
            Ok(s)
        };
        caps.set_bounding(Some(add(caps.bounding())?));
        caps.set_effective(Some(add(caps.effective())?));
        caps.set_permitted(Some(add(caps.permitted())?));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

//! `exec`: a new process in a running container, from flags or `--process`.

use anyhow::{bail, Context as _};
use skiff_runtime::{ExecOptions, Runtime};

use crate::args::ExecArgs;

pub(super) fn exec(rt: &Runtime, a: ExecArgs) -> anyhow::Result<i32> {
    let c = rt.load(&a.id)?;
    let mut process: oci_spec::runtime::Process = match &a.process {
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("{}: invalid process JSON", p.display()))?
        }
        None => {
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
                let (uid, gid) = match u.split_once(':') {
                    Some((u, g)) => (u.parse()?, g.parse()?),
                    None => (u.parse()?, 0),
                };
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
            p
        }
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("exec: process.args must name a program");
    }
    if c.is_vm() {
        return Ok(c.exec_vm(&process, a.console_socket.as_deref(), a.detach)?);
    }
    let proxy = !a.detach && a.console_socket.is_none() && process.terminal().unwrap_or(false);
    let mut sock_path = a.console_socket.clone();
    let mut listener = None;
    let mut tmpdir = None;
    if proxy {
        // A private socket for the pty master: exec connects by path.
        let dir = std::env::temp_dir().join(format!("skiff-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("console.sock");
        listener = Some(std::os::unix::net::UnixListener::bind(&path)?);
        sock_path = Some(path);
        tmpdir = Some(dir);
    }
    if !a.detach {
        skiff_runtime::container::set_subreaper();
        skiff_runtime::run::block_forwarded_signals();
    }
    process.set_cwd(process.cwd().clone());
    let opts = ExecOptions {
        console_socket: sock_path.as_deref(),
        pid_file: a.pid_file.as_deref(),
        preserve_fds: a.preserve_fds,
        cgroup: a.cgroup.as_deref(),
    };
    let res = c.exec(rt, &process, &opts);
    let master = match (&listener, &res) {
        (Some(l), Ok(_)) => {
            let (s, _) = l.accept()?;
            Some(skiff_runtime::linux::console::recv_fd(
                std::os::fd::AsRawFd::as_raw_fd(&s),
            )?)
        }
        _ => None,
    };
    if let Some(d) = tmpdir {
        let _ = std::fs::remove_dir_all(d);
    }
    let pid = res?;
    drop(c);
    if a.detach {
        return Ok(0);
    }
    Ok(skiff_runtime::container::wait_forwarding(pid, master)?)
}

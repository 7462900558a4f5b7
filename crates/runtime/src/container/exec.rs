//! `exec` for namespace isolation: a new process joins the container's
//! namespaces and cgroups (as [`cgroup_join`] decides), then runs the
//! same init code as the container's first process (`linux::init`).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::create::{c_strings, connect_console, converse, path_cstring, rootless_join};
use super::ns::{ns_flag, open_ns, proc_ns_name, with_parent_ns};
use super::{state_json, write_pid_file, Container, ExecOptions, Runtime};
use crate::cgroup_join;
use crate::config;
use crate::error::Context;
use crate::linux::{self, caps::CapSets, sync, Join, Kind, Plan};
use crate::state::Status;
use crate::{Error, Result};

/// Opens the namespaces of the container's init to join: those the child
/// joins (user first) and those this process enters before cloning (pid,
/// time).
fn container_namespaces(c: &Container) -> Result<(Vec<Join>, Vec<Join>)> {
    let mut join = Vec::new();
    let mut parent_join = Vec::new();
    for ns in c
        .saved
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let path = PathBuf::from(format!(
            "/proc/{}/ns/{}",
            c.saved.pid,
            proc_ns_name(ns.typ())
        ));
        let flag = ns_flag(ns.typ());
        let j = Join {
            flag,
            name: config::ns_name(ns.typ()),
            fd: open_ns(&path, ns.typ())?,
        };
        match flag {
            libc::CLONE_NEWPID | libc::CLONE_NEWTIME => parent_join.push(j),
            libc::CLONE_NEWUSER => join.insert(0, j),
            _ => join.push(j),
        }
    }
    Ok((join, parent_join))
}

/// The cgroup of every hierarchy the process goes to: the container's, or
/// with `--cgroup` runc's [<controller>[,<controller>...]:]<path> below it
/// (hierarchies not named stay in the container's cgroup; "unified" names
/// cgroup2).
fn cgroup_dirs(cg: &dyn skiff_cgroups::Manager, sub: Option<&str>) -> Result<Vec<(u8, PathBuf)>> {
    let mut dirs: Vec<(u8, PathBuf)> = cg
        .hierarchies()
        .into_iter()
        .map(|h| (h.version, h.path))
        .collect();
    let Some(sub) = sub else {
        return Ok(dirs);
    };
    let (ctrls, rel) = match sub.split_once(':') {
        Some((c, p)) => (Some(c), p),
        None => (None, sub),
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(Error::Config(format!(
            "--cgroup {sub}: the path must stay inside the container's cgroup"
        )));
    }
    for (h, d) in cg.hierarchies().iter().zip(dirs.iter_mut()) {
        let named = ctrls.is_none_or(|c| {
            c.split(',').any(|x| {
                if h.version == 2 {
                    x.is_empty() || x == "unified"
                } else {
                    h.controllers.split(',').any(|y| y == x)
                }
            })
        });
        if named {
            d.1 = h.path.join(rel);
            if !d.1.is_dir() {
                return Err(Error::Config(format!(
                    "--cgroup {sub}: {} does not exist",
                    d.1.display()
                )));
            }
        }
    }
    Ok(dirs)
}

/// `exec` in a namespace container (the state was checked): starts
/// `process` inside it. Returns the pid (our child) once it is about to
/// exec.
pub(crate) fn exec(c: &Container, rt: &Runtime, process: &Process, o: &ExecOptions) -> Result<i32> {
    let spec = &c.saved.spec;
    let linux = spec.linux().as_ref();
    let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(skiff_seccomp::compile_cached(s, &rt.seccomp_cache())?),
        None => None,
    };
    crate::linux::lsm::check_exec(process).map_err(|e| Error::Config(e.to_string()))?;
    let caps = CapSets::from_spec(process.capabilities().as_ref())?;
    let (argv, envp) = c_strings(process, &[])?;
    linux::check_preserved_fds(o.preserve_fds)?;
    let (mut join, mut parent_join) = container_namespaces(c)?;
    let cg = c.cgroup(rt)?;
    // SAFETY: geteuid cannot fail.
    let euid_root = unsafe { libc::geteuid() } == 0;
    let cgroup_join = cgroup_join::decide(&cgroup_join::Inputs {
        layout: cg.layout(),
        spawn: cgroup_join::Spawn::Exec,
        euid_root,
        rootless: rt.rootless || c.saved.rootless,
        new_user_ns: false,
        joins_user_ns: join.iter().any(|j| j.flag == libc::CLONE_NEWUSER),
        joins_other_ns: !join.is_empty(),
        joins_pid_or_time_ns: !parent_join.is_empty(),
        new_cgroup_ns: false,
    });
    if cgroup_join.extra_fork() {
        join.append(&mut parent_join);
    }
    if process.terminal().unwrap_or(false) && o.console_socket.is_none() && o.console_conn.is_none()
    {
        return Err(Error::Config(
            "process.terminal is true but no --console-socket was given".into(),
        ));
    }
    let console_socket = match o.console_conn {
        Some(fd) => Some(fd.try_clone_to_owned().ctx(|| "console socket")?),
        None => o.console_socket.map(connect_console).transpose()?,
    };
    let dirs = cgroup_dirs(cg.as_ref(), o.cgroup)?;
    // As for the init (see `cgroup_join`): a privileged exec'd process
    // joins its v1 cgroups itself (no RCU grace period) and is cloned
    // into its cgroup2 directory.
    let self_join: Vec<CString> = if cgroup_join.self_join() {
        dirs.iter()
            .filter(|d| d.0 == 1)
            .map(|d| path_cstring(&d.1.join("tasks")))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let into_cgroup = if cgroup_join.clone_into_v2() {
        dirs.iter()
            .find(|d| d.0 == 2)
            .and_then(|d| linux::fs::open_path(&d.1).ok())
    } else {
        None
    };
    let plan = Plan {
        kind: Kind::Exec,
        id: &c.saved.id,
        spec,
        process,
        rootfs: c.saved.rootfs.clone(),
        new_ns: 0,
        join,
        console_socket,
        fifo: None,
        no_pivot: false,
        host_mntns: false,
        // The container's session keyring (`_ses.<id>`), as runc
        // joins it for exec too, never the caller's.
        no_new_keyring: c.saved.no_new_keyring,
        extra_fds: o.preserve_fds,
        seccomp,
        caps,
        cgroups: Vec::new(),
        argv,
        envp,
        idmap_trees: Vec::new(),
        close_fds: c.lock_fds(),
        cgroup_join,
        self_join,
    };
    let spawned = with_parent_ns(&parent_join, false, spec, || {
        linux::spawn(plan, into_cgroup.as_ref().map(|f| f.as_fd()))
    })?;
    drop(into_cgroup);
    let pid = spawned.pid;
    let fail = |e: Error| {
        // SAFETY: kill + reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        e
    };
    let add = if !cgroup_join.runtime_migrates(spawned.in_cgroup) {
        // Born in its cgroup2 directory, joins the v1 ones itself.
        Ok(())
    } else if cgroup_join.self_join() {
        // clone3 failed (old kernel): only cgroup2 is left to join.
        dirs.iter()
            .filter(|d| d.0 == 2)
            .try_for_each(|d| std::fs::write(d.1.join("cgroup.procs"), pid.to_string()))
            .ctx(|| format!("joining cgroup of container {}", c.saved.id))
    } else if o.cgroup.is_some() {
        dirs.iter()
            .try_for_each(|d| std::fs::write(d.1.join("cgroup.procs"), pid.to_string()))
            .ctx(|| format!("--cgroup {}", o.cgroup.unwrap_or("")))
    } else {
        rootless_join(rt.rootless || c.saved.rootless, cg.add_task(pid))
    };
    add.map_err(fail)?;
    if let Some(adj) = process.oom_score_adj() {
        let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string());
    }
    spawned
        .chan
        .send(sync::GO, &[])
        .ctx(|| "setup channel")
        .map_err(fail)?;
    let saved = &c.saved;
    let pid = converse(
        &spawned.chan,
        pid,
        spec,
        rt.rootless,
        |_| Ok(Vec::new()),
        |p| {
            let mut s = saved.clone();
            s.pid = p;
            state_json(&s, Status::Running)
        },
    )
    .map_err(fail)?;
    if let Some(p) = o.pid_file {
        write_pid_file(p, pid)?;
    }
    Ok(pid)
}

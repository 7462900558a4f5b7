//! `skiff network create|ls|rm|inspect` and the network half of
//! `skiff run --image`: thin CLI over `skiff-network`.
//!
//! A container's network state lives in `<store>/network/<name>` (next to
//! its bundle in `<store>/containers/<name>`); `image cleanup-bundle` (the
//! bundle's poststop hook) calls [`detach_for_bundle`] before removing the
//! bundle, so `skiff delete` and `--rm` run CNI `DEL`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use skiff_image::bundle::{NetworkNs, Volume};
use skiff_network::attach::{self, Request};
use skiff_network::{files, Mode, Networks, PortMapping};

use crate::run_flags::NetFlags;
use crate::Global;

/// `skiff network <command>`.
#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: NetworkCommand,
}

/// Network subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network (NAT to the host's uplink).
    Create {
        /// IPv4 subnet (default: a free 10.217.N.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// Network name.
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove networks no container uses (definition, leases, bridge).
    #[command(alias = "remove")]
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print networks (definition, CNI configuration, members) as JSON.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn networks() -> anyhow::Result<Networks> {
    Networks::open_default().context("opening the network directory (SKIFF_NETWORK_DIR)")
}

/// Runs `skiff network ...`; returns the exit code.
pub fn main(_global: &Global, args: NetworkArgs) -> anyhow::Result<i32> {
    let nets = networks()?;
    let mut out = std::io::stdout().lock();
    match args.command {
        NetworkCommand::Create { subnet, name } => {
            let d = nets.create(&name, subnet.as_deref(), None)?;
            writeln!(out, "{}", d.name)?;
        }
        NetworkCommand::Ls { format, quiet } => {
            let all = nets.list()?;
            if format == "json" {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else if quiet {
                for d in all {
                    writeln!(out, "{}", d.name)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<24} {:<16} {:<18} CONTAINERS",
                    "NAME", "BRIDGE", "SUBNET"
                )?;
                for d in all {
                    let n = nets.members(&d.name).len();
                    writeln!(out, "{:<24} {:<16} {:<18} {n}", d.name, d.bridge, d.subnet)?;
                }
            }
        }
        NetworkCommand::Rm { names } => {
            let mut code = 0;
            for n in names {
                match nets.remove(&n) {
                    Ok(d) => writeln!(out, "{}", d.name)?,
                    Err(e) => {
                        eprintln!("skiff: {e}");
                        code = 1;
                    }
                }
            }
            return Ok(code);
        }
        NetworkCommand::Inspect { names } => {
            let mut v = Vec::new();
            for n in names {
                let d = nets.get(&n)?;
                v.push(serde_json::json!({
                    "name": d.name, "bridge": d.bridge, "subnet": d.subnet, "gateway": d.gateway,
                    "cni": nets.conflist(&d), "containers": nets.members(&d.name),
                }));
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
    }
    Ok(0)
}

/// `<store>/network/<name>`: a container's network state.
pub fn state_dir(store_root: &Path, name: &str) -> PathBuf {
    store_root.join("network").join(name)
}

/// What `run --image` adds to the bundle for the network.
pub struct RunNetwork {
    /// The namespace to put in the config.
    pub ns: NetworkNs,
    /// `/etc/hosts` and `/etc/resolv.conf` bind mounts.
    pub volumes: Vec<Volume>,
    /// The state directory (to tear down if the container never starts).
    pub dir: Option<PathBuf>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sets up the network of container `name` from the run flags. Without
/// `--network`, root gets the default bridge network; a user (rootless) or
/// a VM container keeps a namespace of its own with loopback only.
pub fn attach_for_run(
    global: &Global,
    store_root: &Path,
    name: &str,
    hostname: &str,
    flags: &NetFlags,
) -> anyhow::Result<RunNetwork> {
    let vm = global.isolation.as_deref() == Some("vm");
    // Without the CNI plugins the implicit default degrades to a private
    // namespace (with a warning); an explicit --network fails instead.
    let plugins = skiff_network::cni::find_plugin("bridge");
    let implicit = is_root() && !vm && plugins.is_ok();
    if flags.network.is_none() && is_root() && !vm {
        if let Err(e) = &plugins {
            eprintln!("skiff: warning: no default network: {e}");
        }
    }
    let mode = match &flags.network {
        Some(n) => Mode::parse(n)?,
        None if implicit => Mode::Network("bridge".into()),
        None => Mode::None,
    };
    let ports = flags
        .publish
        .iter()
        .map(|p| PortMapping::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let add_hosts = flags
        .add_host
        .iter()
        .map(|h| files::parse_add_host(h))
        .collect::<Result<Vec<_>, _>>()?;
    if flags.network.is_none() && !implicit {
        if !ports.is_empty() || !add_hosts.is_empty() || !flags.dns.is_empty() {
            bail!("-p, --dns and --add-host need --network (the default network needs root and namespace isolation)");
        }
        return Ok(RunNetwork {
            ns: NetworkNs::New,
            volumes: vec![],
            dir: None,
        });
    }
    let nets = networks()?;
    let parent = store_root.join("network");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = state_dir(store_root, name);
    let req = Request {
        name: name.into(),
        hostname: hostname.into(),
        mode: mode.clone(),
        ports,
        dns: flags.dns.clone(),
        add_hosts,
    };
    let att = attach::attach(&nets, &dir, &req)
        .with_context(|| format!("setting up network {:?} for {name}", mode.name()))?;
    let ns = match (&mode, &att.netns) {
        (Mode::Host, _) => NetworkNs::Host,
        (_, Some(p)) => NetworkNs::Path(p.clone()),
        (_, None) => NetworkNs::New,
    };
    let file = |src: &Path, dst: &str| Volume {
        source: src.to_path_buf(),
        destination: dst.into(),
        readonly: false,
    };
    Ok(RunNetwork {
        ns,
        volumes: vec![
            file(&att.hosts, "/etc/hosts"),
            file(&att.resolv_conf, "/etc/resolv.conf"),
        ],
        dir: Some(dir),
    })
}

/// Tears down the network of the container whose bundle is `bundle`
/// (`<store>/containers/<name>`): CNI `DEL`, netns, state directory.
pub fn detach_for_bundle(store_root: &Path, bundle: &Path) -> anyhow::Result<()> {
    let Some(name) = bundle.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    if name.starts_with('.') || name.contains('/') {
        return Ok(());
    }
    detach_dir(&state_dir(store_root, name))
}

/// Tears down the network state in `dir` (idempotent).
pub fn detach_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    attach::detach(dir).with_context(|| format!("tearing down the network of {}", dir.display()))
}

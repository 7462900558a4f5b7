//! One container's network: set up before the container is created
//! ([`attach`]) and taken down when it is deleted ([`detach`]).
//!
//! Everything lives in one per-container directory that the caller owns
//! (`<store>/network/<name>`): the pinned netns (`netns`), the `hosts` and
//! `resolv.conf` files bind-mounted into the container, and `network.json`
//! ([`Attachment`]: the CNI configuration list used and the CNI result, what
//! `DEL` needs). On a user network, each container is also recorded as a
//! member of the network so that every member's `/etc/hosts` lists its
//! peers by name (rewritten in place when one joins or leaves).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cni::{self, Target};
use crate::files;
use crate::networks::{Networks, DEFAULT_NAME};
use crate::ports::PortMapping;
use crate::{io_at, netns, NetError, Result};

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A bridge network by name (`bridge` is the default one).
    Network(String),
    /// The host's network namespace.
    Host,
    /// A namespace of its own with loopback only.
    None,
}

impl Mode {
    /// Parses `bridge|host|none|NAME`.
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "host" => Mode::Host,
            "none" => Mode::None,
            "" => return Err(NetError::Invalid("--network: empty name".into())),
            "bridge" | "default" => Mode::Network(DEFAULT_NAME.into()),
            n => {
                crate::networks::check_name(n)?;
                Mode::Network(n.into())
            }
        })
    }

    /// Name as `inspect` shows it.
    pub fn name(&self) -> &str {
        match self {
            Mode::Network(n) => n,
            Mode::Host => "host",
            Mode::None => "none",
        }
    }
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// Container name (in its own and its peers' `/etc/hosts`).
    pub name: String,
    /// Container hostname (also in its `/etc/hosts`).
    pub hostname: String,
    /// Network mode.
    pub mode: Mode,
    /// `-p` mappings (bridge networks only).
    pub ports: Vec<PortMapping>,
    /// `--dns` servers.
    pub dns: Vec<String>,
    /// `--add-host` entries (name, ip).
    pub add_hosts: Vec<(String, String)>,
}

/// A container's network, as set up ([`attach`]) and recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    /// Container name.
    pub name: String,
    /// `bridge` network name, `host` or `none`.
    pub network: String,
    /// `CNI_CONTAINERID` of the attachment.
    pub cni_id: String,
    /// Pinned netns (none with the host network).
    pub netns: Option<PathBuf>,
    /// The container's address on the network.
    pub ip: Option<String>,
    /// Gateway.
    pub gateway: Option<String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// The CNI configuration list used for `ADD` (and so for `DEL`).
    pub conflist: Option<Value>,
    /// The CNI result of `ADD`.
    pub result: Option<Value>,
    /// The generated `/etc/hosts`.
    pub hosts: PathBuf,
    /// The generated `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The network directory the attachment was made in (its teardown
    /// runs as a hook, without our environment).
    pub network_dir: PathBuf,
}

/// A container on a user network, as its peers see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// Container name.
    pub name: String,
    /// Hostname.
    pub hostname: String,
    /// Address.
    pub ip: String,
    /// Its `/etc/hosts` (rewritten when peers come and go).
    pub hosts: PathBuf,
    /// Its `--add-host` entries.
    pub add_hosts: Vec<(String, String)>,
}

const STATE: &str = "network.json";

/// Reads the members recorded in `dir`.
pub fn read_members(dir: &Path) -> Vec<Member> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<Member> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Rewrites the `/etc/hosts` of every member of a network (peers by name).
fn refresh_hosts(members: &[Member]) {
    for m in members {
        let mut extra = m.add_hosts.clone();
        extra.extend(
            members
                .iter()
                .filter(|p| p.name != m.name)
                .map(|p| (p.name.clone(), p.ip.clone())),
        );
        let names = own_names(&m.hostname, &m.name);
        // A member being removed concurrently may have no file any more.
        if m.hosts.exists() {
            let _ = files::rewrite_in_place(&m.hosts, &files::hosts(Some((&m.ip, &names)), &extra));
        }
    }
}

fn own_names(hostname: &str, name: &str) -> Vec<String> {
    let mut v = vec![hostname.to_string()];
    if name != hostname {
        v.push(name.to_string());
    }
    v
}

fn mkdir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => NetError::Invalid(format!(
                "{}: the container's network state already exists (a container with this name?)",
                dir.display()
            )),
            _ => io_at(dir)(e),
        })
}

/// Sets up `req`'s network with its state in `dir` (created; must not
/// exist). On error nothing is left (netns, leases, rules, `dir`).
pub fn attach(nets: &Networks, dir: &Path, req: &Request) -> Result<Attachment> {
    if !req.ports.is_empty() && !matches!(req.mode, Mode::Network(_)) {
        return Err(NetError::Invalid(format!(
            "-p needs a bridge network (--network {} publishes nothing)",
            req.mode.name()
        )));
    }
    files::check_dns(&req.dns)?;
    mkdir_private(dir)?;
    let mut att = Attachment {
        name: req.name.clone(),
        network: req.mode.name().into(),
        cni_id: format!("skiff-{}", crate::random_hex()),
        netns: None,
        ip: None,
        gateway: None,
        ports: req.ports.clone(),
        conflist: None,
        result: None,
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        network_dir: nets.dir().to_path_buf(),
    };
    match setup(nets, dir, req, &mut att) {
        Ok(()) => Ok(att),
        Err(e) => {
            let _ = teardown(nets, &att);
            let _ = std::fs::remove_dir_all(dir);
            Err(e)
        }
    }
}

fn setup(nets: &Networks, dir: &Path, req: &Request, att: &mut Attachment) -> Result<()> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = files::resolv_conf(&host_resolv, &req.dns, req.mode == Mode::Host);
    files::rewrite_in_place(&att.resolv_conf, &resolv)?;
    if req.mode == Mode::Host {
        let mut h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        for (n, ip) in &req.add_hosts {
            h.push_str(&format!("{ip}\t{n}\n"));
        }
        files::rewrite_in_place(&att.hosts, &h)?;
        return write_state(dir, att);
    }
    let ns = dir.join("netns");
    netns::create(&ns)?;
    att.netns = Some(ns.clone());
    write_state(dir, att)?;
    let names = own_names(&req.hostname, &req.name);
    let Mode::Network(name) = &req.mode else {
        files::rewrite_in_place(&att.hosts, &files::hosts(None, &req.add_hosts))?;
        return write_state(dir, att);
    };
    let def = nets.get(name)?;
    let mut list = nets.conflist(&def);
    if req.ports.is_empty() {
        // No mappings: portmap would only pass the result on.
        if let Some(p) = list["plugins"].as_array_mut() {
            p.retain(|p| p["type"] != "portmap");
        }
    }
    let _lock = nets.lock(&def.name)?;
    crate::rules::ensure(&def)?;
    att.conflist = Some(list.clone());
    write_state(dir, att)?;
    let target = Target {
        container_id: &att.cni_id,
        netns: &ns,
        ifname: "eth0",
    };
    let result = cni::add_list(&list, &target, &caps(&req.ports))?;
    att.ip = first_ip(&result);
    att.gateway = Some(def.gateway.clone());
    att.result = Some(result);
    write_state(dir, att)?;
    let ip = att
        .ip
        .clone()
        .ok_or_else(|| NetError::Invalid("the CNI result has no IP address".into()))?;
    files::rewrite_in_place(
        &att.hosts,
        &files::hosts(Some((&ip, &names)), &req.add_hosts),
    )?;
    let member = Member {
        name: req.name.clone(),
        hostname: req.hostname.clone(),
        ip,
        hosts: att.hosts.clone(),
        add_hosts: req.add_hosts.clone(),
    };
    let mdir = nets.members_dir(&def.name);
    std::fs::create_dir_all(&mdir).map_err(io_at(&mdir))?;
    let mfile = mdir.join(format!("{}.json", att.cni_id));
    std::fs::write(&mfile, serde_json::to_vec(&member).expect("json")).map_err(io_at(&mfile))?;
    refresh_hosts(&read_members(&mdir));
    Ok(())
}

fn caps(ports: &[PortMapping]) -> Value {
    json!({"portMappings": ports})
}

fn first_ip(result: &Value) -> Option<String> {
    let a = result["ips"].as_array()?.first()?["address"].as_str()?;
    Some(a.split('/').next()?.to_string())
}

fn write_state(dir: &Path, att: &Attachment) -> Result<()> {
    let p = dir.join(STATE);
    let tmp = dir.join(".network.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(att).expect("json")).map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io_at(&p))
}

/// Reads the attachment recorded in `dir` (None when there is none).
pub fn load(dir: &Path) -> Result<Option<Attachment>> {
    let p = dir.join(STATE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| NetError::Invalid(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(&p)(e)),
    }
}

/// Takes down the network recorded in `dir` (CNI `DEL`, member record,
/// peers' hosts, netns) and deletes `dir`. Idempotent: no `dir`, nothing to
/// do. The network directory is the one recorded at [`attach`].
pub fn detach(dir: &Path) -> Result<()> {
    let att = match load(dir) {
        Ok(Some(a)) => a,
        Ok(None) if !dir.exists() => return Ok(()),
        Ok(None) => return std::fs::remove_dir_all(dir).map_err(io_at(dir)),
        Err(e) => return Err(e),
    };
    let nets = Networks::open(&att.network_dir)?;
    let r = teardown(&nets, &att);
    std::fs::remove_dir_all(dir).map_err(io_at(dir))?;
    r
}

fn teardown(nets: &Networks, att: &Attachment) -> Result<()> {
    let mut first = None;
    if let (Some(list), Some(ns)) = (&att.conflist, &att.netns) {
        let name = list["name"].as_str().unwrap_or_default().to_string();
        let _lock = nets.lock(&name)?;
        let target = Target {
            container_id: &att.cni_id,
            netns: ns,
            ifname: "eth0",
        };
        if let Err(e) = cni::del_list(list, &target, att.result.as_ref(), &caps(&att.ports)) {
            first = Some(e);
        }
        let mdir = nets.members_dir(&name);
        let _ = std::fs::remove_file(mdir.join(format!("{}.json", att.cni_id)));
        refresh_hosts(&read_members(&mdir));
    }
    if let Some(ns) = &att.netns {
        if let Err(e) = netns::remove(ns) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes() {
        assert_eq!(
            Mode::parse("bridge").unwrap(),
            Mode::Network(DEFAULT_NAME.into())
        );
        assert_eq!(Mode::parse("host").unwrap(), Mode::Host);
        assert_eq!(Mode::parse("none").unwrap().name(), "none");
        assert_eq!(
            Mode::parse("app-net").unwrap(),
            Mode::Network("app-net".into())
        );
        assert!(Mode::parse("").is_err());
        assert!(Mode::parse("a/b").is_err());
    }

    #[test]
    fn first_ip_of_a_cni_result() {
        let r = json!({"ips": [{"address": "10.217.0.5/24", "gateway": "10.217.0.1"}]});
        assert_eq!(first_ip(&r).as_deref(), Some("10.217.0.5"));
        assert_eq!(first_ip(&json!({})), None);
    }
}

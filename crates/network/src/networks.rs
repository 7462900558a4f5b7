//! Network definitions: one JSON file per network under the host-wide
//! network directory (`SKIFF_NETWORK_DIR`, default `/var/lib/skiff-network`),
//! turned into a CNI configuration list (bridge + host-local IPAM, portmap
//! when ports are published) plus per-network iptables rules (`rules`). The default network `skiff` (bridge `skiff0`, 10.217.0.0/24)
//! is created on first use. Networks are host resources like the bridges
//! and iptables chains behind them, so every image store shares them.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{io_at, NetError, Result};

/// The default network's name (`--network bridge` means it).
pub const DEFAULT_NAME: &str = "skiff";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "skiff0";
/// The default network's subnet.
pub const DEFAULT_SUBNET: &str = "10.217.0.0/24";
/// The default network directory.
pub const DEFAULT_DIR: &str = "/var/lib/skiff-network";

/// One network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// Name (`--network NAME`).
    pub name: String,
    /// Linux bridge the containers' veths are attached to.
    pub bridge: String,
    /// IPv4 subnet (CIDR).
    pub subnet: String,
    /// Gateway (the bridge's address).
    pub gateway: String,
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address (host bits cleared).
    pub addr: u32,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/len` (IPv4; 8 <= len <= 30).
    pub fn parse(s: &str) -> Result<Cidr> {
        let bad = || {
            NetError::Invalid(format!(
                "subnet {s:?}: expected an IPv4 CIDR like 10.218.0.0/24"
            ))
        };
        let (a, l) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u8 = l.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(NetError::Invalid(format!(
                "subnet {s:?}: prefix length must be 8-30"
            )));
        }
        Ok(Cidr {
            addr: u32::from(addr) & Self::mask(len),
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, o: &Cidr) -> bool {
        let m = Self::mask(self.len.min(o.len));
        self.addr & m == o.addr & m
    }

    /// The first host address (the gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr + 1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

/// Checks a network name (docker's rule, 64 characters at most).
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(NetError::Invalid(format!(
            "network name {name:?}: use letters, digits, '_', '.', '-' (64 at most, starting with a letter or digit)"
        )));
    }
    if matches!(name, "host" | "none" | "bridge") {
        return Err(NetError::Invalid(format!(
            "network name {name:?} is reserved"
        )));
    }
    Ok(())
}

/// An exclusive `flock` held until dropped.
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// The host's network definitions.
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

impl Networks {
    /// The directory from `SKIFF_NETWORK_DIR`, or [`DEFAULT_DIR`].
    pub fn open_default() -> Result<Networks> {
        let dir = std::env::var_os("SKIFF_NETWORK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_DIR.into());
        Networks::open(&dir)
    }

    /// Opens (creating, 0700) a network directory.
    pub fn open(dir: &Path) -> Result<Networks> {
        use std::os::unix::fs::DirBuilderExt as _;
        for d in [
            dir.to_path_buf(),
            dir.join("networks"),
            dir.join("locks"),
            dir.join("members"),
            dir.join("ipam"),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io_at(&d))?;
        }
        Ok(Networks { dir: dir.into() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.dir.join("networks").join(format!("{name}.json"))
    }

    /// Where the members (attachments) of `name` are recorded.
    pub fn members_dir(&self, name: &str) -> PathBuf {
        self.dir.join("members").join(name)
    }

    /// host-local's lease directory for `name`.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// Takes the lock named `what` (a network name, or `.defs`).
    pub fn lock(&self, what: &str) -> Result<Lock> {
        let p = self.dir.join("locks").join(format!("{what}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_at(&p))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map(Lock)
            .map_err(|(_, e)| NetError::Sys {
                what: format!("locking {}", p.display()),
                source: e,
            })
    }

    /// Resolves `--network` names: `bridge` is the default network, which
    /// is created when missing.
    pub fn get(&self, name: &str) -> Result<NetworkDef> {
        let name = if name == "bridge" { DEFAULT_NAME } else { name };
        match self.read(name)? {
            Some(d) => Ok(d),
            None if name == DEFAULT_NAME => {
                match self.create(DEFAULT_NAME, Some(DEFAULT_SUBNET), Some(DEFAULT_BRIDGE)) {
                    Ok(d) => Ok(d),
                    // Created by a concurrent first use.
                    Err(_) => self
                        .read(name)?
                        .ok_or_else(|| NetError::NotFound(name.into())),
                }
            }
            None => Err(NetError::NotFound(name.into())),
        }
    }

    fn read(&self, name: &str) -> Result<Option<NetworkDef>> {
        if name != DEFAULT_NAME {
            check_name(name)?;
        }
        let p = self.def_path(name);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| NetError::Invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// All networks, by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>> {
        let d = self.dir.join("networks");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&d).map_err(io_at(&d))?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = n.strip_suffix(".json") {
                if let Ok(Some(def)) = self.read(name) {
                    out.push(def);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates network `name` on `subnet` (default: the first free
    /// 10.217.N.0/24 that overlaps no network and no host route).
    pub fn create(
        &self,
        name: &str,
        subnet: Option<&str>,
        bridge: Option<&str>,
    ) -> Result<NetworkDef> {
        if name != DEFAULT_NAME {
            check_name(name)?;
        }
        let _lock = self.lock(".defs")?;
        if self.read(name)?.is_some() {
            return Err(NetError::Invalid(format!(
                "network {name:?} already exists"
            )));
        }
        let existing = self.list()?;
        let taken: Vec<Cidr> = existing
            .iter()
            .filter_map(|d| Cidr::parse(&d.subnet).ok())
            .chain(host_routes())
            .collect();
        let cidr = match subnet {
            Some(s) => {
                let c = Cidr::parse(s)?;
                if let Some(o) = existing
                    .iter()
                    .find(|d| Cidr::parse(&d.subnet).is_ok_and(|x| x.overlaps(&c)))
                {
                    return Err(NetError::Invalid(format!(
                        "subnet {c} overlaps network {:?} ({})",
                        o.name, o.subnet
                    )));
                }
                c
            }
            None => (1..=254u32)
                .map(|n| Cidr {
                    addr: u32::from(Ipv4Addr::new(10, 217, n as u8, 0)),
                    len: 24,
                })
                .find(|c| !taken.iter().any(|t| t.overlaps(c)))
                .ok_or_else(|| {
                    NetError::Invalid("no free subnet in 10.217.0.0/16: give --subnet".into())
                })?,
        };
        let bridge = match bridge {
            Some(b) => b.to_string(),
            None => format!("sk-{}", &crate::random_hex()[..12]),
        };
        let def = NetworkDef {
            name: name.into(),
            bridge,
            subnet: cidr.to_string(),
            gateway: cidr.first_host().to_string(),
        };
        let p = self.def_path(name);
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&def).expect("json"))
            .map_err(io_at(&tmp))?;
        let linked = std::fs::hard_link(&tmp, &p);
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(io_at(&p))?;
        Ok(def)
    }

    /// Names of the containers attached to `name`.
    pub fn members(&self, name: &str) -> Vec<crate::attach::Member> {
        crate::attach::read_members(&self.members_dir(name))
    }

    /// Removes a network with no container attached: its definition, its
    /// leases and its bridge.
    pub fn remove(&self, name: &str) -> Result<NetworkDef> {
        let name = if name == "bridge" { DEFAULT_NAME } else { name };
        let _defs = self.lock(".defs")?;
        let _net = self.lock(name)?;
        let def = self
            .read(name)?
            .ok_or_else(|| NetError::NotFound(name.into()))?;
        let members = self.members(name);
        if !members.is_empty() {
            let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
            return Err(NetError::Invalid(format!(
                "network {name:?} is in use by {names:?}: remove those containers first"
            )));
        }
        let p = self.def_path(name);
        std::fs::remove_file(&p).map_err(io_at(&p))?;
        let _ = std::fs::remove_dir_all(self.members_dir(name));
        let _ = std::fs::remove_dir_all(self.ipam_dir().join(name));
        crate::rules::remove(&def);
        if Path::new("/sys/class/net").join(&def.bridge).exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "delete", &def.bridge, "type", "bridge"])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .status();
        }
        Ok(def)
    }

    /// The CNI configuration list of `def`.
    pub fn conflist(&self, def: &NetworkDef) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": def.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": def.bridge,
                    "isGateway": true,
                    // NAT and forwarding: per network (`rules`), not per container.
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.ipam_dir(),
                        "ranges": [[{"subnet": def.subnet, "gateway": def.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }
}

/// The host's IPv4 routes (from `/proc/net/route`), default route excluded.
fn host_routes() -> Vec<Cidr> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            let len = mask.count_ones() as u8;
            (len > 0).then_some(Cidr {
                addr: dst & mask,
                len,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let a = Cidr::parse("10.217.0.0/24").unwrap();
        assert_eq!(a.first_host().to_string(), "10.217.0.1");
        assert!(a.overlaps(&Cidr::parse("10.217.0.128/25").unwrap()));
        assert!(a.overlaps(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert!(!a.overlaps(&Cidr::parse("10.217.1.0/24").unwrap()));
        assert_eq!(
            Cidr::parse("10.217.3.7/24").unwrap().to_string(),
            "10.217.3.0/24"
        );
        for bad in ["10.0.0.0", "10.0.0.0/31", "x/24", "::1/64"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("app-net_1.x").is_ok());
        for bad in ["", "-x", "a/b", "host", "none", "bridge", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_remove_definitions() {
        let tmp = tempfile::tempdir().unwrap();
        let n = Networks::open(tmp.path()).unwrap();
        let a = n.create("a", Some("10.99.0.0/24"), None).unwrap();
        assert_eq!(a.gateway, "10.99.0.1");
        assert!(a.bridge.starts_with("sk-") && a.bridge.len() <= 15);
        assert!(n.create("a", None, None).is_err());
        assert!(n.create("b", Some("10.99.0.128/25"), None).is_err());
        let b = n.create("b", None, None).unwrap();
        assert!(b.subnet.starts_with("10.217."));
        assert_eq!(n.list().unwrap().len(), 2);
        let l = n.conflist(&a);
        assert_eq!(
            l["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.99.0.0/24"
        );
        n.remove("a").unwrap();
        assert!(matches!(n.get("a"), Err(NetError::NotFound(_))));
    }
}

//! The per-network iptables rules, installed once per network and boot
//! (as docker does for its bridges) instead of per container by the CNI
//! `bridge` (`ipMasq`) and `firewall` plugins: those cost 27 `iptables`
//! executions per container (ADD + DEL), most of a container's start and
//! removal. Three rules in FORWARD and one in nat POSTROUTING, each tagged
//! with the comment `skiff:<network>`; a marker under `/run` (tmpfs, so
//! gone at reboot like the rules) records that they are in place.

use std::path::PathBuf;
use std::process::Command;

use crate::networks::NetworkDef;
use crate::{NetError, Result};

/// Where the "rules installed" markers live.
const MARKERS: &str = "/run/skiff-network";

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// (table, chain, rule arguments) of `def`'s rules.
fn rules(def: &NetworkDef) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let tag = format!("skiff:{}", def.name);
    let b = def.bridge.clone();
    let v = |a: &[&str]| -> Vec<String> {
        let mut r: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        r.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            tag.clone(),
        ]);
        r
    };
    vec![
        (
            "nat",
            "POSTROUTING",
            v(&["-s", &def.subnet, "!", "-o", &b, "-j", "MASQUERADE"]),
        ),
        // Out of the bridge: anything (to the uplink and to peers).
        ("filter", "FORWARD", v(&["-i", &b, "-j", "ACCEPT"])),
        // Into it: replies, and connections to published ports (DNAT'd).
        (
            "filter",
            "FORWARD",
            v(&[
                "-o",
                &b,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "ACCEPT",
            ]),
        ),
    ]
}

fn iptables(table: &str, op: &str, chain: &str, rule: &[String]) -> std::io::Result<bool> {
    let st = Command::new("iptables")
        .env("PATH", PATH)
        .args(["-w", "-t", table, op, chain])
        .args(rule)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    Ok(st.success())
}

fn marker(def: &NetworkDef) -> PathBuf {
    PathBuf::from(MARKERS).join(format!("{}.rules", def.bridge))
}

/// Installs `def`'s rules unless this boot already did (the caller holds
/// the network's lock).
pub fn ensure(def: &NetworkDef) -> Result<()> {
    let m = marker(def);
    if m.exists() {
        return Ok(());
    }
    let fail = |what: String| NetError::Plugin {
        plugin: "iptables".into(),
        command: "network rules".into(),
        message: what,
    };
    for (table, chain, rule) in rules(def) {
        let present = iptables(table, "-C", chain, &rule)
            .map_err(|e| fail(format!("running iptables: {e} (apt-get install iptables)")))?;
        if !present && !iptables(table, "-I", chain, &rule).unwrap_or(false) {
            return Err(fail(format!(
                "iptables -t {table} -I {chain} {} failed",
                rule.join(" ")
            )));
        }
    }
    let _ = std::fs::create_dir_all(MARKERS);
    let _ = std::fs::write(&m, b"");
    Ok(())
}

/// Removes `def`'s rules (every copy) and the marker.
pub fn remove(def: &NetworkDef) {
    for (table, chain, rule) in rules(def) {
        while iptables(table, "-D", chain, &rule).unwrap_or(false) {}
    }
    let _ = std::fs::remove_file(marker(def));
}

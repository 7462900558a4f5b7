//! The container's `/etc/hosts` and `/etc/resolv.conf`, as docker writes
//! them: localhost lines, the container's own name, its peers on a user
//! network and `--add-host` entries; the host's resolver configuration
//! without loopback nameservers (unreachable from another netns), or the
//! `--dns` servers.

use std::io::Write as _;
use std::path::Path;

use crate::{io_at, NetError, Result};

/// Docker's fallback when the host has only loopback nameservers.
pub const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// An `--add-host NAME:IP` entry.
pub fn parse_add_host(s: &str) -> Result<(String, String)> {
    // docker accepts NAME:IP and NAME=IP; the IP may be IPv6 (colons).
    let (name, ip) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(|| NetError::Invalid(format!("--add-host {s:?}: expected NAME:IP")))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(NetError::Invalid(format!(
            "--add-host {s:?}: bad host name {name:?}"
        )));
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(NetError::Invalid(format!(
            "--add-host {s:?}: {ip:?} is not an IP address"
        )));
    }
    Ok((name.into(), ip.into()))
}

/// `/etc/hosts` text: localhost, `own` (ip, names), then `extra` lines.
pub fn hosts(own: Option<(&str, &[String])>, extra: &[(String, String)]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some((ip, names)) = own {
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    s
}

/// `/etc/resolv.conf` text from the host's `host_conf`: `dns` replaces its
/// nameservers; loopback nameservers are dropped unless `keep_loopback`
/// (host network), with docker's public fallback when none is left.
pub fn resolv_conf(host_conf: &str, dns: &[String], keep_loopback: bool) -> String {
    let mut out = String::new();
    let mut servers = Vec::new();
    for line in host_conf.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if keep_loopback || !loopback {
                servers.push(ns.to_string());
            }
        } else if t.starts_with("search") || t.starts_with("options") || t.starts_with("domain") {
            out.push_str(t);
            out.push('\n');
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    }
    if servers.is_empty() {
        servers = FALLBACK_DNS.iter().map(|s| s.to_string()).collect();
    }
    for ns in servers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

/// Checks `--dns` values.
pub fn check_dns(dns: &[String]) -> Result<()> {
    for d in dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(NetError::Invalid(format!("--dns {d:?}: not an IP address")));
        }
    }
    Ok(())
}

/// Rewrites `path` in place (truncate + write, never rename: the file is
/// bind-mounted into a running container, which must see the new text).
pub fn rewrite_in_place(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_at(path))?;
    f.write_all(text.as_bytes()).map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_drops_loopback_like_docker() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, &[], false),
            "search example.org\noptions edns0\nnameserver 10.0.0.2\n"
        );
        assert!(resolv_conf(host, &[], true).contains("nameserver 127.0.0.53\n"));
        assert_eq!(
            resolv_conf("nameserver 127.0.0.1\n", &[], false),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(host, &["1.1.1.1".into()], false),
            "search example.org\noptions edns0\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn hosts_and_add_host() {
        assert_eq!(
            parse_add_host("db:10.0.0.5").unwrap(),
            ("db".into(), "10.0.0.5".into())
        );
        assert_eq!(parse_add_host("v6:::1").unwrap().1, "::1");
        assert!(parse_add_host("db:nope").is_err());
        assert!(parse_add_host("db").is_err());
        let h = hosts(
            Some(("10.1.0.2", &["c1".to_string()])),
            &[("db".into(), "10.0.0.5".into())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.0.0.5\tdb\n"));
        assert!(h.ends_with("10.1.0.2\tc1\n"));
    }
}

//! `-p [IP:]HOST:CONTAINER[/tcp|udp]` as the `portmap` plugin's
//! `portMappings` runtime capability.

use serde::{Deserialize, Serialize};

use crate::{NetError, Result};

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address to listen on (empty: all).
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

fn port(s: &str, what: &str, flag: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(NetError::Invalid(format!(
            "-p {flag:?}: {what} port {s:?} is not a number in 1-65535"
        ))),
    }
}

impl PortMapping {
    /// Parses docker's `[IP:]HOST:CONTAINER[/tcp|udp]` (IPv6 hosts in brackets).
    pub fn parse(flag: &str) -> Result<PortMapping> {
        let (spec, protocol) = match flag.rsplit_once('/') {
            Some((s, p @ ("tcp" | "udp"))) => (s, p),
            Some((_, p)) => {
                return Err(NetError::Invalid(format!(
                    "-p {flag:?}: protocol {p:?} is not tcp or udp"
                )))
            }
            None => (flag, "tcp"),
        };
        let (ip, rest) = match spec.strip_prefix('[') {
            Some(v6) => match v6.split_once("]:") {
                Some((ip, rest)) => (ip.to_string(), rest),
                None => return Err(NetError::Invalid(format!("-p {flag:?}: unclosed [IPv6]"))),
            },
            None => match spec.matches(':').count() {
                1 => (String::new(), spec),
                2 => {
                    let (ip, rest) = spec.split_once(':').expect("two colons");
                    (ip.to_string(), rest)
                }
                _ => {
                    return Err(NetError::Invalid(format!(
                        "-p {flag:?}: expected [IP:]HOST:CONTAINER[/tcp|udp]"
                    )))
                }
            },
        };
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(NetError::Invalid(format!(
                "-p {flag:?}: {ip:?} is not an IP address"
            )));
        }
        let (h, c) = rest.split_once(':').ok_or_else(|| {
            NetError::Invalid(format!(
                "-p {flag:?}: expected [IP:]HOST:CONTAINER[/tcp|udp]"
            ))
        })?;
        Ok(PortMapping {
            host_port: port(h, "host", flag)?,
            container_port: port(c, "container", flag)?,
            protocol: protocol.into(),
            host_ip: ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let p = PortMapping::parse("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            ("127.0.0.1", 8080, 80, "tcp")
        );
        let p = PortMapping::parse("53:5353/udp").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (53, 5353, "udp")
        );
        assert!(p.host_ip.is_empty());
        let p = PortMapping::parse("[::1]:80:80").unwrap();
        assert_eq!(p.host_ip, "::1");
        for bad in [
            "80",
            "a:80",
            "80:0",
            "1.2.3:80:80",
            "80:80/sctp",
            "1:2:3:4",
            "70000:80",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }
}

//! A CNI client (spec 1.0): runs the plugins of a network configuration
//! list in order for `ADD` (each one getting the previous result) and in
//! reverse for `DEL` (each one getting the cached result), passes runtime
//! capabilities (`portMappings`) to the plugins that declare them, and
//! reports a plugin's JSON error as such.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{NetError, Result};

/// Where the plugin binaries are looked for (`SKIFF_CNI_PATH`, a
/// colon-separated list, replaces it).
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

/// PATH given to the plugins (they run `iptables`), whatever ours is: the
/// runtime runs the teardown as a hook with an empty environment.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container side of one CNI call.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// `CNI_CONTAINERID` (unique per attachment).
    pub container_id: &'a str,
    /// `CNI_NETNS`: the namespace path.
    pub netns: &'a Path,
    /// `CNI_IFNAME`: the interface in the namespace.
    pub ifname: &'a str,
}

fn cni_path() -> String {
    std::env::var("SKIFF_CNI_PATH").unwrap_or_else(|_| DEFAULT_CNI_PATH.into())
}

/// The plugin binary `kind` (`bridge`, ...) from the CNI path.
pub fn find_plugin(kind: &str) -> Result<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return Err(NetError::Invalid(format!("bad CNI plugin type {kind:?}")));
    }
    let path = cni_path();
    path.split(':')
        .map(|d| Path::new(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| NetError::Plugin {
            plugin: kind.into(),
            command: "lookup".into(),
            message: format!(
                "not found in {path} (apt-get install containernetworking-plugins, or set SKIFF_CNI_PATH)"
            ),
        })
}

/// Runs one plugin with `conf` on stdin; returns its parsed stdout (Null when empty).
pub fn exec(command: &str, target: &Target<'_>, conf: &Value) -> Result<Value> {
    let kind = conf["type"].as_str().unwrap_or_default().to_string();
    let bin = find_plugin(&kind)?;
    let fail = |message: String| NetError::Plugin {
        plugin: kind.clone(),
        command: command.into(),
        message,
    };
    let mut child = Command::new(&bin)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", target.container_id)
        .env("CNI_NETNS", target.netns)
        .env("CNI_IFNAME", target.ifname)
        .env("CNI_PATH", cni_path())
        .env("PATH", PLUGIN_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("starting {}: {e}", bin.display())))?;
    let input = serde_json::to_vec(conf).expect("json");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| fail(format!("writing its config: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for it: {e}")))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let message = match &parsed {
            Some(v) if v.get("msg").is_some() => {
                let mut m = v["msg"].as_str().unwrap_or_default().to_string();
                if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
                    m.push_str(&format!(" ({d})"));
                }
                m
            }
            _ => format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        };
        return Err(fail(message));
    }
    Ok(parsed.unwrap_or(Value::Null))
}

/// The config one plugin of `list` gets: its own object plus the list's
/// `name` and `cniVersion`, the previous result and its declared capabilities.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>, caps: &Value) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    let mut rc = serde_json::Map::new();
    if let Some(declared) = plugin["capabilities"].as_object() {
        for (cap, on) in declared {
            if on.as_bool() == Some(true) {
                if let Some(v) = caps.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    conf
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// `ADD` of a configuration list; returns the final result. On a failure,
/// the plugins that ran are deleted again (reverse order) before returning.
pub fn add_list(list: &Value, target: &Target<'_>, caps: &Value) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for (i, p) in plugins(list).iter().enumerate() {
        match exec("ADD", target, &plugin_conf(list, p, prev.as_ref(), caps)) {
            Ok(r) => prev = Some(r),
            Err(e) => {
                for q in plugins(list)[..=i].iter().rev() {
                    let _ = exec("DEL", target, &plugin_conf(list, q, prev.as_ref(), caps));
                }
                return Err(e);
            }
        }
    }
    Ok(prev.unwrap_or_else(|| json!({})))
}

/// `DEL` of a configuration list (reverse order, each plugin with the
/// cached `result`). Every plugin runs; the first error is returned.
pub fn del_list(
    list: &Value,
    target: &Target<'_>,
    result: Option<&Value>,
    caps: &Value,
) -> Result<()> {
    let mut first = None;
    for p in plugins(list).iter().rev() {
        if let Err(e) = exec("DEL", target, &plugin_conf(list, p, result, caps)) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_go_to_the_plugins_that_declare_them() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": [
            {"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]});
        let caps =
            json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp"}]});
        let b = plugin_conf(&list, &list["plugins"][0], None, &caps);
        assert_eq!(b["name"], "n");
        assert!(b.get("runtimeConfig").is_none() && b.get("prevResult").is_none());
        let prev = json!({"ips": []});
        let p = plugin_conf(&list, &list["plugins"][1], Some(&prev), &caps);
        assert_eq!(p["runtimeConfig"]["portMappings"], caps["portMappings"]);
        assert_eq!(p["prevResult"], prev);
        assert_eq!(p["cniVersion"], "1.0.0");
    }
}

//! The security defaults docker and podman give a container, applied to a
//! generated bundle: the default seccomp profile (containers-common's
//! allow-list, `/usr/share/containers/seccomp.json`, as podman reads it),
//! converted to the runtime-spec form for this architecture and the
//! container's capabilities; `--cap-add`/`--cap-drop`; `--privileged`;
//! `no-new-privileges` on request.
//!
//! A profile is JSON in docker's format (a superset of the runtime spec's
//! `linux.seccomp`): rules carry `includes`/`excludes` conditions on
//! architectures and capabilities, resolved here the way moby's
//! `profiles/seccomp` does (every included capability present, no excluded
//! one present, the host architecture listed or not excluded).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::bundle::BundleError;

/// Where containers-common installs the default profile
/// (`SKIFF_SECCOMP_PROFILE` replaces it).
pub const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// `--security-opt seccomp=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// The default profile.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile file (docker's or the runtime spec's format).
    File(PathBuf),
}

/// The security flags of `run --image`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Seccomp choice.
    pub seccomp: Seccomp,
    /// `--privileged`: every capability, no seccomp, no masked or read-only
    /// paths, every device allowed by the device cgroup.
    pub privileged: bool,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
}

/// Every capability this kernel knows (from 0 to `cap_last_cap`).
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities this process can pass on (its bounding set):
/// `--privileged` and `--cap-add ALL` mean these.
fn host_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

fn cap_name(flag: &str, s: &str) -> Result<String, BundleError> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if !ALL_CAPS.contains(&name.as_str()) {
        return Err(BundleError::Invalid(format!(
            "{flag} {s:?}: unknown capability"
        )));
    }
    Ok(name)
}

/// The capability set from `base` with `--cap-add`/`--cap-drop` applied
/// (drops first, as docker does; `ALL` in either).
pub fn capabilities(base: &[String], sec: &Security) -> Result<Vec<String>, BundleError> {
    if sec.privileged {
        return Ok(host_caps());
    }
    let add = sec
        .cap_add
        .iter()
        .map(|c| cap_name("--cap-add", c))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = sec
        .cap_drop
        .iter()
        .map(|c| cap_name("--cap-drop", c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        base.iter().filter(|c| !drop.contains(c)).cloned().collect()
    };
    for c in add {
        if c == "ALL" {
            caps = host_caps();
        } else if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// Go's name of this architecture (the profiles' `arches`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn seccomp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        _ => "",
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a rule's `includes`/`excludes` keep it for `arch` and `caps`.
fn rule_applies(rule: &Value, arch: &str, caps: &[String]) -> bool {
    let has = |c: &&str| caps.iter().any(|x| x == c);
    let inc_arch = strs(&rule["includes"]["arches"]);
    let inc_caps = strs(&rule["includes"]["caps"]);
    let exc_arch = strs(&rule["excludes"]["arches"]);
    let exc_caps = strs(&rule["excludes"]["caps"]);
    (inc_arch.is_empty() || inc_arch.contains(&arch))
        && inc_caps.iter().all(has)
        && !exc_arch.contains(&arch)
        && !exc_caps.iter().any(has)
}

/// Converts a docker-format profile into the runtime spec's
/// `linux.seccomp` for this architecture and `caps`.
pub fn to_oci(profile: &Value, caps: &[String]) -> Result<Value, BundleError> {
    let bad = |what: &str| BundleError::Invalid(format!("seccomp profile: {what}"));
    let default = profile["defaultAction"]
        .as_str()
        .ok_or_else(|| bad("no defaultAction"))?;
    let arch = go_arch();
    let mut out = json!({"defaultAction": default});
    if let Some(e) = profile.get("defaultErrnoRet").filter(|v| v.is_u64()) {
        out["defaultErrnoRet"] = e.clone();
    }
    let mut arches: Vec<String> = strs(&profile["architectures"])
        .iter()
        .map(|s| s.to_string())
        .collect();
    for m in profile["archMap"].as_array().into_iter().flatten() {
        if m["architecture"].as_str() == Some(seccomp_arch()) {
            arches.push(seccomp_arch().into());
            arches.extend(strs(&m["subArchitectures"]).iter().map(|s| s.to_string()));
        }
    }
    if !arches.is_empty() {
        out["architectures"] = json!(arches);
    }
    let mut rules = Vec::new();
    for r in profile["syscalls"]
        .as_array()
        .ok_or_else(|| bad("no syscalls list"))?
    {
        if !rule_applies(r, arch, caps) {
            continue;
        }
        let mut names = strs(&r["names"]);
        if let Some(n) = r["name"].as_str() {
            names.push(n);
        }
        if names.is_empty() {
            continue;
        }
        let mut o = json!({"names": names, "action": r["action"].as_str().ok_or_else(|| bad("a rule has no action"))?});
        if let Some(a) = r["args"].as_array().filter(|a| !a.is_empty()) {
            o["args"] = Value::Array(a.clone());
        }
        if let Some(e) = r.get("errnoRet").filter(|v| v.is_u64()) {
            o["errnoRet"] = e.clone();
        }
        rules.push(o);
    }
    out["syscalls"] = Value::Array(rules);
    Ok(out)
}

/// Reads and converts the profile at `path`.
fn load(path: &std::path::Path, caps: &[String]) -> Result<Value, BundleError> {
    let text = std::fs::read(path).map_err(|e| BundleError::Io {
        path: path.into(),
        source: e,
    })?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| BundleError::Invalid(format!("seccomp profile {}: {e}", path.display())))?;
    to_oci(&v, caps).map_err(|e| BundleError::Invalid(format!("{}: {e}", path.display())))
}

/// The default profile's path.
pub fn default_profile() -> PathBuf {
    std::env::var_os("SKIFF_SECCOMP_PROFILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_PROFILE.into())
}

/// Applies `sec` to a generated config (capabilities already the image
/// defaults). A missing default profile means no filter (the CLI warns).
pub fn apply(spec: &mut Value, sec: &Security) -> Result<(), BundleError> {
    let base: Vec<String> = strs(&spec["process"]["capabilities"]["bounding"])
        .iter()
        .map(|s| s.to_string())
        .collect();
    let caps = capabilities(&base, sec)?;
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = json!(caps);
    }
    spec["process"]["noNewPrivileges"] = json!(sec.no_new_privileges);
    if sec.privileged {
        let linux = &mut spec["linux"];
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        return Ok(());
    }
    let path = match &sec.seccomp {
        Seccomp::Unconfined => return Ok(()),
        Seccomp::File(p) => p.clone(),
        Seccomp::Default => match default_profile() {
            p if p.exists() => {
                let mut oci = load(&p, &caps)?;
                docker_restrictions(&mut oci, &caps);
                spec["linux"]["seccomp"] = oci;
                return Ok(());
            }
            _ => return Ok(()),
        },
    };
    spec["linux"]["seccomp"] = load(&path, &caps)?;
    Ok(())
}

/// Never allowed by docker's default profile (and allowed by containers-common's).
const DOCKER_DENIED: [&str; 3] = ["keyctl", "add_key", "request_key"];
/// Allowed by docker's default profile only with `CAP_SYS_ADMIN`.
const DOCKER_SYS_ADMIN: [&str; 8] = [
    "unshare",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "setns",
    "clone",
    "clone3",
];
/// The namespace flags docker's profile refuses in `clone` without CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

/// Makes a containers-common profile as strict as docker's default one:
/// no keyring syscalls; without `CAP_SYS_ADMIN` no `unshare`, `mount`,
/// `setns`, `pivot_root`, `clone` with namespace flags, and `clone3`
/// answering ENOSYS (so libc falls back to `clone`), as docker does.
fn docker_restrictions(oci: &mut Value, caps: &[String]) {
    let sys_admin = caps.iter().any(|c| c == "CAP_SYS_ADMIN");
    let Some(rules) = oci["syscalls"].as_array_mut() else {
        return;
    };
    for r in rules.iter_mut() {
        if r["action"] != "SCMP_ACT_ALLOW" {
            continue;
        }
        if let Some(names) = r["names"].as_array_mut() {
            names.retain(|n| {
                let n = n.as_str().unwrap_or_default();
                !DOCKER_DENIED.contains(&n) && (sys_admin || !DOCKER_SYS_ADMIN.contains(&n))
            });
        }
    }
    rules.retain(|r| r["names"].as_array().is_some_and(|n| !n.is_empty()));
    // EPERM, as docker answers (the profile's default errno is ENOSYS).
    let mut denied: Vec<&str> = DOCKER_DENIED.to_vec();
    if !sys_admin {
        denied.extend(DOCKER_SYS_ADMIN.iter().filter(|n| !n.starts_with("clone")));
    }
    rules.push(json!({"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}));
    if !sys_admin {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_add_drop_all() {
        let base: Vec<String> = vec!["CAP_CHOWN".into(), "CAP_KILL".into()];
        let sec = |add: &[&str], drop: &[&str]| Security {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            capabilities(&base, &sec(&["net_admin"], &["kill"])).unwrap(),
            ["CAP_CHOWN", "CAP_NET_ADMIN"]
        );
        assert_eq!(
            capabilities(&base, &sec(&["kill"], &["all"])).unwrap(),
            ["CAP_KILL"]
        );
        assert_eq!(
            capabilities(&base, &sec(&["ALL"], &[])).unwrap().len(),
            ALL_CAPS.len()
        );
        assert!(capabilities(&base, &sec(&["CAP_NOPE"], &[])).is_err());
    }

    #[test]
    fn docker_strictness_over_containers_common() {
        let mut o = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read", "keyctl", "unshare", "clone"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["add_key"], "action": "SCMP_ACT_ALLOW"}]});
        docker_restrictions(&mut o, &["CAP_CHOWN".into()]);
        let rules = o["syscalls"].as_array().unwrap();
        assert_eq!(rules[0]["names"], json!(["read"]));
        assert_eq!(rules.len(), 4, "{o}");
        assert_eq!(rules[1]["errnoRet"], 1);
        assert!(rules[1]["names"]
            .as_array()
            .unwrap()
            .contains(&json!("keyctl")));
        assert_eq!(rules[2]["args"][0]["value"], CLONE_NS_FLAGS);
        assert_eq!(rules[3]["errnoRet"], 38);
        let mut o = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["keyctl", "unshare"], "action": "SCMP_ACT_ALLOW"}]});
        docker_restrictions(&mut o, &["CAP_SYS_ADMIN".into()]);
        assert_eq!(o["syscalls"][0]["names"], json!(["unshare"]));
    }

    #[test]
    fn profile_rules_follow_caps_and_arch() {
        let p = json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": seccomp_arch(), "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_MIPS", "subArchitectures": []}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["unshare"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_PTRACE"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        let names = |v: &Value| -> Vec<String> {
            v["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["names"][0].as_str().unwrap().to_string())
                .collect()
        };
        let o = to_oci(&p, &[]).unwrap();
        assert_eq!(names(&o), ["read", "ptrace", "personality"]);
        assert_eq!(o["architectures"], json!([seccomp_arch(), "SCMP_ARCH_X86"]));
        assert_eq!(o["defaultErrnoRet"], 1);
        assert_eq!(o["syscalls"][1]["errnoRet"], 1);
        assert_eq!(o["syscalls"][2]["args"][0]["value"], 8);
        let o = to_oci(&p, &["CAP_SYS_ADMIN".into(), "CAP_SYS_PTRACE".into()]).unwrap();
        assert_eq!(names(&o), ["read", "unshare", "personality"]);
        // The converted profile is a valid runtime-spec section.
        let spec = json!({"ociVersion": "1.0.2", "linux": {"seccomp": o}});
        serde_json::from_value::<oci_spec::runtime::Spec>(spec).unwrap();
    }
}

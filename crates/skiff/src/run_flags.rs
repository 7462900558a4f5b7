//! The network flags of `skiff run --image` (docker's): parsed by both
//! executables (the runtime-only `skiff` hands `run --image` to
//! `skiff-tools`, which acts on them in `network_cmd`).

/// `--network`, `-p`, `--dns`, `--add-host`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetFlags {
    /// Network: bridge (the default network), host, none or a network name.
    #[arg(long = "network", alias = "net", requires = "image")]
    pub network: Option<String>,
    /// Publish a container port: [IP:]HOST:CONTAINER[/tcp|udp] (bridge networks).
    #[arg(short = 'p', long = "publish", requires = "image")]
    pub publish: Vec<String>,
    /// DNS server for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long, requires = "image")]
    pub dns: Vec<String>,
    /// Add NAME:IP to the container's /etc/hosts.
    #[arg(long = "add-host", requires = "image")]
    pub add_host: Vec<String>,
}

/// `--privileged`, `--cap-add`, `--cap-drop`, `--security-opt`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityFlags {
    /// Every capability, no seccomp filter, no masked paths, all devices allowed.
    #[arg(long, requires = "image")]
    pub privileged: bool,
    /// Add a capability (NET_ADMIN, CAP_SYS_TIME, ALL).
    #[arg(long = "cap-add", requires = "image")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long = "cap-drop", requires = "image")]
    pub cap_drop: Vec<String>,
    /// no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json.
    #[arg(long = "security-opt", requires = "image")]
    pub security_opt: Vec<String>,
}

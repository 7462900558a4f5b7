//! `skiff run --image` networking, checked from the outside: a published
//! busybox `httpd` answers from the host, two containers on a user network
//! reach each other by name, `/etc/hosts` and `/etc/resolv.conf` are what
//! docker writes, and deleting a container leaves no bundle, mount, veth,
//! iptables rule, IPAM lease or netns behind.
//!
//! The containers run the embedded default image (busybox). Each test uses
//! its own store, state root, container names and user network (named
//! after the test process, with a subnet the network crate allocates under
//! the host-wide network directory's lock), so tests run in parallel; a
//! guard deletes the containers and the network even when an assertion
//! fails. Needs root and Debian's containernetworking-plugins; skips
//! loudly otherwise. Run: `cargo nextest run -p skiff --test run_image`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: the host runs many builds at once.
const LIMIT: Duration = Duration::from_secs(60);

fn skiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
}

/// One test's store, state root, containers and networks.
struct World {
    tmp: tempfile::TempDir,
    store: PathBuf,
    root: PathBuf,
    containers: Vec<String>,
    networks: Vec<String>,
}

impl World {
    /// Root, the plugins and the default image, or None (after a SKIP line).
    fn new(tag: &str) -> Option<World> {
        if !common::need_root() {
            return None;
        }
        if !Path::new("/usr/lib/cni/bridge").exists() {
            common::skip("containernetworking-plugins is not installed (/usr/lib/cni/bridge)");
            return None;
        }
        let tmp = common::temp_dir(tag);
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let w = World {
            store: base.join("store"),
            root: base.join("state"),
            tmp,
            containers: Vec::new(),
            networks: Vec::new(),
        };
        let probe = w.run(&["image", "pull", "-q", "skiff/default"]);
        if !probe.ok() {
            common::skip(&format!("default image unavailable: {}", probe.stderr));
            return None;
        }
        Some(w)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = skiff();
        c.arg("--store")
            .arg(&self.store)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        common::output_timeout(&mut self.cmd(args), LIMIT)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        out.assert_ok(&format!("skiff {args:?}"));
        out.stdout
    }

    /// A container name unique to this process (deleted by the guard).
    fn name(&mut self, tag: &str) -> String {
        let n = common::unique_id(tag);
        self.containers.push(n.clone());
        n
    }

    /// A user network unique to this process (removed by the guard).
    fn network(&mut self, tag: &str) -> String {
        let n = common::unique_id(tag);
        self.networks.push(n.clone());
        self.ok(&["network", "create", &n]);
        n
    }

    /// `run -d`: output to files (the container keeps the runtime's stdio,
    /// so pipes would not reach EOF); returns (success, stdout, stderr).
    fn run_detached(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.tmp.path().join("run.out");
        let err = self.tmp.path().join("run.err");
        let mut child = self
            .cmd(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn skiff run -d");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("skiff run -d did not return within {LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.success(),
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(&err).unwrap_or_default(),
        )
    }

    /// The container's recorded network state.
    fn attachment(&self, name: &str) -> Value {
        let p = self.store.join("network").join(name).join("network.json");
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in self.containers.iter().rev() {
            let _ = self.run(&["delete", "-f", c]);
        }
        for n in &self.networks {
            let _ = self.run(&["network", "rm", n]);
        }
    }
}

/// What a container's network left on the host, read before it goes.
struct Footprint {
    cni_id: String,
    veth: String,
    netns: PathBuf,
    bundle: PathBuf,
    state: PathBuf,
}

impl Footprint {
    fn of(w: &World, name: &str) -> Footprint {
        let att = w.attachment(name);
        let veth = att["result"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i.get("sandbox").is_none() && i["name"].as_str().unwrap().starts_with("veth"))
            .unwrap_or_else(|| panic!("no host veth in {att}"))["name"]
            .as_str()
            .unwrap()
            .to_string();
        let f = Footprint {
            cni_id: att["cni_id"].as_str().unwrap().into(),
            veth,
            netns: att["netns"].as_str().unwrap().into(),
            bundle: w.store.join("containers").join(name),
            state: w.store.join("network").join(name),
        };
        assert!(
            Path::new("/sys/class/net").join(&f.veth).exists(),
            "veth {}",
            f.veth
        );
        assert!(
            iptables().contains(&f.cni_id),
            "no iptables rule names {}",
            f.cni_id
        );
        f
    }

    /// Nothing of the container is left on the host.
    fn assert_gone(&self, ipam: &Path) {
        assert!(
            !self.bundle.exists(),
            "bundle left: {}",
            self.bundle.display()
        );
        assert!(
            !self.state.exists(),
            "network state left: {}",
            self.state.display()
        );
        assert!(
            !Path::new("/sys/class/net").join(&self.veth).exists(),
            "veth {} left",
            self.veth
        );
        let rules: Vec<String> = iptables()
            .lines()
            .filter(|l| l.contains(&self.cni_id))
            .map(str::to_string)
            .collect();
        assert!(rules.is_empty(), "iptables rules left: {rules:#?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&self.netns.display().to_string()),
            "netns still mounted"
        );
        assert!(
            !mounts.contains(&self.bundle.display().to_string()),
            "rootfs still mounted"
        );
        for e in walk(ipam) {
            let text = std::fs::read_to_string(&e).unwrap_or_default();
            assert!(
                !text.contains(&self.cni_id),
                "IPAM lease left: {}",
                e.display()
            );
        }
    }
}

fn iptables() -> String {
    let mut s = String::new();
    for t in ["filter", "nat"] {
        let out = Command::new("iptables-save")
            .args(["-t", t])
            .output()
            .expect("iptables-save");
        s.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    s
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The host-wide network directory (as skiff-tools picks it).
fn network_dir() -> PathBuf {
    std::env::var_os("SKIFF_NETWORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/lib/skiff-network".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port until something answers (60 s).
fn http_get(port: u16) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < LIMIT {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if body.starts_with("HTTP/") {
                    return body;
                }
                last = format!("answer: {body:?}");
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered HTTP on 127.0.0.1:{port} within {LIMIT:?} ({last})");
}

fn www(w: &World, text: &str) -> String {
    let d = w.tmp.path().join("www");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.html"), text).unwrap();
    format!("{}:/www:ro", d.display())
}

#[test]
fn published_port_answers_from_the_host_and_delete_leaves_nothing() {
    let Some(mut w) = World::new("publish") else {
        return;
    };
    let net = w.network("pub");
    let name = w.name("httpd");
    let port = free_port();
    let marker = format!("published-{}", std::process::id());
    let vol = www(&w, &marker);
    let publish = format!("127.0.0.1:{port}:80");
    let (ok, stdout, stderr) = w.run_detached(&[
        "run",
        "-d",
        "--image",
        "skiff/default",
        "--network",
        &net,
        "-p",
        &publish,
        "-v",
        &vol,
        &name,
        "--",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(ok, "run -d: {stdout}{stderr}");
    assert_eq!(stdout.trim(), name, "run -d prints the container id");
    let body = http_get(port);
    assert!(body.contains("200 OK") && body.contains(&marker), "{body}");
    let f = Footprint::of(&w, &name);
    w.ok(&["delete", "-f", &name]);
    f.assert_gone(&network_dir().join("ipam"));
    // The network goes with its bridge.
    let def: Value = serde_json::from_str(&w.ok(&["network", "inspect", &net])).unwrap();
    let bridge = def[0]["bridge"].as_str().unwrap().to_string();
    assert!(def[0]["containers"].as_array().unwrap().is_empty(), "{def}");
    w.ok(&["network", "rm", &net]);
    w.networks.clear();
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left"
    );
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let Some(mut w) = World::new("peers") else {
        return;
    };
    let net = w.network("peers");
    let server = w.name("server");
    let vol = www(&w, "from-the-server\n");
    let (ok, out, err) = w.run_detached(&[
        "run",
        "-d",
        "--image",
        "skiff/default",
        "--network",
        &net,
        "-v",
        &vol,
        &server,
        "--",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(ok, "run -d: {out}{err}");
    let client = w.name("client");
    // httpd may take a moment to listen: the client retries for 60 s. The
    // name is looked up in /etc/hosts by the script: the embedded image's
    // static busybox cannot use glibc's resolver (NSS; its wget segfaults
    // in getaddrinfo), so the request goes through nc to the address.
    let script = format!(
        "grep -w {server} /etc/hosts; ip=$(awk '$2 == \"{server}\" {{print $1}}' /etc/hosts); \
         i=0; while [ $i -lt 600 ]; do \
         printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 80 | grep from-the-server && exit 0; \
         i=$((i+1)); sleep 0.1; done; exit 1"
    );
    let out = w.ok(&[
        "run",
        "--rm",
        "--image",
        "skiff/default",
        "--network",
        &net,
        &client,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let server_ip = w.attachment(&server)["ip"].as_str().unwrap().to_string();
    assert!(
        out.contains(&format!("{server_ip}\t{server}")),
        "client's /etc/hosts: {out}"
    );
    assert!(out.contains("from-the-server"), "{out}");
    // The server's /etc/hosts listed the client while it ran, and not after.
    let hosts =
        std::fs::read_to_string(w.store.join("network").join(&server).join("hosts")).unwrap();
    assert!(!hosts.contains(&client), "{hosts}");
    assert!(hosts.contains(&format!("\t{server}\n")), "{hosts}");
}

#[test]
fn default_network_writes_hosts_and_resolv_conf_like_docker() {
    let Some(mut w) = World::new("etc") else {
        return;
    };
    let name = w.name("etc");
    let out = w.ok(&[
        "run",
        "--rm",
        "--image",
        "skiff/default",
        "--add-host",
        "db.example:192.0.2.77",
        &name,
        "--",
        "sh",
        "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; ip -o -4 addr show eth0",
    ]);
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let (hosts, resolv, addr) = (parts[0], parts[1], parts[2]);
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("192.0.2.77\tdb.example\n"), "{hosts}");
    // The own line: the address eth0 has, then the name.
    let ip = addr
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(ip.starts_with("10.217."), "default subnet: {addr}");
    assert!(hosts.contains(&format!("{ip}\t{name}\n")), "{hosts}");
    // The host's nameservers without loopback ones (docker's fallback if none).
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let want: Vec<String> = host
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .filter(|ns| !ns.starts_with("127.") && *ns != "::1")
        .map(|ns| format!("nameserver {ns}"))
        .collect();
    let got: Vec<&str> = resolv
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    if want.is_empty() {
        assert_eq!(
            got,
            ["nameserver 8.8.8.8", "nameserver 8.8.4.4"],
            "{resolv}"
        );
    } else {
        assert_eq!(got, want, "{resolv}");
    }
    assert!(
        !w.store.join("network").join(&name).exists(),
        "--rm left the network state"
    );
    // --dns replaces the servers; --network none has loopback only, up.
    let name = w.name("none");
    let out = w.ok(&[
        "run",
        "--rm",
        "--image",
        "skiff/default",
        "--network",
        "none",
        "--dns",
        "192.0.2.53",
        &name,
        "--",
        "sh",
        "-c",
        "cat /etc/resolv.conf; ls /sys/class/net; ip -o link show lo",
    ]);
    assert!(out.contains("nameserver 192.0.2.53\n"), "{out}");
    assert!(!out.contains("eth0"), "{out}");
    assert!(out.contains("UP"), "lo is up: {out}");
}

#[test]
fn bad_network_flags_fail_clearly_and_leave_nothing() {
    let Some(mut w) = World::new("badnet") else {
        return;
    };
    let name = w.name("bad");
    for (flags, needle) in [
        (vec!["-p", "80"], "-p \"80\""),
        (vec!["-p", "127.0.0.1:70000:80"], "-p"),
        (vec!["--network", "no-such-net-skt"], "not found"),
        (vec!["--dns", "resolver"], "--dns"),
        (vec!["--add-host", "db"], "--add-host"),
        (
            vec!["--network", "none", "-p", "8080:80"],
            "-p needs a bridge network",
        ),
    ] {
        let mut args = vec!["run", "--rm", "--image", "skiff/default"];
        args.extend(&flags);
        args.extend([name.as_str(), "--", "true"]);
        let out = w.run(&args);
        let err = &out.stderr;
        assert!(!out.ok(), "{flags:?} succeeded");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert!(
            !w.store.join("network").join(&name).exists(),
            "{flags:?} left network state"
        );
        let left = std::fs::read_dir(w.store.join("containers"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "{flags:?} left a bundle");
    }
}

/// A static probe: each syscall docker's default profile refuses, with the
/// errno it got ("name=0" when allowed).
const DENIED_PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long r;
    r = syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0);
    printf("keyctl=%d\n", r < 0 ? errno : 0);
    r = syscall(SYS_add_key, "user", "k", "v", 1, -2 /* session */);
    printf("add_key=%d\n", r < 0 ? errno : 0);
    r = unshare(CLONE_NEWUSER);
    printf("unshare_user=%d\n", r < 0 ? errno : 0);
    return 0;
}
"#;

#[test]
fn default_seccomp_profile_denies_what_dockers_denies() {
    let Some(mut w) = World::new("seccomp") else {
        return;
    };
    if !Path::new("/usr/share/containers/seccomp.json").exists() {
        common::skip(
            "containers-common's seccomp.json is missing (apt-get install containers-common)",
        );
        return;
    }
    let bin = w.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    if let Err(e) = common::build_static_c(DENIED_PROBE, &bin.join("probe")) {
        common::skip(&format!("cannot build the static probe: {e}"));
        return;
    }
    let vol = format!("{}:/probe:ro", bin.display());
    let probe = |w: &mut World, extra: &[&str]| -> String {
        let name = w.name("sc");
        let mut args = vec![
            "run",
            "--rm",
            "--image",
            "skiff/default",
            "--network",
            "none",
            "-v",
            &vol,
        ];
        args.extend(extra);
        args.extend([
            name.as_str(),
            "--",
            "sh",
            "-c",
            "grep ^Seccomp: /proc/self/status; /probe/probe",
        ]);
        w.ok(&args)
    };
    // Default: filter on (mode 2); EPERM for the keyring and user namespaces.
    let out = probe(&mut w, &[]);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    for want in ["keyctl=1\n", "add_key=1\n", "unshare_user=1\n"] {
        assert!(
            out.contains(want),
            "default profile: want {want:?} in {out}"
        );
    }
    // seccomp=unconfined: no filter; the same calls get through seccomp
    // (unshare(CLONE_NEWUSER) needs no capability).
    let out = probe(&mut w, &["--security-opt", "seccomp=unconfined"]);
    assert!(out.contains("Seccomp:\t0"), "{out}");
    assert!(out.contains("unshare_user=0\n"), "{out}");
    assert!(out.contains("keyctl=0\n"), "{out}");
    // A bad profile file is refused with its name.
    let bad = w.tmp.path().join("bad-profile.json");
    std::fs::write(&bad, "{not json").unwrap();
    let name = w.name("badsc");
    let opt = format!("seccomp={}", bad.display());
    let out = w.run(&[
        "run",
        "--rm",
        "--image",
        "skiff/default",
        "--network",
        "none",
        "--security-opt",
        &opt,
        &name,
        "--",
        "true",
    ]);
    assert!(
        !out.ok() && out.stderr.contains("bad-profile.json"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(w.store.join("containers"))
            .unwrap()
            .count(),
        0
    );
}

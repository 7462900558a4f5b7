//! Image integration tests: skiff against a real distribution registry
//! (Debian's `docker-registry`) on 127.0.0.1 started by each test, images
//! built locally with umoci and pushed with skopeo, a bearer-token front
//! (a small token server + proxy written here) for auth, a cutting/stalling
//! proxy for interrupted pulls, and the embedded default image run for real.
//!
//! Needs root (umoci unpack, overlay mounts, containers) and the Debian
//! packages docker-registry, skopeo and umoci; skips loudly without them.
//! Run: `cargo test -p skiff --test image`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn skip(reason: &str) {
    eprintln!("SKIP: {reason}");
}

/// Root plus the tools; prints SKIP and returns false otherwise.
fn prerequisites(tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("image tests need root (umoci unpack, overlay mounts, containers)");
        return false;
    }
    for t in tools {
        if which(t).is_none() {
            skip(&format!("{t} is not installed (see scripts/deps.sh)"));
            return false;
        }
    }
    true
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn tmpdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skiff-image-{tag}-"))
        .tempdir_in("/tmp")
        .unwrap()
}

fn skiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sk(store: &Path, args: &[&str]) -> Command {
    let mut c = skiff();
    c.arg("--store").arg(store).args(args);
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_http(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut b = [0u8; 12];
            if s.read(&mut b).unwrap_or(0) > 0 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing answers HTTP on 127.0.0.1:{port}");
}

/// Debian's docker-registry on 127.0.0.1, with a temp config and storage.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tmpdir("registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(which("docker-registry").unwrap())
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        wait_http(port);
        Registry {
            child,
            port,
            _dir: dir,
        }
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy in front of the registry does.
#[derive(Clone, Default)]
struct ProxyMode {
    /// Require bearer tokens issued by /token for user:password.
    auth: Option<(String, String)>,
    /// Cut the first large blob response after this many body bytes.
    cut_after: Option<usize>,
    /// When cutting: hang instead of closing.
    stall: bool,
}

#[derive(Default)]
struct ProxyStats {
    tokens: AtomicUsize,
    unauthorized: AtomicUsize,
    range_requests: AtomicUsize,
    cut: AtomicBool,
    issued: Mutex<HashSet<String>>,
}

/// A one-request-per-connection HTTP proxy + token server on 127.0.0.1.
struct Proxy {
    port: u16,
    stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
}

fn read_head(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((buf, rest));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn with_close(head: &str) -> String {
    let mut out = String::new();
    for (i, l) in head.trim_end().lines().enumerate() {
        if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

impl Proxy {
    fn start(backend: u16, mode: ProxyMode) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stats = Arc::new(ProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp, mode) = (st.clone(), sp.clone(), mode.clone());
                std::thread::spawn(move || Proxy::handle(conn, backend, port, &mode, &st, &sp));
            }
        });
        Proxy { port, stats, stop }
    }

    fn handle(
        mut c: TcpStream,
        backend: u16,
        port: u16,
        mode: &ProxyMode,
        st: &ProxyStats,
        stop: &AtomicBool,
    ) {
        let Some((head, rest)) = read_head(&mut c) else {
            return;
        };
        let head_s = String::from_utf8_lossy(&head).into_owned();
        let line = head_s.lines().next().unwrap_or("").to_string();
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let reply = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        };
        if let Some((user, pass)) = &mode.auth {
            if path.starts_with("/token") {
                use base64_lite::encode;
                let want = format!("Basic {}", encode(format!("{user}:{pass}").as_bytes()));
                if header(&head_s, "authorization").as_deref() == Some(want.as_str()) {
                    let tok = format!("tok-{}", st.tokens.fetch_add(1, Ordering::SeqCst));
                    st.issued.lock().unwrap().insert(tok.clone());
                    reply(
                        &mut c,
                        "200 OK",
                        "Content-Type: application/json\r\n",
                        &format!("{{\"token\":\"{tok}\"}}"),
                    );
                } else {
                    reply(&mut c, "401 Unauthorized", "", "{}");
                }
                return;
            }
            let authed = header(&head_s, "authorization")
                .and_then(|h| h.strip_prefix("Bearer ").map(str::to_string))
                .is_some_and(|t| st.issued.lock().unwrap().contains(&t));
            if !authed {
                st.unauthorized.fetch_add(1, Ordering::SeqCst);
                let ch = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\"\r\nContent-Type: application/json\r\n"
                );
                reply(
                    &mut c,
                    "401 Unauthorized",
                    &ch,
                    r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
                );
                return;
            }
        }
        let is_blob_get = line.starts_with("GET ") && path.contains("/blobs/sha256:");
        if is_blob_get && header(&head_s, "range").is_some() {
            st.range_requests.fetch_add(1, Ordering::SeqCst);
        }
        let Ok(mut b) = TcpStream::connect(("127.0.0.1", backend)) else {
            return;
        };
        let _ = b.write_all(with_close(&head_s).as_bytes());
        let _ = b.write_all(&rest);
        let (mut c2, mut b2) = (c.try_clone().unwrap(), b.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut b2);
            let _ = b2.shutdown(Shutdown::Write);
        });
        let Some((rhead, rrest)) = read_head(&mut b) else {
            return;
        };
        let rhead_s = String::from_utf8_lossy(&rhead).into_owned();
        let _ = c.write_all(with_close(&rhead_s).as_bytes());
        let big = header(&rhead_s, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            > 1 << 20;
        let cut = match mode.cut_after {
            Some(n) if is_blob_get && big && !st.cut.swap(true, Ordering::SeqCst) => Some(n),
            _ => None,
        };
        let mut sent = 0usize;
        let mut body = rrest;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if !body.is_empty() {
                let mut chunk = std::mem::take(&mut body);
                if let Some(n) = cut {
                    chunk.truncate(n.saturating_sub(sent));
                }
                if c.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
                if cut.is_some_and(|n| sent >= n) {
                    if mode.stall {
                        while !stop.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    break;
                }
            }
            match b.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let _ = c.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Minimal base64 for the proxy's expected Basic header.
mod base64_lite {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for ch in data.chunks(3) {
            let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= ch.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Builds a two-layer image with umoci in an OCI layout at `layout:tag`:
/// layer 1 is a busybox rootfs with hardlinks, symlinks, xattrs, set-id
/// bits, odd owners and a device-free /dev; layer 2 deletes a file
/// (whiteout), empties and refills a directory, changes modes and adds data.
/// With `big`, a 6 MiB incompressible file is added too.
fn build_image(dir: &Path, big: bool) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    ok(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    ok(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:t", layout.display())));
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    let r = bundle.join("rootfs");
    let sh = |script: &str| {
        ok(Command::new("/bin/sh")
            .arg("-ec")
            .arg(script)
            .current_dir(&r));
    };
    sh("mkdir -p bin etc tmp var/lib/data usr/share/doc opt/gone opt/keep root home/user
        cp /bin/busybox bin/busybox
        for a in sh ls cat id uname echo; do ln -s busybox bin/$a; done
        printf 'root:x:0:0:root:/root:/bin/sh\\nuser:x:1000:1000::/home/user:/bin/sh\\n' > etc/passwd
        printf 'root:x:0:\\nuser:x:1000:\\n' > etc/group
        echo hello > etc/motd
        ln etc/motd etc/motd.hard
        ln -s ../etc/motd usr/motd.rel
        ln -s /etc/motd usr/motd.abs
        echo secret > root/.secret; chmod 600 root/.secret
        echo owned > home/user/file; chown -R 1000:1000 home/user
        chmod 1777 tmp
        cp bin/busybox bin/suid; chmod 4755 bin/suid
        echo a > opt/gone/a; echo b > opt/keep/b
        echo x > var/lib/data/x; chown 4242:4343 var/lib/data/x
        mkfifo var/lib/fifo
        seq 1 20000 > usr/share/doc/numbers
        touch -d 2001-02-03T04:05:06 etc/motd");
    // An xattr (user.* namespace, set with Python: the attr tools may be absent).
    ok(Command::new("python3")
        .arg("-c")
        .arg("import os; os.setxattr('etc/motd', 'user.skiff', b'test')")
        .current_dir(&r));
    ok(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    // A fresh unpack, so the next repack is a second layer on top of the first.
    std::fs::remove_dir_all(&bundle).unwrap();
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    sh("rm -rf opt/gone
        rm -f etc/motd.hard
        rm -rf var/lib/data; mkdir -p var/lib/data; echo y > var/lib/data/y
        chmod 700 usr/share/doc
        echo layer2 > etc/layer2");
    if big {
        sh("head -c 6291456 /dev/urandom > opt/big.bin");
    }
    ok(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    layout
}

fn skopeo_push(layout: &Path, dest: &str) {
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{dest}")));
}

/// One line per path: type, mode, owner, size, link target, xattrs, content hash, mtime.
fn tree_manifest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "d"
            } else if ft.is_symlink() {
                "l"
            } else if ft.is_file() {
                "f"
            } else {
                "o"
            };
            let mut line = format!("{kind} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            if ft.is_symlink() {
                line += &format!(" -> {}", std::fs::read_link(&p).unwrap().display());
            }
            if ft.is_file() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                line += &format!(
                    " size={} hash={:x} mtime={} nlink={}",
                    m.len(),
                    h.finish(),
                    m.mtime(),
                    m.nlink()
                );
            }
            line += &xattrs(&p);
            if ft.is_dir() {
                stack.push(p.clone());
            }
            out.insert(rel, line);
        }
    }
    out
}

fn xattrs(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: c is NUL-terminated; the buffer length is passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return String::new();
    }
    let mut out = String::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let s = String::from_utf8_lossy(name);
        if s.starts_with("security.") || s.starts_with("trusted.overlay") {
            continue;
        }
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: both strings are NUL-terminated; the buffer length is passed.
        let l = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        out += &format!(" {s}={}", String::from_utf8_lossy(&v[..l.max(0) as usize]));
    }
    out
}

fn assert_same_tree(a: &Path, b: &Path, what: &str) {
    let (ma, mb) = (tree_manifest(a), tree_manifest(b));
    let mut diffs = Vec::new();
    for k in ma
        .keys()
        .chain(mb.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if ma.get(k) != mb.get(k) {
            diffs.push(format!("{k}: {:?} vs {:?}", ma.get(k), mb.get(k)));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: trees differ:\n{}",
        diffs.join("\n")
    );
    assert!(ma.len() > 20, "{what}: suspiciously small tree");
}

fn inspect(store: &Path, image: &str) -> Value {
    serde_json::from_str(&ok(&mut sk(store, &["image", "inspect", image]))).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Blobs of the pulled image equal the layout's, byte for byte.
fn assert_blobs_identical(store: &Path, layout: &Path, image: &str) {
    let v = inspect(store, image);
    let mut digests = vec![
        v["digest"].as_str().unwrap().to_string(),
        v["manifest"]["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    for l in v["manifest"]["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in digests {
        let hex = d.strip_prefix("sha256:").unwrap();
        let ours = std::fs::read(store.join("blobs/sha256").join(hex)).unwrap();
        let theirs = std::fs::read(layout.join("blobs/sha256").join(hex))
            .unwrap_or_else(|_| panic!("{d} not in the source layout"));
        assert!(ours == theirs, "blob {d} differs");
        assert_eq!(sha256_hex(&ours), hex);
    }
}

/// Mounts the image's snapshots read-only with overlayfs at `at`.
fn mount_snapshots(store: &Path, image: &str, at: &Path) -> bool {
    let v = inspect(store, image);
    let diff_ids: Vec<String> = v["config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let mut chains: Vec<String> = Vec::new();
    for d in &diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(prev) => format!("sha256:{}", sha256_hex(format!("{prev} {d}").as_bytes())),
        };
        chains.push(next);
    }
    let lower: Vec<String> = chains
        .iter()
        .rev()
        .map(|c| {
            store
                .join("snapshots")
                .join(c.strip_prefix("sha256:").unwrap())
                .display()
                .to_string()
        })
        .collect();
    std::fs::create_dir_all(at).unwrap();
    let (upper, work) = (at.with_extension("upper"), at.with_extension("work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let out = run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        ))
        .arg(at));
    if !out.status.success() {
        eprintln!("mount overlay: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

fn umount(at: &Path) {
    let _ = run(Command::new("umount").arg("-l").arg(at));
}

#[test]
fn pull_matches_skopeo_and_umoci() {
    if !prerequisites(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let tmp = tmpdir("pull");
    let reg = Registry::start();
    let layout = build_image(tmp.path(), false);
    let image = format!("{}/test/img:t", reg.host());
    skopeo_push(&layout, &image);
    let store = tmp.path().join("store");
    ok(&mut sk(&store, &["image", "pull", "-q", &image]));
    assert_blobs_identical(&store, &layout, &image);
    // `image ls --format json` names it.
    let ls: Value =
        serde_json::from_str(&ok(&mut sk(&store, &["image", "ls", "--format", "json"]))).unwrap();
    assert_eq!(ls[0]["name"], image);
    // umoci's view of the same image.
    let reference = tmp.path().join("umoci");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&reference));
    // skiff's layers applied in order...
    let applied = tmp.path().join("applied");
    ok(&mut sk(
        &store,
        &["image", "unpack", &image, applied.to_str().unwrap()],
    ));
    assert_same_tree(
        &reference.join("rootfs"),
        &applied,
        "skiff image unpack vs umoci unpack",
    );
    let motd = &tree_manifest(&applied)["etc/motd"];
    assert!(
        motd.contains("user.skiff=test") && motd.contains("mtime=981173106"),
        "{motd}"
    );
    // ...and its per-layer snapshots stacked with overlayfs.
    let merged = tmp.path().join("merged");
    if mount_snapshots(&store, &image, &merged) {
        let res = std::panic::catch_unwind(|| {
            assert_same_tree(
                &reference.join("rootfs"),
                &merged,
                "overlay of skiff snapshots vs umoci unpack",
            )
        });
        umount(&merged);
        res.unwrap();
    } else {
        skip("overlay mount of the snapshots failed: snapshot comparison skipped");
    }
    // Pulling again downloads nothing; two concurrent pulls into a fresh store both succeed.
    let again = run(&mut sk(&store, &["image", "pull", &image]));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 bytes downloaded"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let store2 = tmp.path().join("store2");
    let kids: Vec<Child> = (0..2)
        .map(|_| {
            sk(&store2, &["image", "pull", "-q", &image])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        assert!(k.wait_with_output().unwrap().status.success());
    }
    assert_blobs_identical(&store2, &layout, &image);
    let snaps = std::fs::read_dir(store2.join("snapshots")).unwrap().count();
    let names: Vec<_> = std::fs::read_dir(store2.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let first: Vec<_> = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        snaps, 2,
        "one snapshot per layer, no leftovers: {names:?} vs {first:?}"
    );
    // rm + prune empty the store.
    ok(&mut sk(&store2, &["image", "rm", &image]));
    ok(&mut sk(&store2, &["image", "prune"]));
    assert_eq!(
        std::fs::read_dir(store2.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store2.join("snapshots")).unwrap().count(),
        0
    );
}

#[test]
fn bearer_token_auth_and_login() {
    if !prerequisites(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let tmp = tmpdir("auth");
    let reg = Registry::start();
    let layout = build_image(tmp.path(), false);
    skopeo_push(&layout, &format!("{}/test/auth:t", reg.host()));
    let proxy = Proxy::start(
        reg.port,
        ProxyMode {
            auth: Some(("alice".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let image = format!("{}/test/auth:t", proxy.host());
    let store = tmp.path().join("store");
    let authfile = tmp.path().join("auth.json");
    // Anonymous: refused by the token server.
    let out =
        run(sk(&store, &["image", "pull", "-q", &image]).env("REGISTRY_AUTH_FILE", &authfile));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Wrong password: login fails and stores nothing.
    let out = run(sk(
        &store,
        &[
            "image",
            "login",
            "-u",
            "alice",
            "-p",
            "wrong",
            &proxy.host(),
        ],
    )
    .env("REGISTRY_AUTH_FILE", &authfile));
    assert!(!out.status.success());
    assert!(!authfile.exists());
    // Right password: stored, then used by pull through the challenge flow.
    let mut c = sk(
        &store,
        &[
            "image",
            "login",
            "-u",
            "alice",
            "--password-stdin",
            &proxy.host(),
        ],
    );
    c.env("REGISTRY_AUTH_FILE", &authfile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&authfile).unwrap()).unwrap();
    assert!(saved["auths"][proxy.host()]["auth"].is_string());
    assert_eq!(
        std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = proxy.stats.tokens.load(Ordering::SeqCst);
    ok(sk(&store, &["image", "pull", "-q", &image]).env("REGISTRY_AUTH_FILE", &authfile));
    assert!(
        proxy.stats.tokens.load(Ordering::SeqCst) > before,
        "no token was requested"
    );
    assert!(
        proxy.stats.unauthorized.load(Ordering::SeqCst) > 0,
        "no challenge was answered"
    );
    assert_blobs_identical(&store, &layout, &image);
}

fn partial_size(store: &Path) -> u64 {
    std::fs::read_dir(store.join("ingest"))
        .map(|d| {
            d.flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn interrupted_pull_resumes() {
    if !prerequisites(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let tmp = tmpdir("resume");
    let reg = Registry::start();
    let layout = build_image(tmp.path(), true);
    let direct = format!("{}/test/big:t", reg.host());
    skopeo_push(&layout, &direct);
    // 1. The connection drops mid-blob: the same pull resumes with Range.
    let cutter = Proxy::start(
        reg.port,
        ProxyMode {
            cut_after: Some(1 << 20),
            ..Default::default()
        },
    );
    let store = tmp.path().join("store");
    let image = format!("{}/test/big:t", cutter.host());
    ok(&mut sk(&store, &["image", "pull", "-q", &image]));
    assert!(
        cutter.stats.cut.load(Ordering::SeqCst),
        "the proxy never cut a blob"
    );
    assert!(
        cutter.stats.range_requests.load(Ordering::SeqCst) >= 1,
        "no Range request after the cut"
    );
    assert_blobs_identical(&store, &layout, &image);
    // 2. skiff is killed mid-blob: the next pull resumes from the partial file.
    let staller = Proxy::start(
        reg.port,
        ProxyMode {
            cut_after: Some(2 << 20),
            stall: true,
            ..Default::default()
        },
    );
    let store = tmp.path().join("store2");
    let mut child = sk(
        &store,
        &[
            "image",
            "pull",
            "-q",
            &format!("{}/test/big:t", staller.host()),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let start = Instant::now();
    while partial_size(&store) < 2 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "partial download never reached 2 MiB"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(&mut sk(&store, &["image", "pull", &direct]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let resumed: u64 = err
        .split("resumed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(resumed >= 2 << 20, "expected >= 2 MiB resumed: {err}");
    assert_blobs_identical(&store, &layout, &direct);
    assert_eq!(partial_size(&store), 0, "partial files left behind");
}

#[test]
fn push_import_export_roundtrip() {
    if !prerequisites(&["docker-registry", "skopeo"]) {
        return;
    }
    let tmp = tmpdir("roundtrip");
    let store = tmp.path().join("store");
    let out = run(&mut sk(&store, &["image", "pull", "-q", "skiff/default"]));
    if !out.status.success() {
        skip(&format!(
            "default image unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Push to a real registry; skopeo sees the same manifest digest.
    let reg = Registry::start();
    let dest = format!("{}/skiff/pushed:v1", reg.host());
    assert_eq!(
        ok(&mut sk(
            &store,
            &["image", "push", "-q", "skiff/default", &dest]
        ))
        .trim(),
        digest
    );
    let info: Value = serde_json::from_str(&ok(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{dest}"))))
    .unwrap();
    assert_eq!(info["Digest"], digest);
    // Pushing again uploads nothing new and still succeeds.
    ok(&mut sk(
        &store,
        &["image", "push", "-q", "skiff/default", &dest],
    ));
    // oci-archive: export, import into a fresh store, same digest.
    let oci = tmp.path().join("img.oci.tar");
    ok(&mut sk(
        &store,
        &["image", "export", "skiff/default", oci.to_str().unwrap()],
    ));
    let store2 = tmp.path().join("store2");
    let names = ok(&mut sk(
        &store2,
        &["image", "import", oci.to_str().unwrap()],
    ));
    assert_eq!(names.trim(), "docker.io/skiff/default:latest");
    assert_eq!(inspect(&store2, "skiff/default")["digest"], digest);
    // skopeo reads our oci-archive and docker-archive.
    let layout = tmp.path().join("layout");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!("oci:{}:a", layout.display())));
    let docker = tmp.path().join("img.docker.tar");
    ok(&mut sk(
        &store,
        &[
            "image",
            "export",
            "--format",
            "docker-archive",
            "skiff/default",
            docker.to_str().unwrap(),
        ],
    ));
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("docker-archive:{}", docker.display()))
        .arg(format!("oci:{}:b", layout.display())));
    // ...and imports skopeo's docker-archive: same diff ids, same files.
    let docker2 = tmp.path().join("skopeo.docker.tar");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:b", layout.display()))
        .arg(format!(
            "docker-archive:{}:localhost/from/skopeo:x",
            docker2.display()
        )));
    let store3 = tmp.path().join("store3");
    let names = ok(&mut sk(
        &store3,
        &["image", "import", docker2.to_str().unwrap()],
    ));
    assert_eq!(names.trim(), "localhost/from/skopeo:x");
    let a = inspect(&store, "skiff/default");
    let b = inspect(&store3, "localhost/from/skopeo:x");
    assert_eq!(a["config"]["rootfs"], b["config"]["rootfs"]);
    let (u1, u2) = (tmp.path().join("u1"), tmp.path().join("u2"));
    ok(&mut sk(
        &store,
        &["image", "unpack", "skiff/default", u1.to_str().unwrap()],
    ));
    ok(&mut sk(
        &store3,
        &[
            "image",
            "unpack",
            "localhost/from/skopeo:x",
            u2.to_str().unwrap(),
        ],
    ));
    assert_same_tree(&u1, &u2, "docker-archive round trip");
}

fn no_mounts_under(p: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let s = p.display().to_string();
    assert!(!mounts.contains(&s), "mounts left under {s}");
}

#[test]
fn run_embedded_default_image() {
    if !prerequisites(&[]) {
        return;
    }
    let tmp = tmpdir("run");
    let store = tmp.path().join("store");
    let root = tmp.path().join("state");
    let probe = run(&mut sk(&store, &["image", "pull", "-q", "skiff/default"]));
    if !probe.status.success() {
        skip(&format!(
            "default image unavailable: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
        return;
    }
    let vol = tmp.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the host\n").unwrap();
    let name = format!("img-{}", std::process::id());
    let mut c = sk(
        &store,
        &[
            "run",
            "--image",
            "skiff/default",
            "--rm",
            "-e",
            "FOO=bar",
            "-v",
        ],
    );
    c.arg(format!("{}:/mnt:ro", vol.display()))
        .arg("--root")
        .arg(&root)
        .arg(&name)
        .args(["--", "sh", "-c", "echo $FOO; cat /mnt/f; id -u; hostname; cat /etc/os-release; touch /mnt/x 2>/dev/null || echo ro"]);
    let out = run(&mut c);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("bar\nfrom the host\n0\n"), "{stdout}");
    assert!(stdout.contains(&name), "hostname: {stdout}");
    assert!(stdout.contains("ID=skiff"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ro"), "{stdout}");
    // --rm left nothing behind.
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        0
    );
    no_mounts_under(&store);
    // User from the image's /etc/passwd, exit code passed through.
    let out = run(sk(
        &store,
        &["run", "--image", "skiff/default", "--rm", "-u", "nobody"],
    )
    .arg("--root")
    .arg(&root)
    .args(["--", "sh", "-c", "id; exit 7"]));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("uid=65534"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    no_mounts_under(&store);
    // Copy fallback (no overlayfs) works the same.
    let out = run(sk(&store, &["run", "--image", "skiff/default", "--rm"])
        .env("SKIFF_SNAPSHOTTER", "copy")
        .arg("--root")
        .arg(&root)
        .args(["--", "cat", "/etc/hostname"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "skiff\n");
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        0
    );
}

#[test]
fn bundle_config_from_image_and_flags() {
    if !prerequisites(&[]) {
        return;
    }
    let tmp = tmpdir("bundle");
    let store = tmp.path().join("store");
    let probe = run(&mut sk(&store, &["image", "pull", "-q", "skiff/default"]));
    if !probe.status.success() {
        skip(&format!(
            "default image unavailable: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
        return;
    }
    // Without --rm the stopped container (and its bundle) stays for
    // inspection until `skiff delete NAME`.
    let name = format!("cfg-{}", std::process::id());
    let out = run(sk(
        &store,
        &[
            "run",
            "--image",
            "skiff/default",
            "--memory",
            "64m",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "--root",
        ],
    )
    .arg(tmp.path().join("state"))
    .arg(&name)
    .args(["--", "true"]));
    let bundle = store.join("containers").join(&name);
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let state = run(sk(&store, &["--root"])
        .arg(tmp.path().join("state"))
        .args(["state", &name]));
    let del = run(sk(&store, &["--root"])
        .arg(tmp.path().join("state"))
        .args(["delete", &name]));
    let left = bundle.exists();
    if left {
        let _ = run(Command::new("umount").arg("-l").arg(bundle.join("rootfs")));
        let _ = std::fs::remove_dir_all(&bundle);
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("\"stopped\""),
        "the container stays (stopped) after a foreground run without --rm: {state:?}"
    );
    assert!(del.status.success(), "delete: {del:?}");
    assert!(!left, "`skiff delete` removes the bundle (poststop hook)");
    assert_eq!(cfg["process"]["args"], serde_json::json!(["true"]));
    assert_eq!(cfg["process"]["cwd"], "/tmp");
    assert_eq!(cfg["linux"]["resources"]["memory"]["limit"], 64 << 20);
    let env: Vec<&str> = cfg["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A=1")
            && env.contains(&"PATH=/bin:/sbin:/usr/bin:/usr/sbin")
            && env.contains(&"HOME=/root"),
        "{env:?}"
    );
    assert_eq!(
        cfg["annotations"]["org.opencontainers.image.title"],
        "skiff default (busybox)"
    );
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"mount"),
        "{ns:?}"
    );
}

#[allow(dead_code)]
fn lines(s: &[u8]) -> Vec<String> {
    s.lines().map(|l| l.unwrap()).collect()
}

#[test]
fn platform_selection_from_index() {
    if !prerequisites(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let tmp = tmpdir("platform");
    let reg = Registry::start();
    let layout = build_image(tmp.path(), false);
    // Wrap the manifest in an index with two platforms.
    let idx_path = layout.join("index.json");
    let mut idx: Value = serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    let m = idx["manifests"][0].clone();
    let entry = |arch: &str| {
        let mut e = m.clone();
        e.as_object_mut().unwrap().remove("annotations");
        e["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        e
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("arm64"), entry("amd64")]});
    let body = serde_json::to_vec(&index).unwrap();
    let hex = sha256_hex(&body);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &body).unwrap();
    idx["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"),
        "size": body.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}));
    std::fs::write(&idx_path, serde_json::to_vec(&idx).unwrap()).unwrap();
    let image = format!("{}/test/multi:t", reg.host());
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{image}")));
    let store = tmp.path().join("store");
    let got = ok(&mut sk(
        &store,
        &["image", "pull", "-q", "--platform", "linux/arm64", &image],
    ));
    assert_eq!(got.trim(), m["digest"].as_str().unwrap());
    let out = run(&mut sk(
        &store,
        &["image", "pull", "-q", "--platform", "linux/s390x", &image],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no manifest for platform linux/s390x") && err.contains("linux/arm64"),
        "{err}"
    );
}

/// Writes an OCI layout (tag `t`) whose single gzip layer is built by
/// Python's tarfile from `spec` (a Python list of (name, type, linkname)).
fn hostile_layout(dir: &Path, marker: &Path) -> PathBuf {
    let layout = dir.join("hostile");
    let script = r#"
import gzip, hashlib, io, json, os, sys, tarfile
layout, marker = sys.argv[1], sys.argv[2]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, link="", data=b"pwned"):
        ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = link
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    add("ok.txt")
    add("esc", tarfile.SYMTYPE, os.path.dirname(marker))
    add("esc/" + os.path.basename(marker))
    add("../../../../../.." + marker)
tar = buf.getvalue()
gz = gzip.compress(tar)
os.makedirs(layout + "/blobs/sha256")
def blob(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{layout}/blobs/sha256/{d}", "wb").write(b)
    return {"digest": "sha256:" + d, "size": len(b)}
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}).encode()
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **blob(cfg)),
    "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz))]}).encode()
md = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **blob(m))
md["annotations"] = {"org.opencontainers.image.ref.name": "t"}
open(layout + "/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [md]}))
open(layout + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
"#;
    ok(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&layout)
        .arg(marker));
    layout
}

#[test]
fn hostile_layer_pulled_from_registry_is_refused() {
    if !prerequisites(&["docker-registry", "skopeo", "python3"]) {
        return;
    }
    let tmp = tmpdir("hostile");
    let host_dir = tmp.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    let marker = host_dir.join("pwned");
    let layout = hostile_layout(tmp.path(), &marker);
    let reg = Registry::start();
    let image = format!("{}/test/hostile:t", reg.host());
    skopeo_push(&layout, &image);
    let store = tmp.path().join("store");
    let out = run(&mut sk(&store, &["image", "pull", "-q", &image]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "hostile image was accepted");
    assert!(
        err.contains("refusing layer entry") && err.contains(".."),
        "{err}"
    );
    // Nothing escaped, nothing half-made is visible, the image is not named.
    assert!(!marker.exists(), "the layer wrote outside the store");
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(store.join("snapshots")).unwrap().count(),
        0,
        "staging left behind"
    );
    let ls: Value =
        serde_json::from_str(&ok(&mut sk(&store, &["image", "ls", "--format", "json"]))).unwrap();
    assert_eq!(ls, serde_json::json!([]));
}

/// `run -d` with stdout/stderr in files (a detached container keeps the
/// runtime's stdio, so pipes would never reach EOF); waits at most 60 s.
fn run_detached(cmd: &mut Command, dir: &Path) -> (bool, String) {
    let out = dir.join("run.out");
    let err = dir.join("run.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn skiff run -d");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("skiff run -d did not return within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = format!(
        "{status}\nstdout: {}\nstderr: {}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    (status.success(), text)
}

/// Force-deletes container `name` when dropped (a failed assertion must not
/// leave a sleeping container, its cgroups or its overlay mount behind).
struct DeleteOnDrop<'a> {
    store: &'a Path,
    root: &'a Path,
    name: &'a str,
}

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let _ = run(sk(self.store, &["delete", "-f", self.name])
            .arg("--root")
            .arg(self.root));
        let bundle = self.store.join("containers").join(self.name);
        let _ = run(Command::new("umount").arg("-l").arg(bundle.join("rootfs")));
    }
}

#[test]
fn detached_image_container_is_cleaned_by_delete() {
    if !prerequisites(&[]) {
        return;
    }
    let tmp = tmpdir("detach");
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let store = base.join("store");
    let root = base.join("state");
    let probe = run(&mut sk(&store, &["image", "pull", "-q", "skiff/default"]));
    if !probe.status.success() {
        skip(&format!(
            "default image unavailable: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
        return;
    }
    let name = common::unique_id("detach");
    let _guard = DeleteOnDrop {
        store: &store,
        root: &root,
        name: &name,
    };
    let (started, text) = run_detached(
        sk(&store, &["run", "-d", "--image", "skiff/default", "--root"])
            .arg(&root)
            .arg(&name)
            .args(["--", "sleep", "300"]),
        &base,
    );
    assert!(started, "run -d --image: {text}");
    // While it runs: the bundle, its overlay rootfs and the poststop hook.
    let bundle = store.join("containers").join(&name);
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let hook = &cfg["hooks"]["poststop"][0];
    let tools = hook["path"].as_str().unwrap();
    assert!(
        Path::new(tools).is_absolute() && tools.ends_with("skiff-tools"),
        "{hook}"
    );
    assert_eq!(
        hook["args"],
        serde_json::json!([
            tools,
            "--store",
            store.display().to_string(),
            "image",
            "cleanup-bundle",
            bundle.display().to_string()
        ]),
        "{hook}"
    );
    let mounts = common::mounts_under(&bundle);
    assert_eq!(
        mounts,
        vec![bundle.join("rootfs").display().to_string()],
        "the overlay rootfs is mounted while the container runs"
    );
    let st = ok(sk(&store, &["state", &name]).arg("--root").arg(&root));
    assert!(st.contains("\"running\""), "{st}");
    // A host process sitting in the rootfs keeps the mount busy: the
    // cleanup must still get rid of it (lazy unmount).
    let mut squatter = Command::new("sleep")
        .arg("60")
        .current_dir(bundle.join("rootfs"))
        .spawn()
        .expect("spawn sleep in the rootfs");
    let busy = run(Command::new("umount").arg(bundle.join("rootfs")));
    assert!(
        !busy.status.success(),
        "the rootfs should be busy (a plain umount succeeded)"
    );
    // docker/podman's `rm -f`: everything goes.
    let t = Instant::now();
    ok(sk(&store, &["delete", "-f", &name])
        .arg("--root")
        .arg(&root));
    let delete_ms = t.elapsed().as_millis();
    let _ = squatter.kill();
    let _ = squatter.wait();
    assert!(!bundle.exists(), "bundle left behind: {}", bundle.display());
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        0
    );
    no_mounts_under(&store);
    common::assert_clean(&root, &bundle, &name, &[]);
    // The image's snapshots are untouched, and the store still runs images.
    assert!(
        std::fs::read_dir(store.join("snapshots")).unwrap().count() > 0,
        "snapshots must survive a container cleanup"
    );
    // Idempotent: the hook run again (e.g. by hand) finds nothing to do.
    ok(sk(&store, &["image", "cleanup-bundle"]).arg(&bundle));
    eprintln!(
        "delete -f of a detached image container (kill + hook + unmount + rm): {delete_ms} ms"
    );
}

#[test]
fn cleanup_bundle_refuses_paths_outside_the_store() {
    if !prerequisites(&[]) {
        return;
    }
    let tmp = tmpdir("cleanup-refuse");
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let store = base.join("store");
    ok(&mut sk(&store, &["image", "ls", "-q"]));
    let containers = store.join("containers");
    // A sentinel tree outside the store, reachable through a symlink inside it.
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("rootfs")).unwrap();
    std::fs::write(outside.join("config.json"), "{}").unwrap();
    std::os::unix::fs::symlink(&outside, containers.join("evil")).unwrap();
    // A real bundle-looking directory, to name through `..` and sub-paths.
    let victim = containers.join("victim");
    std::fs::create_dir_all(victim.join("rootfs")).unwrap();
    let etc_before = std::fs::read_dir("/etc").unwrap().count();
    let not_a_store = base.join("plain");
    std::fs::create_dir(&not_a_store).unwrap();
    let cases: Vec<(PathBuf, Vec<PathBuf>)> = vec![
        (store.clone(), vec![PathBuf::from("/etc")]),
        (store.clone(), vec![outside.clone()]),
        (store.clone(), vec![containers.join("evil")]),
        (store.clone(), vec![containers.clone()]),
        (store.clone(), vec![store.join("blobs")]),
        (store.clone(), vec![containers.join("..").join("blobs")]),
        (store.clone(), vec![victim.join("rootfs")]),
        (
            store.clone(),
            vec![containers.join("x").join("..").join("victim")],
        ),
        (store.clone(), vec![PathBuf::from("containers/victim")]),
        (
            not_a_store.clone(),
            vec![not_a_store.join("containers").join("x")],
        ),
    ];
    for (s, args) in &cases {
        let out = run(sk(s, &["image", "cleanup-bundle"]).args(args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("refusing"),
            "cleanup-bundle {args:?} (store {}) was not refused: {}\n{stderr}",
            s.display(),
            out.status
        );
    }
    // Nothing changed.
    assert_eq!(std::fs::read_dir("/etc").unwrap().count(), etc_before);
    assert!(Path::new("/etc/passwd").is_file());
    assert!(outside.join("config.json").is_file() && outside.join("rootfs").is_dir());
    assert!(std::fs::symlink_metadata(containers.join("evil")).is_ok());
    assert!(victim.join("rootfs").is_dir());
    assert!(store.join("blobs").is_dir() && store.join("index.json").is_file());
    assert_eq!(
        std::fs::read_dir(&not_a_store).unwrap().count(),
        0,
        "a path that is not a store must not become one"
    );
    // The store's own bundle goes; asking again succeeds (already gone).
    ok(sk(&store, &["image", "cleanup-bundle"]).arg(&victim));
    assert!(!victim.exists());
    ok(sk(&store, &["image", "cleanup-bundle"]).arg(&victim));
    assert!(outside.join("config.json").is_file());
}

/// Runs `args` as user `nobody` (uid/gid 65534, no supplementary groups).
fn as_nobody(args: &[&str]) -> Output {
    run(Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(args))
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn store_keeps_other_users_out() {
    if !prerequisites(&["docker-registry", "skopeo", "umoci", "setpriv"]) {
        return;
    }
    let tmp = tmpdir("private");
    // Other users may traverse the temp dir: only the store's own modes
    // keep them out. The store pre-exists with 0755 (as an older version
    // left it), with a 0755 snapshots/.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    for d in [&store, &store.join("snapshots")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let reg = Registry::start();
    let layout = build_image(tmp.path(), false);
    let image = format!("{}/test/suid:t", reg.host());
    skopeo_push(&layout, &image);
    let out = run(&mut sk(&store, &["image", "pull", "-q", &image]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull: {stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains(&*store.to_string_lossy()),
        "no warning about the loose store: {stderr}"
    );
    assert_eq!(mode_of(&store), 0o700, "store root");
    assert_eq!(mode_of(&store.join("snapshots")), 0o700, "snapshots/");
    // The image's setuid-root binary is in a snapshot (else this proves nothing).
    let suid: Vec<PathBuf> = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/suid"))
        .filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0)
        })
        .collect();
    assert!(!suid.is_empty(), "no setuid-root bin/suid in the snapshots");
    // Positive control: nobody runs a setuid-root copy of it (busybox,
    // named so) outside the store.
    let outside = tmp.path().join("control");
    std::fs::create_dir(&outside).unwrap();
    let copy = outside.join("busybox");
    std::fs::copy(&suid[0], &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // (exec'd by a shell already running as nobody: setpriv resolves its
    // own program before it gives up root's capabilities.)
    let control = as_nobody(&["/bin/sh", "-c", "exec \"$0\" true", copy.to_str().unwrap()]);
    assert!(
        control.status.success(),
        "setpriv control: {}",
        String::from_utf8_lossy(&control.stderr)
    );
    std::fs::remove_dir_all(&outside).unwrap();
    // From the store: nobody can neither run it nor list the store.
    let exec = as_nobody(&[
        "/bin/sh",
        "-c",
        "exec \"$0\" true",
        suid[0].to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&exec.stderr);
    assert!(
        !exec.status.success() && err.contains("Permission denied"),
        "nobody ran the store's setuid binary: {err}"
    );
    for dir in [store.clone(), store.join("snapshots")] {
        let ls = as_nobody(&["ls", dir.to_str().unwrap()]);
        assert!(!ls.status.success(), "nobody listed {}", dir.display());
    }
    // A second open keeps the private store as it is, silently.
    let out = run(&mut sk(&store, &["image", "ls"]));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn container_records_are_private() {
    if !prerequisites(&[]) {
        return;
    }
    let tmp = tmpdir("records");
    let store = tmp.path().join("store");
    let root = tmp.path().join("state");
    let probe = run(&mut sk(&store, &["image", "pull", "-q", "skiff/default"]));
    if !probe.status.success() {
        skip(&format!(
            "default image unavailable: {}",
            String::from_utf8_lossy(&probe.stderr)
        ));
        return;
    }
    let name = format!("rec-{}", std::process::id());
    let mut c = sk(
        &store,
        &[
            "run",
            "--image",
            "skiff/default",
            "-d",
            "-e",
            "DB_PASSWORD=hunter2",
        ],
    );
    c.arg("--root")
        .arg(&root)
        .arg(&name)
        .args(["--", "sleep", "1000"]);
    // The detached container keeps whatever stdio it is given: files, not
    // pipes a reader would wait on.
    let err_log = tmp.path().join("run.err");
    let out = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(tmp.path().join("run.out")).unwrap())
        .stderr(std::fs::File::create(&err_log).unwrap())
        .status()
        .expect("spawn run -d");
    let cleanup = || {
        let _ = run(sk(&store, &["delete", "-f", &name])
            .arg("--root")
            .arg(&root));
    };
    if !out.success() {
        cleanup();
        panic!(
            "run -d: {}",
            std::fs::read_to_string(&err_log).unwrap_or_default()
        );
    }
    let record = store.join("containers").join(&name).join("config.json");
    let state = root.join(&name).join("state.json");
    let checks = std::panic::catch_unwind(|| {
        assert!(std::fs::read_to_string(&record)
            .unwrap()
            .contains("hunter2"));
        assert_eq!(mode_of(&record), 0o600, "container record");
        assert_eq!(mode_of(&state), 0o600, "state.json");
        assert_eq!(mode_of(&store.join("containers")), 0o700, "containers/");
    });
    cleanup();
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
    assert!(!root.join(&name).exists(), "delete -f left the state");
}

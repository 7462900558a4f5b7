//! Integration tests of `skiff registry`: the real binary serving on
//! 127.0.0.1 (a free port picked by the kernel), driven by real clients
//! (`curl`, `skopeo`, `podman`, `umoci` to build images), plus fault tests
//! (kill -9 mid-upload and restart), auth, TLS, metrics and GC.
//!
//! Run: `cargo test -p skiff --test registry`.

use skiff_registry::digest::{Algorithm, Digest};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! require {
    ($($tool:expr),+) => {
        $(if !have($tool) {
            eprintln!("SKIP: {} not installed", $tool);
            return;
        })+
    };
}

fn sha(data: &[u8]) -> String {
    Digest::compute(Algorithm::Sha256, data).to_string()
}

/// A running `skiff registry serve`, killed on drop.
struct Server {
    child: Option<Child>,
    addr: String,
    storage: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    extra: Vec<String>,
}

impl Server {
    fn start(storage: &Path, extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(storage, extra, "127.0.0.1:0")
    }

    fn spawn(storage: &Path, extra: Vec<String>, listen: &str) -> Server {
        let mut child = Command::new(SKIFF)
            .arg("--store")
            .arg(storage.join("store"))
            .args(["registry", "serve", "--listen", listen, "--storage"])
            .arg(storage)
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn skiff registry serve");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(line.clone());
                }
                l2.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", logs.lock().unwrap()));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Server {
            child: Some(child),
            addr: v["addr"].as_str().unwrap().to_string(),
            storage: storage.to_path_buf(),
            logs,
            extra,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL, then start again on the same port and storage.
    fn kill9_and_restart(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        let mut s = Self::spawn(&self.storage, self.extra.clone(), &self.addr);
        self.child = s.child.take();
        self.logs = s.logs.clone();
    }

    /// SIGTERM and wait; returns whether it exited 0.
    fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Some(st) = c.try_wait().unwrap() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP response as seen by curl.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Runs curl with `args` (plus `-X method url`), `body` as the request body.
fn curl(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>, extra: &[&str]) -> Resp {
    let dir = tempfile::tempdir().unwrap();
    let hfile = dir.path().join("h");
    let bfile = dir.path().join("b");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-X", method, "-D"])
        .arg(&hfile)
        .arg("-o")
        .arg(&bfile)
        .args(extra);
    if method == "HEAD" {
        cmd.arg("-I");
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        let req = dir.path().join("req");
        std::fs::write(&req, b).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", req.display()));
        if !headers
            .iter()
            .any(|h| h.to_lowercase().starts_with("content-type"))
        {
            cmd.args(["-H", "Content-Type: application/octet-stream"]);
        }
    }
    cmd.arg(url);
    let out = cmd.output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read_to_string(&hfile).unwrap_or_default();
    // Keep the last header block (after any 100 Continue).
    let block = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("")
        .to_string();
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: std::fs::read(&bfile).unwrap_or_default(),
    }
}

fn push_blob(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha(data);
    let r = curl(
        "POST",
        &s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")),
        &[],
        Some(data),
        &[],
    );
    assert_eq!(
        r.status,
        201,
        "push blob: {}",
        String::from_utf8_lossy(&r.body)
    );
    d
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image_manifest(
    config: &str,
    config_len: usize,
    layers: &[(&str, usize)],
    extra: serde_json::Value,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers.iter().map(|(d, n)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n})).collect::<Vec<_>>(),
    });
    if let serde_json::Value::Object(e) = extra {
        for (k, v) in e {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).unwrap()
}

fn put_manifest(s: &Server, repo: &str, reference: &str, body: &[u8]) -> Resp {
    curl(
        "PUT",
        &s.url(&format!("/v2/{repo}/manifests/{reference}")),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(body),
        &[],
    )
}

/// Builds an OCI image layout with umoci: busybox plus 2 MiB of random data.
fn build_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let run = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let l = layout.to_str().unwrap();
    run(&["init", "--layout", l]);
    run(&["new", "--image", &format!("{l}:latest")]);
    let bundle = dir.join("bundle");
    run(&[
        "unpack",
        "--image",
        &format!("{l}:latest"),
        bundle.to_str().unwrap(),
    ]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(bb) = bb {
        std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
    }
    let mut noise = vec![0u8; 2 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(rootfs.join("noise"), noise).unwrap();
    run(&[
        "repack",
        "--image",
        &format!("{l}:latest"),
        bundle.to_str().unwrap(),
    ]);
    layout
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn layout_manifest_digest(layout: &Path) -> String {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_string()
}

fn layout_blobs(layout: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn skopeo_roundtrip_oci_and_docker_formats() {
    require!("skopeo", "umoci", "curl");
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let src = format!("oci:{}:latest", layout.display());

    // OCI: push, pull back, same manifest digest and same blobs byte for byte.
    let dst = format!("docker://{}/interop/oci:v1", s.addr);
    let (ok, out) = skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    assert!(ok, "skopeo push: {out}");
    let back = tmp.path().join("back");
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dst,
        &format!("oci:{}:latest", back.display()),
    ]);
    assert!(ok, "skopeo pull: {out}");
    assert_eq!(
        layout_manifest_digest(&layout),
        layout_manifest_digest(&back)
    );
    let head = curl(
        "HEAD",
        &s.url("/v2/interop/oci/manifests/v1"),
        &[],
        None,
        &[],
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(layout_manifest_digest(&layout).as_str())
    );
    for b in layout_blobs(&back) {
        let bytes = std::fs::read(back.join("blobs/sha256").join(&b)).unwrap();
        assert_eq!(sha(&bytes), format!("sha256:{b}"), "pulled blob corrupt");
        assert_eq!(
            bytes,
            std::fs::read(layout.join("blobs/sha256").join(&b)).unwrap()
        );
    }

    // Docker schema2: converted on push, then stable on a second round trip.
    let dst2 = format!("docker://{}/interop/docker:v1", s.addr);
    let (ok, out) = skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &dst2,
    ]);
    assert!(ok, "skopeo push v2s2: {out}");
    let m = curl(
        "GET",
        &s.url("/v2/interop/docker/manifests/v1"),
        &["Accept: application/vnd.docker.distribution.manifest.v2+json"],
        None,
        &[],
    );
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let pushed_digest = sha(&m.body);
    assert_eq!(
        m.header("docker-content-digest"),
        Some(pushed_digest.as_str())
    );
    let dir2 = tmp.path().join("docker-dir");
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dst2,
        &format!("dir:{}", dir2.display()),
    ]);
    assert!(ok, "skopeo pull v2s2: {out}");
    assert_eq!(
        std::fs::read(dir2.join("manifest.json")).unwrap(),
        m.body,
        "manifest not byte-identical"
    );
    // Registry to registry copy keeps the digest (docker format preserved).
    let dst3 = format!("docker://{}/interop/copy:v1", s.addr);
    let (ok, out) = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &dst2,
        &dst3,
    ]);
    assert!(ok, "skopeo registry-to-registry: {out}");
    let m3 = curl(
        "HEAD",
        &s.url("/v2/interop/copy/manifests/v1"),
        &[],
        None,
        &[],
    );
    assert_eq!(
        m3.header("docker-content-digest"),
        Some(pushed_digest.as_str())
    );
    let tags = curl("GET", &s.url("/v2/_catalog"), &[], None, &[]).json();
    assert_eq!(
        tags["repositories"],
        serde_json::json!(["interop/copy", "interop/docker", "interop/oci"])
    );
}

#[test]
fn podman_push_pull() {
    require!("podman", "skopeo", "umoci", "curl");
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let root = tmp.path().join("podroot");
    let runroot = tmp.path().join("podrun");
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // Seed the registry with skopeo, pull it with podman, push it back under
    // another name, forget it locally and pull it again.
    let seed = format!("docker://{}/podman/seed:v1", s.addr);
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &seed,
    ]);
    assert!(ok, "skopeo seed: {out}");
    let seed_ref = format!("{}/podman/seed:v1", s.addr);
    let (ok, out) = podman(&["pull", "--tls-verify=false", &seed_ref]);
    if !ok && out.contains("storage") {
        eprintln!("SKIP: podman storage unusable here: {out}");
        return;
    }
    assert!(ok, "podman pull: {out}");
    let name = format!("{}/podman/img:v1", s.addr);
    let (ok, out) = podman(&["tag", &seed_ref, &name]);
    assert!(ok, "podman tag: {out}");
    let (ok, out) = podman(&["push", "--tls-verify=false", &name]);
    assert!(ok, "podman push: {out}");
    let (ok, out) = podman(&["rmi", "-a", "-f"]);
    assert!(ok, "podman rmi: {out}");
    let (ok, out) = podman(&["pull", "--tls-verify=false", &name]);
    assert!(ok, "podman pull: {out}");
    let m = curl("GET", &s.url("/v2/podman/img/manifests/v1"), &[], None, &[]);
    assert_eq!(m.status, 200);
    let seed_m = curl(
        "GET",
        &s.url("/v2/podman/seed/manifests/v1"),
        &[],
        None,
        &[],
    );
    let layers = |b: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        layers(&m.body),
        layers(&seed_m.body),
        "podman changed the layers"
    );
    assert_eq!(
        m.header("docker-content-digest"),
        Some(sha(&m.body).as_str())
    );
}

#[test]
fn chunked_upload_survives_kill9_and_restart() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start(&tmp.path().join("reg"), &[]);
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let digest = sha(&data);
    let start = curl(
        "POST",
        &s.url("/v2/fault/up/blobs/uploads/"),
        &[],
        None,
        &[],
    );
    assert_eq!(start.status, 202);
    assert_eq!(start.header("range"), Some("0-0"));
    let loc = start.header("location").unwrap().to_string();
    let uuid = start.header("docker-upload-uuid").unwrap().to_string();
    // First chunk, in order.
    let c1 = &data[..1 << 20];
    let r = curl(
        "PATCH",
        &s.url(&loc),
        &["Content-Range: 0-1048575"],
        Some(c1),
        &[],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("range"), Some("0-1048575"));
    // Out of order: rejected with 416 and the current range.
    let r = curl(
        "PATCH",
        &s.url(&loc),
        &["Content-Range: 2097152-2097161"],
        Some(&data[..10]),
        &[],
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-1048575"));

    // A slow PATCH of the rest, killed with SIGKILL mid-stream.
    let rest = tmp.path().join("rest");
    std::fs::write(&rest, &data[1 << 20..]).unwrap();
    let mut slow = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-X",
            "PATCH",
            "--limit-rate",
            "2M",
            "-H",
        ])
        .arg(format!("Content-Range: 1048576-{}", data.len() - 1))
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
        ])
        .arg(format!("@{}", rest.display()))
        .arg(s.url(&loc))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    s.kill9_and_restart();
    let _ = slow.wait();

    // No blob is served under the digest; the upload is still there.
    let r = curl(
        "GET",
        &s.url(&format!("/v2/fault/up/blobs/{digest}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    let st = curl("GET", &s.url(&loc), &[], None, &[]);
    assert_eq!(st.status, 204);
    let range = st.header("range").unwrap();
    let have: usize = range.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
    assert!(
        have >= 1 << 20 && have < data.len(),
        "resumed offset {have}"
    );
    assert_eq!(st.header("docker-upload-uuid"), Some(uuid.as_str()));
    // A wrong final digest is refused and nothing is stored under it.
    let bogus = sha(b"not it");
    let r = curl(
        "PUT",
        &s.url(&format!("{loc}?digest={bogus}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    // Resume from the server's offset and finish with the last chunk.
    let r = curl(
        "PUT",
        &s.url(&format!("{loc}?digest={digest}")),
        &[&format!("Content-Range: {have}-{}", data.len() - 1)],
        Some(&data[have..]),
        &[],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let got = curl(
        "GET",
        &s.url(&format!("/v2/fault/up/blobs/{digest}")),
        &[],
        None,
        &[],
    );
    assert_eq!(got.status, 200);
    assert!(got.body == data, "served blob differs from the upload");
    // Range request on the stored blob.
    let part = curl(
        "GET",
        &s.url(&format!("/v2/fault/up/blobs/{digest}")),
        &["Range: bytes=10-19"],
        None,
        &[],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{}", data.len()).as_str())
    );
    // The finished upload is gone.
    assert_eq!(curl("GET", &s.url(&loc), &[], None, &[]).status, 404);
    assert!(s.terminate(), "server did not exit cleanly on SIGTERM");
}

#[test]
fn api_semantics_and_errors_per_spec() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let base = curl("GET", &s.url("/v2/"), &[], None, &[]);
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes";
    let cd = push_blob(&s, "spec/app", cfg);
    let ld = push_blob(&s, "spec/app", layer);
    // Digest mismatch on a monolithic push.
    let r = curl(
        "POST",
        &s.url(&format!("/v2/spec/app/blobs/uploads/?digest={}", sha(b"x"))),
        &[],
        Some(b"y"),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    // Malformed and mistyped manifests.
    let r = put_manifest(&s, "spec/app", "bad", b"{not json");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    let good = image_manifest(&cd, cfg.len(), &[(&ld, layer.len())], serde_json::json!({}));
    let r = curl(
        "PUT",
        &s.url("/v2/spec/app/manifests/t"),
        &["Content-Type: application/vnd.oci.image.index.v1+json"],
        Some(&good),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    // Missing blob.
    let missing = image_manifest(
        &cd,
        cfg.len(),
        &[(&sha(b"absent"), 6)],
        serde_json::json!({}),
    );
    let r = put_manifest(&s, "spec/app", "missing", &missing);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    // Oversized manifest.
    let mut huge = good.clone();
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(
        format!(",\"annotations\":{{\"x\":\"{}\"}}}}", "a".repeat(5 << 20)).as_bytes(),
    );
    let r = put_manifest(&s, "spec/app", "huge", &huge);
    assert_eq!((r.status, r.error_code().as_str()), (413, "SIZE_INVALID"));
    // Good push by tag, and by digest with a wrong digest.
    let md = sha(&good);
    let r = put_manifest(&s, "spec/app", "v1", &good);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/spec/app/manifests/{md}").as_str())
    );
    let r = put_manifest(&s, "spec/app", &sha(b"other"), &good);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    // Unknowns and invalid names.
    let r = curl(
        "GET",
        &s.url(&format!("/v2/spec/app/blobs/{}", sha(b"nope"))),
        &[],
        None,
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (404, "BLOB_UNKNOWN"));
    let r = curl("GET", &s.url("/v2/spec/app/manifests/nope"), &[], None, &[]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = curl("GET", &s.url("/v2/Spec/App/tags/list"), &[], None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (400, "NAME_INVALID"));
    let r = curl("GET", &s.url("/v2/spec/none/tags/list"), &[], None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
    let r = curl(
        "GET",
        &s.url("/v2/spec/app/blobs/sha256:xyz"),
        &[],
        None,
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));

    // Tags with pagination.
    for t in ["a", "b", "c", "d"] {
        assert_eq!(put_manifest(&s, "spec/app", t, &good).status, 201);
    }
    let r = curl("GET", &s.url("/v2/spec/app/tags/list?n=2"), &[], None, &[]);
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/spec/app/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let r = curl(
        "GET",
        &s.url("/v2/spec/app/tags/list?n=2&last=d"),
        &[],
        None,
        &[],
    );
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    assert_eq!(r.header("link"), None);

    // Referrers: subject header, artifactType filter, OCI-Filters-Applied.
    let empty = push_blob(&s, "spec/app", b"{}");
    let mut sigs = Vec::new();
    for at in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ] {
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": good.len()},
            "annotations": {"org.example": at},
        }))
        .unwrap();
        let r = put_manifest(&s, "spec/app", &sha(&m), &m);
        assert_eq!(r.status, 201);
        assert_eq!(r.header("oci-subject"), Some(md.as_str()));
        sigs.push(sha(&m));
    }
    let r = curl(
        "GET",
        &s.url(&format!("/v2/spec/app/referrers/{md}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
    let r = curl(
        "GET",
        &s.url(&format!(
            "/v2/spec/app/referrers/{md}?artifactType=application/vnd.example.sbom"
        )),
        &[],
        None,
        &[],
    );
    let list = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(
        list[0]["annotations"]["org.example"],
        "application/vnd.example.sbom"
    );
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let r = curl(
        "GET",
        &s.url(&format!("/v2/spec/app/referrers/{}", sha(b"none"))),
        &[],
        None,
        &[],
    );
    assert_eq!(
        (r.status, r.json()["manifests"].as_array().unwrap().len()),
        (200, 0)
    );

    // Cross-repository mount, with and without the blob in the source.
    let r = curl(
        "POST",
        &s.url(&format!(
            "/v2/spec/other/blobs/uploads/?mount={ld}&from=spec/app"
        )),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/spec/other/blobs/{ld}").as_str())
    );
    let r = curl(
        "POST",
        &s.url(&format!(
            "/v2/spec/other/blobs/uploads/?mount={}&from=spec/app",
            sha(b"zz")
        )),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 202);

    // Content management: delete tag, manifest (and its tags), blob.
    assert_eq!(
        curl("DELETE", &s.url("/v2/spec/app/manifests/a"), &[], None, &[]).status,
        202
    );
    assert_eq!(
        curl("GET", &s.url("/v2/spec/app/manifests/a"), &[], None, &[]).status,
        404
    );
    assert_eq!(
        curl("GET", &s.url("/v2/spec/app/manifests/b"), &[], None, &[]).status,
        200
    );
    assert_eq!(
        curl(
            "DELETE",
            &s.url(&format!("/v2/spec/app/manifests/{}", sigs[0])),
            &[],
            None,
            &[]
        )
        .status,
        202
    );
    let r = curl(
        "GET",
        &s.url(&format!("/v2/spec/app/referrers/{md}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        curl(
            "DELETE",
            &s.url(&format!("/v2/spec/app/manifests/{md}")),
            &[],
            None,
            &[]
        )
        .status,
        202
    );
    let r = curl("GET", &s.url("/v2/spec/app/tags/list"), &[], None, &[]);
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    assert_eq!(
        curl(
            "DELETE",
            &s.url(&format!("/v2/spec/app/blobs/{ld}")),
            &[],
            None,
            &[]
        )
        .status,
        202
    );
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/spec/app/blobs/{ld}")),
            &[],
            None,
            &[]
        )
        .status,
        404
    );
    // Still present in the repository it was mounted into.
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/spec/other/blobs/{ld}")),
            &[],
            None,
            &[]
        )
        .status,
        200
    );
}

fn htpasswd(dir: &Path) -> PathBuf {
    let p = dir.join("htpasswd");
    let mut f = std::fs::File::create(&p).unwrap();
    for (u, pw) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        writeln!(f, "{u}:{}", skiff_registry::auth::hash_password(pw)).unwrap();
    }
    p
}

const ACL: &str = r#"
[[auth.acl]]
account = "alice"
repository = "team/*"
actions = ["pull", "push", "delete"]
[[auth.acl]]
account = "bob"
repository = "team/*"
actions = ["pull"]
"#;

#[test]
fn htpasswd_basic_auth_with_scopes() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let pw = htpasswd(tmp.path());
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!("[auth]\nhtpasswd = {:?}\n{ACL}", pw.display().to_string()),
    )
    .unwrap();
    let s = Server::start(
        &tmp.path().join("reg"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = curl("GET", &s.url("/v2/"), &[], None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let r = curl("GET", &s.url("/v2/"), &[], None, &["-u", "alice:wrong"]);
    assert_eq!(r.status, 401);
    let url = s.url(&format!(
        "/v2/team/app/blobs/uploads/?digest={}",
        sha(b"data")
    ));
    // bob may pull but not push: 403 and nothing stored.
    let r = curl("POST", &url, &[], Some(b"data"), &["-u", "bob:bob-pw"]);
    assert_eq!((r.status, r.error_code().as_str()), (403, "DENIED"));
    let r = curl("POST", &url, &[], Some(b"data"), &[]);
    assert_eq!(r.status, 401);
    let blob = s.url(&format!("/v2/team/app/blobs/{}", sha(b"data")));
    assert_eq!(
        curl("HEAD", &blob, &[], None, &["-u", "alice:alice-pw"]).status,
        404
    );
    let r = curl("POST", &url, &[], Some(b"data"), &["-u", "alice:alice-pw"]);
    assert_eq!(r.status, 201);
    assert_eq!(
        curl("GET", &blob, &[], None, &["-u", "bob:bob-pw"]).status,
        200
    );
    assert_eq!(
        curl("DELETE", &blob, &[], None, &["-u", "bob:bob-pw"]).status,
        403
    );
    // Manifest push and delete without the right scope change nothing.
    let cd = sha(b"data");
    let m = image_manifest(&cd, 4, &[], serde_json::json!({}));
    let murl = s.url("/v2/team/app/manifests/v1");
    let ct = format!("Content-Type: {OCI_MANIFEST}");
    assert_eq!(
        curl("PUT", &murl, &[&ct], Some(&m), &["-u", "bob:bob-pw"]).status,
        403
    );
    assert_eq!(curl("PUT", &murl, &[&ct], Some(&m), &[]).status, 401);
    assert_eq!(
        curl("GET", &murl, &[], None, &["-u", "bob:bob-pw"]).status,
        404
    );
    assert_eq!(
        curl("PUT", &murl, &[&ct], Some(&m), &["-u", "alice:alice-pw"]).status,
        201
    );
    assert_eq!(
        curl("DELETE", &murl, &[], None, &["-u", "bob:bob-pw"]).status,
        403
    );
    assert_eq!(curl("DELETE", &murl, &[], None, &[]).status, 401);
    assert_eq!(
        curl("GET", &murl, &[], None, &["-u", "bob:bob-pw"]).status,
        200
    );
    // Outside the ACL'd namespace nobody gets in.
    let r = curl(
        "GET",
        &s.url("/v2/other/tags/list"),
        &[],
        None,
        &["-u", "alice:alice-pw"],
    );
    assert_eq!(r.status, 403);
    let log = s.logs.lock().unwrap().join("\n");
    assert!(
        log.contains("\"user\":\"alice\""),
        "access log lacks the user"
    );
}

#[test]
fn bearer_tokens_with_scopes_and_skopeo() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let pw = htpasswd(tmp.path());
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\nhtpasswd = {:?}\n[auth.token]\nsecret = \"s3cret\"\n{ACL}",
            pw.display().to_string()
        ),
    )
    .unwrap();
    let s = Server::start(
        &tmp.path().join("reg"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = curl("GET", &s.url("/v2/team/app/tags/list"), &[], None, &[]);
    assert_eq!(r.status, 401);
    let chal = r.header("www-authenticate").unwrap().to_string();
    assert!(chal.starts_with("Bearer realm=\"http://"), "{chal}");
    assert!(
        chal.contains("scope=\"repository:team/app:pull\""),
        "{chal}"
    );
    let token = |user: &str, scope: &str| -> String {
        let r = curl(
            "GET",
            &s.url(&format!("/token?service=skiff-registry&scope={scope}")),
            &[],
            None,
            &["-u", user],
        );
        assert_eq!(r.status, 200, "token for {user}");
        r.json()["token"].as_str().unwrap().to_string()
    };
    let bad = curl(
        "GET",
        &s.url("/token?scope=repository:team/app:pull"),
        &[],
        None,
        &["-u", "alice:nope"],
    );
    assert_eq!(bad.status, 401);
    let alice = token("alice:alice-pw", "repository:team/app:pull,push,delete");
    let bob = token("bob:bob-pw", "repository:team/app:pull,push");
    let url = s.url(&format!(
        "/v2/team/app/blobs/uploads/?digest={}",
        sha(b"tok")
    ));
    let r = curl(
        "POST",
        &url,
        &[&format!("Authorization: Bearer {bob}")],
        Some(b"tok"),
        &[],
    );
    // A valid token without the action: challenged to get a wider one.
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    let chal = r.header("www-authenticate").unwrap_or_default();
    assert!(chal.starts_with("Bearer realm=\"http://"), "{chal}");
    assert!(chal.contains("service=\"skiff-registry\""), "{chal}");
    assert!(
        chal.contains("scope=\"repository:team/app:pull,push\""),
        "{chal}"
    );
    assert!(chal.contains("error=\"insufficient_scope\""), "{chal}");
    let r = curl(
        "POST",
        &url,
        &[&format!("Authorization: Bearer {alice}")],
        Some(b"tok"),
        &[],
    );
    assert_eq!(r.status, 201);
    let blob = s.url(&format!("/v2/team/app/blobs/{}", sha(b"tok")));
    assert_eq!(
        curl(
            "GET",
            &blob,
            &[&format!("Authorization: Bearer {bob}")],
            None,
            &[]
        )
        .status,
        200
    );
    // A token for another repository does not open this one (a challenge
    // for this one's scope); a forged one neither.
    let other = token("alice:alice-pw", "repository:team/other:pull");
    let r = curl(
        "GET",
        &blob,
        &[&format!("Authorization: Bearer {other}")],
        None,
        &[],
    );
    assert_eq!(r.status, 401);
    let chal = r.header("www-authenticate").unwrap_or_default();
    assert!(
        chal.contains("scope=\"repository:team/app:pull\",error=\"insufficient_scope\""),
        "{chal}"
    );
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    assert_eq!(
        curl(
            "GET",
            &blob,
            &[&format!("Authorization: Bearer {forged}")],
            None,
            &[]
        )
        .status,
        401
    );
    // A real client through the token flow.
    if have("skopeo") && have("umoci") {
        let layout = build_layout(tmp.path());
        let src = format!("oci:{}:latest", layout.display());
        let (ok, out) = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            &src,
            &format!("docker://{}/team/app:v1", s.addr),
        ]);
        assert!(ok, "skopeo push with token auth: {out}");
        let (ok, out) = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:bob-pw",
            &src,
            &format!("docker://{}/team/bob:v1", s.addr),
        ]);
        assert!(!ok, "bob must not push: {out}");
        let (ok, out) = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "bob:bob-pw",
            &format!("docker://{}/team/app:v1", s.addr),
        ]);
        assert!(ok, "bob pulls: {out}");
    } else {
        eprintln!("SKIP: skopeo/umoci part (not installed)");
    }
}

#[test]
fn tls_health_metrics_and_graceful_shutdown() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) =
        skiff_registry::tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("cert.pem"), &cert).unwrap();
    std::fs::write(certs.join("key.pem"), &key).unwrap();
    let mut s = Server::start(
        &tmp.path().join("reg"),
        &[
            "--tls-cert",
            certs.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            certs.join("key.pem").to_str().unwrap(),
        ],
    );
    let https = |p: &str| format!("https://{}{p}", s.addr);
    let ca_path = certs.join("cert.pem");
    let ca = ["--cacert", ca_path.to_str().unwrap()];
    let r = curl("GET", &https("/v2/"), &[], None, &ca);
    assert_eq!(r.status, 200);
    // HTTP/2 is negotiated by ALPN.
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "--cacert",
        ])
        .arg(certs.join("cert.pem"))
        .arg(https("/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "no h2 over TLS");
    // Plain HTTP to the TLS port fails; untrusted TLS fails.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/", s.addr))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null"])
        .arg(https("/v2/"))
        .status()
        .unwrap();
    assert!(!out.success(), "untrusted cert accepted");
    let d = sha(b"tls blob");
    let r = curl(
        "POST",
        &https(&format!("/v2/sec/x/blobs/uploads/?digest={d}")),
        &[],
        Some(b"tls blob"),
        &ca,
    );
    assert_eq!(r.status, 201);
    assert_eq!(curl("GET", &https("/healthz"), &[], None, &ca).status, 200);
    let m = curl("GET", &https("/metrics"), &[], None, &ca);
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert!(
        text.contains("skiff_registry_requests_total{method=\"POST\",status=\"201\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("skiff_registry_blob_bytes_received_total 8"),
        "{text}"
    );
    assert!(text.contains("# TYPE skiff_registry_request_duration_seconds histogram"));
    if have("skopeo") && have("umoci") {
        let layout = build_layout(tmp.path());
        let (ok, out) = skopeo(&[
            "copy",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &format!("oci:{}:latest", layout.display()),
            &format!(
                "docker://localhost:{}/sec/img:v1",
                s.addr.rsplit(':').next().unwrap()
            ),
        ]);
        // skopeo wants ca.crt in the cert dir.
        if !ok {
            std::fs::copy(certs.join("cert.pem"), certs.join("ca.crt")).unwrap();
            let (ok2, out2) = skopeo(&[
                "copy",
                "--dest-cert-dir",
                certs.to_str().unwrap(),
                &format!("oci:{}:latest", layout.display()),
                &format!(
                    "docker://localhost:{}/sec/img:v1",
                    s.addr.rsplit(':').next().unwrap()
                ),
            ]);
            assert!(ok2, "skopeo over TLS: {out}\n{out2}");
        }
    }
    // Access log lines are JSON.
    let logs = s.logs.lock().unwrap().clone();
    let access: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["msg"] == "access")
        .collect();
    assert!(access.iter().any(|v| v["method"] == "POST"
        && v["status"] == 201
        && v["path"] == "/v2/sec/x/blobs/uploads/"));
    assert!(s.terminate(), "SIGTERM did not stop the server cleanly");
}

#[test]
fn gc_collects_garbage_and_keeps_referenced_content() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("reg");
    let s = Server::start(&storage, &[]);
    let cfg = br#"{"os":"linux"}"#;
    let cd = push_blob(&s, "gc/app", cfg);
    let l1 = push_blob(&s, "gc/app", b"kept layer");
    let l2 = push_blob(&s, "gc/app", b"layer of an untagged manifest");
    let orphan = push_blob(&s, "gc/app", b"nobody references me");
    let tagged = image_manifest(&cd, cfg.len(), &[(&l1, 10)], serde_json::json!({}));
    assert_eq!(put_manifest(&s, "gc/app", "v1", &tagged).status, 201);
    let untagged = image_manifest(&cd, cfg.len(), &[(&l2, 29)], serde_json::json!({}));
    let ud = sha(&untagged);
    assert_eq!(put_manifest(&s, "gc/app", &ud, &untagged).status, 201);
    // A referrer of the tagged manifest survives GC though untagged.
    let sig = image_manifest(
        &cd,
        cfg.len(),
        &[],
        serde_json::json!({
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha(&tagged), "size": tagged.len()}}),
    );
    assert_eq!(put_manifest(&s, "gc/app", &sha(&sig), &sig).status, 201);

    let gc = |args: &[&str]| {
        let out = Command::new(SKIFF)
            .args(["registry", "gc", "--storage"])
            .arg(&storage)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Default grace: everything is young, nothing goes.
    let out = gc(&[]);
    assert!(out.contains("gc: 0 manifests, 0 blobs"), "{out}");
    let out = gc(&["--dry-run", "--grace-secs", "0"]);
    assert!(
        out.contains(&format!("would delete blob {orphan}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("would delete manifest gc/app@{ud}")),
        "{out}"
    );
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/gc/app/blobs/{orphan}")),
            &[],
            None,
            &[]
        )
        .status,
        200
    );
    let out = gc(&["--grace-secs", "0"]);
    assert!(out.contains(&format!("deleted blob {orphan}")), "{out}");
    assert!(out.contains(&format!("deleted blob {l2}")), "{out}");
    assert!(
        !out.contains(&l1) && !out.contains(&cd),
        "referenced blob deleted: {out}"
    );
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/gc/app/blobs/{orphan}")),
            &[],
            None,
            &[]
        )
        .status,
        404
    );
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/gc/app/manifests/{ud}")),
            &[],
            None,
            &[]
        )
        .status,
        404
    );
    assert_eq!(
        curl(
            "GET",
            &s.url(&format!("/v2/gc/app/blobs/{l1}")),
            &[],
            None,
            &[]
        )
        .body,
        b"kept layer"
    );
    assert_eq!(
        curl("GET", &s.url("/v2/gc/app/manifests/v1"), &[], None, &[]).body,
        tagged
    );
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/gc/app/manifests/{}", sha(&sig))),
            &[],
            None,
            &[]
        )
        .status,
        200
    );
    // kill -9 in the middle of a GC, then GC again: referenced content intact.
    let orphans: Vec<String> = (0..200)
        .map(|i| push_blob(&s, "gc/app", format!("orphan {i}").as_bytes()))
        .collect();
    let mut g = Command::new(SKIFF)
        .args(["registry", "gc", "--grace-secs", "0", "--storage"])
        .arg(&storage)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let _ = g.kill();
    let _ = g.wait();
    assert_eq!(
        curl(
            "GET",
            &s.url(&format!("/v2/gc/app/blobs/{l1}")),
            &[],
            None,
            &[]
        )
        .body,
        b"kept layer"
    );
    gc(&["--grace-secs", "0"]);
    for o in orphans.iter().step_by(37) {
        assert_eq!(
            curl(
                "HEAD",
                &s.url(&format!("/v2/gc/app/blobs/{o}")),
                &[],
                None,
                &[]
            )
            .status,
            404
        );
    }
    assert_eq!(
        curl("GET", &s.url("/v2/gc/app/manifests/v1"), &[], None, &[]).body,
        tagged
    );
    assert_eq!(
        curl(
            "GET",
            &s.url(&format!("/v2/gc/app/blobs/{cd}")),
            &[],
            None,
            &[]
        )
        .body,
        cfg
    );
    // An upload in progress is untouched by GC and completes afterwards.
    let st = curl("POST", &s.url("/v2/gc/app/blobs/uploads/"), &[], None, &[]);
    let loc = st.header("location").unwrap().to_string();
    assert_eq!(
        curl(
            "PATCH",
            &s.url(&loc),
            &["Content-Range: 0-4"],
            Some(b"early"),
            &[]
        )
        .status,
        202
    );
    gc(&["--grace-secs", "0"]);
    let r = curl(
        "PUT",
        &s.url(&format!("{loc}?digest={}", sha(b"early late"))),
        &[],
        Some(b" late"),
        &[],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// A moto S3 server (`pip install 'moto[server]'`; `moto_server` on PATH or
/// in `$MOTO_SERVER`) on a kernel-picked port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(i) = line.find("http://127.0.0.1:") {
                        let _ = tx.send(line[i..].trim().to_string());
                    }
                }
            });
        }
        let endpoint = rx.recv_timeout(Duration::from_secs(30)).ok()?;
        Some(Moto { child, endpoint })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn s3_backend_shared_by_two_replicas() {
    require!("curl");
    let Some(moto) = Moto::start() else {
        eprintln!("SKIP: moto_server not found (pip install 'moto[server]', or set MOTO_SERVER)");
        return;
    };
    let r = curl(
        "PUT",
        &format!("{}/skiffreg", moto.endpoint),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 200, "create bucket");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("s3.toml");
    std::fs::write(
        &cfg,
        format!(
            "[s3]\nbucket = \"skiffreg\"\nendpoint = \"{}\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nprefix = \"reg\"\n",
            moto.endpoint
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let mut a = Server::start(&tmp.path().join("a"), &args);
    let b = Server::start(&tmp.path().join("b"), &args);
    // Chunked upload through replica A, interrupted by kill -9, finished
    // through replica B (upload state lives in the bucket).
    let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
    let digest = sha(&data);
    let st = curl("POST", &a.url("/v2/s3/app/blobs/uploads/"), &[], None, &[]);
    assert_eq!(st.status, 202);
    let loc = st.header("location").unwrap().to_string();
    let r = curl(
        "PATCH",
        &a.url(&loc),
        &["Content-Range: 0-4194303"],
        Some(&data[..4 << 20]),
        &[],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    a.kill9_and_restart();
    let st = curl("GET", &b.url(&loc), &[], None, &[]);
    assert_eq!((st.status, st.header("range")), (204, Some("0-4194303")));
    let r = curl(
        "PATCH",
        &b.url(&loc),
        &["Content-Range: 0-9"],
        Some(&data[..10]),
        &[],
    );
    assert_eq!(r.status, 416);
    let r = curl(
        "PUT",
        &b.url(&format!("{loc}?digest={digest}")),
        &[&format!("Content-Range: 4194304-{}", data.len() - 1)],
        Some(&data[4 << 20..]),
        &[],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let got = curl(
        "GET",
        &a.url(&format!("/v2/s3/app/blobs/{digest}")),
        &[],
        None,
        &[],
    );
    assert!(
        got.status == 200 && got.body == data,
        "blob via replica A differs"
    );
    let part = curl(
        "GET",
        &b.url(&format!("/v2/s3/app/blobs/{digest}")),
        &["Range: bytes=5000000-5000009"],
        None,
        &[],
    );
    assert_eq!(part.body, &data[5_000_000..5_000_010]);
    // Manifest pushed to B is visible on A, with tags and referrers.
    let cfgb = b"{}";
    let cd = push_blob(&b, "s3/app", cfgb);
    let m = image_manifest(&cd, 2, &[(&digest, data.len())], serde_json::json!({}));
    assert_eq!(put_manifest(&b, "s3/app", "v1", &m).status, 201);
    let got = curl("GET", &a.url("/v2/s3/app/manifests/v1"), &[], None, &[]);
    assert_eq!(got.body, m);
    let tags = curl("GET", &a.url("/v2/s3/app/tags/list"), &[], None, &[]).json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let bad = image_manifest(&cd, 2, &[(&sha(b"absent"), 6)], serde_json::json!({}));
    assert_eq!(
        put_manifest(&a, "s3/app", "bad", &bad).error_code(),
        "MANIFEST_BLOB_UNKNOWN"
    );
    if have("skopeo") && have("umoci") {
        let layout = build_layout(tmp.path());
        let src = format!("oci:{}:latest", layout.display());
        let (ok, out) = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &src,
            &format!("docker://{}/s3/img:v1", a.addr),
        ]);
        assert!(ok, "skopeo push to S3-backed registry: {out}");
        let back = tmp.path().join("back");
        let (ok, out) = skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/s3/img:v1", b.addr),
            &format!("oci:{}:latest", back.display()),
        ]);
        assert!(ok, "skopeo pull from the other replica: {out}");
        assert_eq!(
            layout_manifest_digest(&layout),
            layout_manifest_digest(&back)
        );
    }
    // GC over the bucket keeps referenced content.
    let orphan = push_blob(&a, "s3/app", b"orphan");
    let out = Command::new(SKIFF)
        .args([
            "registry",
            "gc",
            "--grace-secs",
            "0",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("deleted blob {orphan}")),
        "{text}"
    );
    assert!(!text.contains(&digest), "referenced blob deleted: {text}");
    let got = curl(
        "GET",
        &b.url(&format!("/v2/s3/app/blobs/{digest}")),
        &[],
        None,
        &[],
    );
    assert_eq!(got.body.len(), data.len());
}

#[test]
fn blob_size_limit_and_disabled_deletes() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("limits.toml");
    std::fs::write(
        &cfg,
        "delete_enabled = false\n[limits]\nmax_blob_size = 1000\nmax_manifest_size = 2000\n",
    )
    .unwrap();
    let s = Server::start(
        &tmp.path().join("reg"),
        &["--config", cfg.to_str().unwrap()],
    );
    let big = vec![7u8; 1500];
    let r = curl(
        "POST",
        &s.url(&format!("/v2/lim/app/blobs/uploads/?digest={}", sha(&big))),
        &[],
        Some(&big),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (413, "SIZE_INVALID"));
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/lim/app/blobs/{}", sha(&big))),
            &[],
            None,
            &[]
        )
        .status,
        404
    );
    // Chunked: the second chunk crosses the limit.
    let st = curl("POST", &s.url("/v2/lim/app/blobs/uploads/"), &[], None, &[]);
    let loc = st.header("location").unwrap().to_string();
    let r = curl(
        "PATCH",
        &s.url(&loc),
        &["Content-Range: 0-799"],
        Some(&big[..800]),
        &[],
    );
    assert_eq!(r.status, 202);
    let r = curl(
        "PATCH",
        &s.url(&loc),
        &["Content-Range: 800-1499"],
        Some(&big[800..]),
        &[],
    );
    assert_eq!(r.status, 413);
    let small = push_blob(&s, "lim/app", b"ok");
    let r = curl(
        "DELETE",
        &s.url(&format!("/v2/lim/app/blobs/{small}")),
        &[],
        None,
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    assert_eq!(
        curl(
            "HEAD",
            &s.url(&format!("/v2/lim/app/blobs/{small}")),
            &[],
            None,
            &[]
        )
        .status,
        200
    );
}

#[test]
fn skiff_own_client_push_pull() {
    require!("skopeo", "umoci", "curl");
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_layout(tmp.path());
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let src = format!("docker://{}/own/img:v1", s.addr);
    let (ok, out) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &src,
    ]);
    assert!(ok, "skopeo push: {out}");
    let store = tmp.path().join("store");
    let skiff = |args: &[&str]| {
        let out = Command::new(SKIFF)
            .arg("--store")
            .arg(&store)
            .args(["image"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skiff image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let name = format!("{}/own/img:v1", s.addr);
    skiff(&["pull", "-q", &name]);
    skiff(&["push", &name, &format!("{}/own/back:v2", s.addr)]);
    let a = curl("HEAD", &s.url("/v2/own/img/manifests/v1"), &[], None, &[]);
    let b = curl("HEAD", &s.url("/v2/own/back/manifests/v2"), &[], None, &[]);
    assert_eq!(
        a.header("docker-content-digest"),
        Some(layout_manifest_digest(&layout).as_str())
    );
    assert_eq!(
        a.header("docker-content-digest"),
        b.header("docker-content-digest")
    );
}

/// A keep-alive HTTP/1.1 client on one TCP connection (std only), to see
/// what the server does to the connection itself.
struct Raw {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

/// One response read by [`Raw`].
#[derive(Debug)]
struct RawResp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl Raw {
    fn connect(s: &Server) -> Raw {
        let s = std::net::TcpStream::connect(&s.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[&str], body: &[u8]) {
        use std::io::Write as _;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.s.write_all(req.as_bytes()).unwrap();
        self.s.write_all(body).unwrap();
    }

    /// Reads one response; `None` when the server closed the connection.
    fn read(&mut self) -> Option<RawResp> {
        use std::io::Read as _;
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut r = RawResp {
            status,
            head,
            body: Vec::new(),
        };
        let len: usize = r
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < len {
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
        r.body = self.buf.drain(..len).collect();
        Some(r)
    }

    /// Whether the server closes the connection within `limit` (nothing
    /// more is sent by us meanwhile).
    fn closed_within(&mut self, limit: Duration) -> bool {
        use std::io::Read as _;
        let t = Instant::now();
        self.s
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while t.elapsed() < limit {
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// `Authorization: Basic` for `user:pw` (base64 by hand: no extra crate).
fn basic(user: &str, pw: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{pw}").into_bytes();
    let mut b = String::new();
    for c in raw.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                b.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b.push('=');
            }
        }
    }
    format!("Authorization: Basic {b}")
}

#[test]
fn refused_requests_keep_the_connection_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = htpasswd(tmp.path());
    let cfg = tmp.path().join("config.toml");
    let acl = format!("[auth]\nhtpasswd = {:?}\n{ACL}", pw.display().to_string());
    std::fs::write(&cfg, acl).unwrap();
    let s = Server::start(
        &tmp.path().join("reg"),
        &["--config", cfg.to_str().unwrap()],
    );
    let alice = basic("alice", "alice-pw");
    let bob = basic("bob", "bob-pw");
    // A monolithic upload with a body: challenged, then retried with
    // credentials on the same connection, as Go clients do.
    let data = vec![7u8; 100 << 10];
    let d = sha(&data);
    let path = format!("/v2/team/app/blobs/uploads/?digest={d}");
    let mut c = Raw::connect(&s);
    c.send("POST", &path, &[], &data);
    let r = c.read().expect("a 401, not a dropped connection");
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(r.header("www-authenticate").is_some(), "{}", r.head);
    assert_eq!(r.header("connection"), None, "{}", r.head);
    c.send("POST", &path, &[&alice], &data);
    let r = c
        .read()
        .expect("the retry is answered on the same connection");
    assert_eq!(r.status, 201, "{}", r.head);
    // A chunk (PATCH) refused with 403 (an ACL), then the allowed user's PATCH.
    c.send("POST", "/v2/team/app/blobs/uploads/", &[&alice], b"");
    let r = c.read().unwrap();
    assert_eq!(r.status, 202, "{}", r.head);
    let loc = r.header("location").unwrap();
    c.send("PATCH", &loc, &[&bob], &data);
    let r = c.read().expect("a 403, not a dropped connection");
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(r.header("connection"), None, "{}", r.head);
    c.send("PATCH", &loc, &[&alice], &data);
    let r = c
        .read()
        .expect("the retry is answered on the same connection");
    assert_eq!(r.status, 202, "{}", r.head);
    assert_eq!(
        r.header("range").as_deref(),
        Some(&*format!("0-{}", data.len() - 1))
    );
    // A body too large to drain: the refusal says `Connection: close`, and
    // the server closes (the client knows not to reuse the connection).
    let big = vec![1u8; 1 << 20];
    c.send("PATCH", &loc, &[], &big);
    let r = c.read().expect("a 401 before the close");
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
    assert!(c.closed_within(Duration::from_secs(30)));
    // Any answer given before the body was read (here a 416 for a chunk at
    // the wrong offset) says `Connection: close` too.
    let mut c = Raw::connect(&s);
    c.send("PATCH", &loc, &[&alice, "Content-Range: 5-9"], b"01234");
    let r = c.read().unwrap();
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
    assert!(c.closed_within(Duration::from_secs(30)));
}

#[test]
fn slow_clients_are_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    // Short deadlines; the assertions allow 30 s more for a loaded host.
    let s = Server::start(
        &tmp.path().join("reg"),
        &[
            "--header-timeout",
            "3",
            "--idle-timeout",
            "3",
            "--body-timeout",
            "3",
            "--body-min-rate",
            "100",
        ],
    );
    let slack = Duration::from_secs(30);
    // A request head sent at 1 byte/s.
    let mut c = Raw::connect(&s);
    let t = Instant::now();
    let head = b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for b in head {
        use std::io::Write as _;
        if c.s.write_all(&[*b]).is_err() || c.closed_within(Duration::from_secs(1)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a 1 byte/s request head was served to its end");
    assert!(
        t.elapsed() < Duration::from_secs(3) + slack,
        "{:?}",
        t.elapsed()
    );
    // A request body sent at 1 byte/s: the request fails, the connection closes.
    let mut c = Raw::connect(&s);
    c.s.write_all(
        b"POST /v2/slow/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let r = c.read().unwrap();
    assert_eq!(r.status, 202, "{}", r.head);
    let loc = r.header("location").unwrap();
    let t = Instant::now();
    c.s.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut answered = None;
    for _ in 0..1000 {
        use std::io::Write as _;
        if c.s.write_all(b"x").is_err() {
            break;
        }
        c.s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        if let Some(r) = c.read() {
            answered = Some(r);
            break;
        }
        if t.elapsed() > Duration::from_secs(3) + slack {
            break;
        }
    }
    let r = answered.expect("no answer to a 1 byte/s body");
    assert!(r.status >= 400, "{}", r.head);
    assert_eq!(
        r.header("connection").as_deref(),
        Some("close"),
        "{}",
        r.head
    );
    assert!(c.closed_within(slack));
    assert!(
        t.elapsed() < Duration::from_secs(3) + slack,
        "{:?}",
        t.elapsed()
    );
    // An idle keep-alive connection is closed.
    let mut c = Raw::connect(&s);
    c.send("GET", "/v2/", &[], b"");
    assert_eq!(c.read().unwrap().status, 200);
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3) + slack));
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    // The server still serves.
    assert_eq!(curl("GET", &s.url("/v2/"), &[], None, &[]).status, 200);
}

#[test]
fn upload_status_answers_while_a_patch_is_stalled() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let r = curl("POST", &s.url("/v2/st/blobs/uploads/"), &[], None, &[]);
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    // A PATCH that sends 10 of its 20 bytes, then waits.
    let mut c = Raw::connect(&s);
    c.s.write_all(
        format!("PATCH {loc} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n0123456789")
            .as_bytes(),
    )
    .unwrap();
    // Status requests answer meanwhile (each within curl's 20 s), and see
    // the bytes already stored.
    let t = Instant::now();
    let range = loop {
        let r = curl("GET", &s.url(&loc), &[], None, &["--max-time", "20"]);
        assert_eq!(r.status, 204, "status during a stalled PATCH");
        let range = r.header("range").unwrap_or_default().to_string();
        if range == "0-9" || t.elapsed() > Duration::from_secs(50) {
            break range;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(range, "0-9");
    // The PATCH completes when the rest comes.
    c.s.write_all(b"abcdefghij").unwrap();
    let r = c.read().unwrap();
    assert_eq!(r.status, 202, "{}", r.head);
    assert_eq!(r.header("range").as_deref(), Some("0-19"));
}

#[test]
fn manifest_push_by_digest_with_tags_and_sha512_by_tag() {
    require!("curl");
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("reg"), &[]);
    let cfg = push_blob(&s, "mt", b"{}");
    let m = image_manifest(&cfg, 2, &[], serde_json::json!({}));
    let d = sha(&m);
    // By digest, with tags in the query.
    let r = curl(
        "PUT",
        &s.url(&format!("/v2/mt/manifests/{d}?tag=v1&tag=latest")),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(&m),
        &[],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("oci-tag"), Some("v1, latest"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    for t in ["v1", "latest"] {
        let g = curl(
            "GET",
            &s.url(&format!("/v2/mt/manifests/{t}")),
            &[],
            None,
            &[],
        );
        assert_eq!(
            (g.status, g.body.as_slice()),
            (200, m.as_slice()),
            "tag {t}"
        );
        assert_eq!(g.header("docker-content-digest"), Some(d.as_str()));
    }
    // A bad tag in the query stores nothing.
    let m2 = image_manifest(&cfg, 2, &[], serde_json::json!({"annotations": {"a": "b"}}));
    let r = curl(
        "PUT",
        &s.url(&format!("/v2/mt/manifests/{}?tag=ok&tag=-bad", sha(&m2))),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(&m2),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    let tags = curl("GET", &s.url("/v2/mt/tags/list"), &[], None, &[]).json();
    assert_eq!(tags["tags"], serde_json::json!(["latest", "v1"]));
    // By tag, naming sha512: the digest is sha512 and resolves.
    let r = curl(
        "PUT",
        &s.url("/v2/mt/manifests/v512?digest-algorithm=sha512"),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(&m2),
        &[],
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let d512 = Digest::compute(Algorithm::Sha512, &m2).to_string();
    assert_eq!(r.header("docker-content-digest"), Some(d512.as_str()));
    let g = curl(
        "GET",
        &s.url(&format!("/v2/mt/manifests/{d512}")),
        &[],
        None,
        &[],
    );
    assert_eq!((g.status, g.body.as_slice()), (200, m2.as_slice()));
    let g = curl("GET", &s.url("/v2/mt/manifests/v512"), &[], None, &[]);
    assert_eq!(g.header("docker-content-digest"), Some(d512.as_str()));
    let r = curl(
        "PUT",
        &s.url("/v2/mt/manifests/vx?digest-algorithm=md5"),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(&m2),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
}

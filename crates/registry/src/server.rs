//! HTTP layer: routes distribution-spec requests to the [`Store`], applies
//! auth, limits, metrics and access logs, and runs the accept loop (plain
//! TCP or rustls) with graceful shutdown.

use crate::auth::{Auth, Decision, Need};
use crate::config::Config;
use crate::digest::Algorithm;
use crate::digest::Digest;
use crate::error::{ApiError, Code};
use crate::manifest::OCI_INDEX;
use crate::metrics::Metrics;
use crate::store::{range_header, ManifestPut, Reference, Store};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

type Resp = Response<Body>;

/// Blobs up to this size are read in one piece instead of streamed.
const SMALL_BLOB: u64 = 2 << 20;

/// Shared server state.
pub struct App {
    /// Storage logic.
    pub store: Store,
    /// Authenticator (open registry when `None`).
    pub auth: Option<Auth>,
    /// Metrics.
    pub metrics: Metrics,
    /// Configuration.
    pub config: Config,
    /// Whether connections are TLS (for the token realm URL).
    pub tls: bool,
}

enum Target {
    Base,
    Catalog,
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Manifest(String, String),
    Tags(String),
    Referrers(String, String),
}

fn parse_target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Target::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Target::UploadStart(name.into()));
    }
    if let Some(i) = rest.rfind("/blobs/uploads/") {
        return Some(Target::Upload(rest[..i].into(), rest[i + 15..].into()));
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Target::Tags(name.into()));
    }
    for (sep, kind) in [("/manifests/", 0), ("/blobs/", 1), ("/referrers/", 2)] {
        if let Some(i) = rest.rfind(sep) {
            let (name, r) = (rest[..i].to_string(), rest[i + sep.len()..].to_string());
            return Some(match kind {
                0 => Target::Manifest(name, r),
                1 => Target::Blob(name, r),
                _ => Target::Referrers(name, r),
            });
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Body>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn q<'a>(qs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    qs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn resp(status: StatusCode, headers: &[(&str, String)], body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// Parses `Content-Range: <start>-<end>` of a PATCH (returns start).
fn content_range_start(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = hdr(h, "content-range") else {
        return Ok(None);
    };
    let v = v
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let bad = || {
        ApiError::new(Code::BlobUploadInvalid, format!("bad Content-Range {v:?}"))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b
        .split('/')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok(Some(a))
}

fn parse_digest(s: &str, what: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e| ApiError::new(Code::DigestInvalid, format!("{what}: {e}")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if crate::store::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::NameInvalid,
            format!("invalid repository name {name:?}"),
        ))
    }
}

fn need_for(method: &Method, target: &Target) -> Need {
    let repo = |name: &str, action| Need::Repo {
        name: name.to_string(),
        action,
    };
    match target {
        Target::Base => Need::Login,
        Target::Catalog => Need::Catalog,
        Target::UploadStart(n) | Target::Upload(n, _) => repo(n, "push"),
        Target::Blob(n, _) | Target::Manifest(n, _) => match *method {
            Method::GET | Method::HEAD => repo(n, "pull"),
            Method::DELETE => repo(n, "delete"),
            _ => repo(n, "push"),
        },
        Target::Tags(n) | Target::Referrers(n, _) => repo(n, "pull"),
    }
}

/// Serves one request (entry point of every connection).
pub async fn handle(app: Arc<App>, peer: SocketAddr, req: Request<Body>) -> Resp {
    let start = Instant::now();
    app.metrics.begin();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (mut r, user) = match route(&app, req).await {
        Ok((r, u)) => (r, u),
        Err(e) => (e.into_response(), String::new()),
    };
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let elapsed = start.elapsed();
    app.metrics
        .record(method.as_str(), r.status().as_u16(), elapsed);
    if app.config.access_log {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = serde_json::json!({
            "ts": ts, "msg": "access", "remote": peer.to_string(), "method": method.as_str(),
            "path": path, "status": r.status().as_u16(), "user": user,
            "duration_ms": (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "length": r.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()),
        });
        eprintln!("{line}");
    }
    r
}

async fn route(app: &App, req: Request<Body>) -> Result<(Resp, String), ApiError> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" => return Ok((resp(StatusCode::OK, &[], Body::from("ok\n")), String::new())),
        "/metrics" => {
            return Ok((
                resp(
                    StatusCode::OK,
                    &[("content-type", "text/plain; version=0.0.4".into())],
                    Body::from(app.metrics.render()),
                ),
                String::new(),
            ))
        }
        "/token" => return token(app, &req).map(|r| (r, String::new())),
        _ => {}
    }
    let Some(target) = parse_target(&path) else {
        return Ok((
            resp(
                StatusCode::NOT_FOUND,
                &[],
                Body::from("404 page not found\n"),
            ),
            String::new(),
        ));
    };
    let user = match &app.auth {
        None => String::new(),
        Some(auth) => {
            let scheme = if app.tls { "https" } else { "http" };
            let host = hdr(req.headers(), "host").unwrap_or("localhost");
            let need = need_for(req.method(), &target);
            match auth.check(
                hdr(req.headers(), "authorization"),
                &need,
                &format!("{scheme}://{host}"),
            ) {
                Decision::Allow(u) => u,
                Decision::Challenge(c) => {
                    let e = ApiError::new(Code::Unauthorized, "authentication required")
                        .with_header("WWW-Authenticate", c);
                    return Err(refuse(req, e).await);
                }
                Decision::Deny(why) => {
                    return Err(refuse(req, ApiError::new(Code::Denied, why)).await)
                }
            }
        }
    };
    let r = api(app, req, target).await?;
    Ok((r, user))
}

/// Refused request bodies up to this size are read and dropped, so the
/// client can send its authenticated retry on the same connection.
const DRAIN_LIMIT: usize = 256 << 10;

/// Answers a refused request without breaking the client's connection:
/// the rest of its body (up to [`DRAIN_LIMIT`], within 10 s) is read and
/// dropped so the connection stays usable; a larger or slower body, or one
/// the client holds back until `100 Continue`, is not read, and the answer
/// then says `Connection: close` (the server closes after it).
async fn refuse(req: Request<Body>, e: ApiError) -> ApiError {
    let waits_for_continue =
        hdr(req.headers(), "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let too_long = hdr(req.headers(), "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|l| l > DRAIN_LIMIT as u64);
    let drained = !waits_for_continue
        && !too_long
        && tokio::time::timeout(
            std::time::Duration::from_secs(10),
            http_body_util::Limited::new(req.into_body(), DRAIN_LIMIT).collect(),
        )
        .await
        .is_ok_and(|r| r.is_ok());
    if drained {
        e
    } else {
        e.with_header("Connection", "close".into())
    }
}

fn token(app: &App, req: &Request<Body>) -> Result<Resp, ApiError> {
    let Some(auth) = app.auth.as_ref().filter(|a| a.token_mode()) else {
        return Ok(resp(
            StatusCode::NOT_FOUND,
            &[],
            Body::from("404 page not found\n"),
        ));
    };
    let qs = query(req);
    let scopes: Vec<String> = qs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    match auth.issue_token(hdr(req.headers(), "authorization"), &scopes) {
        Some(tok) => Ok(resp(
            StatusCode::OK,
            &[("content-type", "application/json".into())],
            Body::from(tok.to_string()),
        )),
        None => Err(
            ApiError::new(Code::Unauthorized, "bad credentials").with_header(
                "WWW-Authenticate",
                "Basic realm=\"skiff-registry token\"".into(),
            ),
        ),
    }
}

fn unsupported() -> ApiError {
    ApiError::new(Code::Unsupported, "method not allowed on this endpoint")
}

async fn api(app: &App, req: Request<Body>, target: Target) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    match target {
        Target::Base => Ok(resp(
            StatusCode::OK,
            &[("content-type", "application/json".into())],
            Body::from("{}"),
        )),
        Target::Catalog => {
            if method != Method::GET {
                return Err(unsupported());
            }
            let qs = query(&req);
            let all = app.store.catalog().await?;
            let (page, link) = paginate(all, &qs, "/v2/_catalog")?;
            let body = serde_json::json!({ "repositories": page }).to_string();
            let mut h = vec![("content-type", "application/json".to_string())];
            if let Some(l) = link {
                h.push(("link", l));
            }
            Ok(resp(StatusCode::OK, &h, Body::from(body)))
        }
        Target::Tags(name) => {
            check_name(&name)?;
            if method != Method::GET {
                return Err(unsupported());
            }
            let qs = query(&req);
            let all = app.store.tags(&name).await?.ok_or_else(|| {
                ApiError::new(Code::NameUnknown, format!("repository {name} not known"))
            })?;
            let (page, link) = paginate(all, &qs, &format!("/v2/{name}/tags/list"))?;
            let body = serde_json::json!({ "name": name, "tags": page }).to_string();
            let mut h = vec![("content-type", "application/json".to_string())];
            if let Some(l) = link {
                h.push(("link", l));
            }
            Ok(resp(StatusCode::OK, &h, Body::from(body)))
        }
        Target::Referrers(name, d) => {
            check_name(&name)?;
            if method != Method::GET {
                return Err(unsupported());
            }
            let d = parse_digest(&d, "referrers digest")?;
            let qs = query(&req);
            let at = q(&qs, "artifactType").filter(|s| !s.is_empty());
            let list = app.store.referrers(&name, &d, at).await?;
            let body = serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list,
            })
            .to_string();
            let mut h = vec![("content-type", OCI_INDEX.to_string())];
            if at.is_some() {
                h.push(("oci-filters-applied", "artifactType".into()));
            }
            Ok(resp(StatusCode::OK, &h, Body::from(body)))
        }
        Target::Blob(name, d) => {
            check_name(&name)?;
            blob(app, req, &name, &d).await
        }
        Target::UploadStart(name) => {
            check_name(&name)?;
            if method != Method::POST {
                return Err(unsupported());
            }
            upload_start(app, req, &name).await
        }
        Target::Upload(name, uuid) => {
            check_name(&name)?;
            upload(app, req, &name, &uuid).await
        }
        Target::Manifest(name, reference) => {
            check_name(&name)?;
            manifest(app, req, &name, &reference).await
        }
    }
}

fn paginate(
    all: Vec<String>,
    qs: &[(String, String)],
    base: &str,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match q(qs, "n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                Code::Unsupported,
                format!("n={v:?} is not a non-negative integer"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    let mut items: Vec<String> = match q(qs, "last") {
        Some(last) if !last.is_empty() => all.into_iter().filter(|t| t.as_str() > last).collect(),
        _ => all,
    };
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                link = Some(format!("<{base}?n={n}&last={last}>; rel=\"next\""));
            }
        }
    }
    Ok((items, link))
}

async fn blob(app: &App, req: Request<Body>, name: &str, d: &str) -> Result<Resp, ApiError> {
    let method = req.method().clone();
    let d = parse_digest(d, "blob digest")?;
    let unknown = || ApiError::new(Code::BlobUnknown, format!("blob {d} not in {name}"));
    match method {
        Method::HEAD => {
            let m = app.store.blob_stat(name, &d).await?.ok_or_else(unknown)?;
            let mut r = resp(
                StatusCode::OK,
                &[
                    ("content-type", "application/octet-stream".into()),
                    ("docker-content-digest", d.to_string()),
                    ("accept-ranges", "bytes".into()),
                ],
                Body::empty(),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(m.size));
            Ok(r)
        }
        Method::GET => {
            let m = app.store.blob_stat(name, &d).await?.ok_or_else(unknown)?;
            let total = m.size;
            let range = match hdr(req.headers(), "range") {
                None => None,
                Some(r) => match parse_range(r, total) {
                    Some(x) => Some(x),
                    None => {
                        return Ok(resp(
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            &[("content-range", format!("bytes */{total}"))],
                            Body::empty(),
                        ))
                    }
                },
            };
            let (offset, len) = range.map_or((0, total), |(a, b)| (a, b - a + 1));
            let mut h = vec![
                ("content-type", "application/octet-stream".to_string()),
                ("docker-content-digest", d.to_string()),
                ("accept-ranges", "bytes".into()),
                ("content-length", len.to_string()),
            ];
            let status = if let Some((a, b)) = range {
                h.push(("content-range", format!("bytes {a}-{b}/{total}")));
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            };
            if range.is_none() && total <= SMALL_BLOB {
                // Small blobs in one read: fewer blocking-pool round trips.
                let data = app
                    .store
                    .driver()
                    .get(&crate::store::blob_path(&d))
                    .await?
                    .ok_or_else(unknown)?;
                if data.len() as u64 == total {
                    app.metrics.bytes_sent.fetch_add(total, Ordering::Relaxed);
                    return Ok(resp(status, &h, Body::from(data)));
                }
            }
            let (reader, _) = app
                .store
                .blob_open(name, &d, offset)
                .await?
                .ok_or_else(unknown)?;
            app.metrics.bytes_sent.fetch_add(len, Ordering::Relaxed);
            let stream = tokio_util::io::ReaderStream::with_capacity(reader.take(len), 512 << 10);
            Ok(resp(status, &h, Body::from_stream(stream)))
        }
        Method::DELETE => {
            if !app.config.delete_enabled {
                return Err(ApiError::new(Code::Unsupported, "deletes are disabled"));
            }
            app.store.blob_delete(name, &d).await?;
            Ok(resp(
                StatusCode::ACCEPTED,
                &[("content-length", "0".into())],
                Body::empty(),
            ))
        }
        _ => Err(unsupported()),
    }
}

/// Parses a single `Range: bytes=a-b` against `total`; `None` if unsatisfiable.
fn parse_range(v: &str, total: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || total == 0 {
            return None;
        }
        return Some((total.saturating_sub(n), total - 1));
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        total.checked_sub(1)?
    } else {
        b.parse().ok()?
    };
    if a > b || a >= total {
        return None;
    }
    Some((a, b.min(total - 1)))
}

fn body_stream(
    app: &App,
    req: Request<Body>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, axum::Error>> + Send + Unpin + '_ {
    req.into_body().into_data_stream().inspect(|c| {
        if let Ok(c) = c {
            app.metrics
                .bytes_received
                .fetch_add(c.len() as u64, Ordering::Relaxed);
        }
    })
}

fn upload_headers(name: &str, uuid: &str, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{uuid}")),
        ("range", range_header(offset)),
        ("docker-upload-uuid", uuid.to_string()),
        ("content-length", "0".into()),
    ]
}

async fn upload_start(app: &App, req: Request<Body>, name: &str) -> Result<Resp, ApiError> {
    let qs = query(&req);
    let created = |d: &Digest| {
        resp(
            StatusCode::CREATED,
            &[
                ("location", format!("/v2/{name}/blobs/{d}")),
                ("docker-content-digest", d.to_string()),
                ("content-length", "0".into()),
            ],
            Body::empty(),
        )
    };
    if let Some(m) = q(&qs, "mount") {
        let d = parse_digest(m, "mount")?;
        if let Some(from) = q(&qs, "from").filter(|f| crate::store::valid_name(f)) {
            let may_pull = match &app.auth {
                None => true,
                Some(auth) => {
                    let need = Need::Repo {
                        name: from.to_string(),
                        action: "pull",
                    };
                    matches!(
                        auth.check(hdr(req.headers(), "authorization"), &need, ""),
                        Decision::Allow(_)
                    )
                }
            };
            if may_pull && app.store.mount(name, from, &d).await? {
                return Ok(created(&d));
            }
        } else if q(&qs, "from").is_none()
            && app.auth.is_none()
            && app.store.mount_any(name, &d).await?
        {
            // Automatic content discovery: only on an open registry, where
            // every repository is readable anyway.
            return Ok(created(&d));
        }
    }
    let single = match q(&qs, "digest") {
        Some(d) => Some(parse_digest(d, "digest")?),
        None => None,
    };
    let uuid = app.store.upload_start(name).await?;
    if let Some(d) = single {
        let res = app
            .store
            .upload_finish(name, &uuid, &d, None, body_stream(app, req))
            .await;
        if res.is_err() {
            let _ = app.store.upload_cancel(name, &uuid).await;
        }
        res?;
        app.metrics
            .uploads_completed
            .fetch_add(1, Ordering::Relaxed);
        return Ok(created(&d));
    }
    let mut h = upload_headers(name, &uuid, 0);
    if app.config.chunk_min_length > 0 {
        h.push((
            "oci-chunk-min-length",
            app.config.chunk_min_length.to_string(),
        ));
    }
    Ok(resp(StatusCode::ACCEPTED, &h, Body::empty()))
}

async fn upload(app: &App, req: Request<Body>, name: &str, uuid: &str) -> Result<Resp, ApiError> {
    match req.method().clone() {
        Method::GET => {
            let off = app.store.upload_status(name, uuid).await?;
            Ok(resp(
                StatusCode::NO_CONTENT,
                &upload_headers(name, uuid, off),
                Body::empty(),
            ))
        }
        Method::PATCH => {
            let start = content_range_start(req.headers())?;
            let off = app
                .store
                .upload_append(name, uuid, start, body_stream(app, req))
                .await?;
            Ok(resp(
                StatusCode::ACCEPTED,
                &upload_headers(name, uuid, off),
                Body::empty(),
            ))
        }
        Method::PUT => {
            let qs = query(&req);
            let d = parse_digest(
                q(&qs, "digest").ok_or_else(|| {
                    ApiError::new(Code::DigestInvalid, "digest query parameter is required")
                })?,
                "digest",
            )?;
            let start = content_range_start(req.headers())?;
            app.store
                .upload_finish(name, uuid, &d, start, body_stream(app, req))
                .await?;
            app.metrics
                .uploads_completed
                .fetch_add(1, Ordering::Relaxed);
            Ok(resp(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{name}/blobs/{d}")),
                    ("docker-content-digest", d.to_string()),
                    ("content-length", "0".into()),
                ],
                Body::empty(),
            ))
        }
        Method::DELETE => {
            app.store.upload_cancel(name, uuid).await?;
            Ok(resp(
                StatusCode::NO_CONTENT,
                &[("content-length", "0".into())],
                Body::empty(),
            ))
        }
        _ => Err(unsupported()),
    }
}

async fn manifest(
    app: &App,
    req: Request<Body>,
    name: &str,
    reference: &str,
) -> Result<Resp, ApiError> {
    let is_put = req.method() == Method::PUT;
    let r = Reference::parse(reference).ok_or_else(|| {
        if !is_put {
            // Nothing can be stored under an invalid reference.
            ApiError::new(
                Code::ManifestUnknown,
                format!("manifest {reference:?} unknown"),
            )
        } else if reference.contains(':') {
            ApiError::new(Code::DigestInvalid, format!("invalid digest {reference:?}"))
        } else {
            ApiError::new(Code::ManifestInvalid, format!("invalid tag {reference:?}"))
        }
    })?;
    match req.method().clone() {
        Method::GET | Method::HEAD => {
            let head = req.method() == Method::HEAD;
            let (d, meta) = app.store.manifest_meta(name, &r).await?;
            let h = [
                ("content-type", meta.media_type.clone()),
                ("docker-content-digest", d.to_string()),
                ("content-length", meta.size.to_string()),
            ];
            if head {
                return Ok(resp(StatusCode::OK, &h, Body::empty()));
            }
            let f = app.store.manifest_get(name, &r).await?;
            Ok(resp(StatusCode::OK, &h, Body::from(f.body)))
        }
        Method::PUT => {
            let qs = query(&req);
            let ct = hdr(req.headers(), "content-type").map(str::to_string);
            let limit = app.store.limits().max_manifest_size;
            if hdr(req.headers(), "content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|l| l > limit)
            {
                return Err(too_large(limit));
            }
            let body = http_body_util::Limited::new(req.into_body(), limit as usize)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        too_large(limit)
                    } else {
                        ApiError::new(Code::ManifestInvalid, format!("reading body: {e}"))
                    }
                })?
                .to_bytes();
            let tags: Vec<String> = qs
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| v.clone())
                .collect();
            let algorithm = match q(&qs, "digest-algorithm") {
                None | Some("") | Some("sha256") => Algorithm::Sha256,
                Some("sha512") => Algorithm::Sha512,
                Some(other) => {
                    return Err(ApiError::new(
                        Code::DigestInvalid,
                        format!("digest-algorithm {other:?} is not supported (sha256, sha512)"),
                    ))
                }
            };
            let put = ManifestPut {
                reference: &r,
                tags: &tags,
                algorithm,
            };
            let pushed = app
                .store
                .manifest_put(name, &put, ct.as_deref(), &body)
                .await?;
            app.metrics.manifests_pushed.fetch_add(1, Ordering::Relaxed);
            let mut h = vec![
                (
                    "location",
                    format!("/v2/{name}/manifests/{}", pushed.digest),
                ),
                ("docker-content-digest", pushed.digest.to_string()),
                ("content-length", "0".into()),
            ];
            if let Some(s) = pushed.subject {
                h.push(("oci-subject", s.to_string()));
            }
            if !pushed.tags.is_empty() {
                h.push(("oci-tag", pushed.tags.join(", ")));
            }
            Ok(resp(StatusCode::CREATED, &h, Body::empty()))
        }
        Method::DELETE => {
            if !app.config.delete_enabled {
                return Err(ApiError::new(Code::Unsupported, "deletes are disabled"));
            }
            app.store.manifest_delete(name, &r).await?;
            Ok(resp(
                StatusCode::ACCEPTED,
                &[("content-length", "0".into())],
                Body::empty(),
            ))
        }
        _ => Err(unsupported()),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        Code::SizeInvalid,
        format!("manifest exceeds the limit of {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-200", 100), Some((5, 99)));
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    }

    #[test]
    fn targets() {
        assert!(matches!(parse_target("/v2/"), Some(Target::Base)));
        assert!(
            matches!(parse_target("/v2/a/b/blobs/uploads/"), Some(Target::UploadStart(n)) if n == "a/b")
        );
        assert!(
            matches!(parse_target("/v2/a/manifests/latest"), Some(Target::Manifest(n, r)) if n == "a" && r == "latest")
        );
        assert!(matches!(parse_target("/v2/a/tags/list"), Some(Target::Tags(n)) if n == "a"));
    }
}

//! HTTP layer: routes distribution-spec requests to the [`Store`], applies
//! auth, limits, metrics and access logs, and runs the accept loop (plain
//! TCP or rustls) with graceful shutdown.

use crate::auth::{Auth, Decision, Need};
use crate::config::Config;
use crate::digest::Digest;
use crate::error::{ApiError, Code};
use crate::manifest::OCI_INDEX;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

mod blobs;
mod manifests;
mod uploads;

use blobs::blob;
use manifests::manifest;
use uploads::{upload, upload_start};

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

#[cfg(test)]
mod tests {
    use super::blobs::parse_range;
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

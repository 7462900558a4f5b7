//! Blob uploads: starting a session (monolithic, chunked or cross-repository
//! mount), appending chunks, finishing and cancelling it.

use super::{content_range_start, hdr, parse_digest, q, query, resp, unsupported, App, Resp};
use crate::auth::{Decision, Need};
use crate::digest::Digest;
use crate::error::{ApiError, Code};
use crate::store::range_header;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use std::sync::atomic::Ordering;

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

pub(super) async fn upload_start(
    app: &App,
    req: Request<Body>,
    name: &str,
) -> Result<Resp, ApiError> {
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

pub(super) async fn upload(
    app: &App,
    req: Request<Body>,
    name: &str,
    uuid: &str,
) -> Result<Resp, ApiError> {
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

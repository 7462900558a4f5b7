//! Blob reads and deletes: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`,
//! with single-range support.

use super::{hdr, parse_digest, resp, unsupported, App, Resp, SMALL_BLOB};
use crate::error::{ApiError, Code};
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;

pub(super) async fn blob(
    app: &App,
    req: Request<Body>,
    name: &str,
    d: &str,
) -> Result<Resp, ApiError> {
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
pub(super) fn parse_range(v: &str, total: u64) -> Option<(u64, u64)> {
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

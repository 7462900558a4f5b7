//! Manifest reads, writes and deletes: `/v2/<name>/manifests/<reference>`.

use super::{hdr, q, query, resp, unsupported, App, Resp};
use crate::digest::Algorithm;
use crate::error::{ApiError, Code};
use crate::store::{ManifestPut, Reference};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::Ordering;

pub(super) async fn manifest(
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

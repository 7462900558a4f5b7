//! Distribution-spec error codes and their JSON bodies.
//!
//! Every failed API request answers with
//! `{"errors":[{"code":..,"message":..,"detail":..}]}` and the status code the
//! spec assigns to the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error code from the distribution-spec's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length, or content too large.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
}

impl Code {
    /// The code string of the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
        }
    }
    /// Default HTTP status for the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
    fn message(self) -> &'static str {
        match self {
            Code::BlobUnknown => "blob unknown to registry",
            Code::BlobUploadInvalid => "blob upload invalid",
            Code::BlobUploadUnknown => "blob upload unknown to registry",
            Code::DigestInvalid => "provided digest did not match uploaded content",
            Code::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            Code::ManifestInvalid => "manifest invalid",
            Code::ManifestUnknown => "manifest unknown to registry",
            Code::NameInvalid => "invalid repository name",
            Code::NameUnknown => "repository name not known to registry",
            Code::SizeInvalid => "provided length did not match content length",
            Code::Unauthorized => "authentication required",
            Code::Denied => "requested access to the resource is denied",
            Code::Unsupported => "the operation is unsupported",
            Code::TooManyRequests => "too many requests",
        }
    }
}

/// An API error: a spec code, an optional status override and a detail text.
#[derive(Debug)]
pub struct ApiError {
    /// Spec error code.
    pub code: Code,
    /// HTTP status (defaults to the code's).
    pub status: StatusCode,
    /// Human-readable detail naming what is at fault.
    pub detail: String,
    /// Extra response headers (e.g. `WWW-Authenticate`, `Range`, `Location`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with the code's default status.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            status: code.status(),
            detail: detail.into(),
            headers: Vec::new(),
        }
    }
    /// Overrides the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
    /// A 500 with the storage error as detail.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError {
            code: Code::Unsupported,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: e.to_string(),
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            serde_json::json!({"errors":[{"code":"UNKNOWN","message":"internal server error","detail":self.detail}]})
        } else {
            serde_json::json!({"errors":[{"code":self.code.as_str(),"message":self.code.message(),"detail":self.detail}]})
        };
        let mut resp = (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (k, v) in self.headers {
            if let Ok(v) = v.parse() {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

//! Manifest validation: media types, descriptor shapes and the references a
//! manifest makes (blobs, child manifests, `subject`).

use crate::digest::Digest;
use serde_json::Value;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The manifest media types the registry stores.
pub const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor as found in manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// Whether the target may live outside the registry (`urls` set).
    pub foreign: bool,
}

/// What a parsed manifest refers to.
#[derive(Debug)]
pub struct Parsed {
    /// Effective media type.
    pub media_type: String,
    /// Whether it is an index / manifest list.
    pub is_index: bool,
    /// Blobs (config + layers) that must exist in the repository.
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The `subject` descriptor, if any.
    pub subject: Option<Descriptor>,
    /// `artifactType` for the referrers API (falls back to the config media type).
    pub artifact_type: Option<String>,
    /// Manifest annotations.
    pub annotations: Option<Value>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[error("manifest invalid: {0}")]
pub struct Invalid(pub String);

fn descriptor(v: &Value, field: &str) -> Result<Descriptor, Invalid> {
    let obj = v
        .as_object()
        .ok_or_else(|| Invalid(format!("{field}: not an object")))?;
    let media_type = obj
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid(format!("{field}.mediaType: missing or not a string")))?
        .to_string();
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid(format!("{field}.digest: missing or not a string")))?
        .parse::<Digest>()
        .map_err(|e| Invalid(format!("{field}.digest: {e}")))?;
    let size = obj.get("size").and_then(Value::as_u64).ok_or_else(|| {
        Invalid(format!(
            "{field}.size: missing or not a non-negative integer"
        ))
    })?;
    let foreign = obj
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    Ok(Descriptor {
        media_type,
        digest,
        size,
        foreign,
    })
}

/// Parses and validates a manifest body against the `Content-Type` it was
/// pushed with.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Parsed, Invalid> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Invalid(format!("body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Invalid("body is not a JSON object".into()))?;
    let body_mt = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Invalid("mediaType: not a string".into())),
    };
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    let media_type = match (ct, body_mt) {
        (Some(c), Some(b)) if c != b => {
            return Err(Invalid(format!(
                "Content-Type {c:?} does not match mediaType {b:?} in the body"
            )))
        }
        (Some(c), _) => c.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => {
            return Err(Invalid(
                "no Content-Type header and no mediaType in the body".into(),
            ))
        }
    };
    if !ACCEPTED.contains(&media_type.as_str()) {
        return Err(Invalid(format!(
            "unsupported manifest media type {media_type:?}"
        )));
    }
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(Invalid("schemaVersion: must be 2".into()));
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(s) => Some(descriptor(s, "subject")?),
    };
    let mut artifact_type = match obj.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Invalid("artifactType: not a string".into())),
    };
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    if is_index {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| Invalid("manifests: missing or not an array".into()))?;
        for (i, m) in list.iter().enumerate() {
            manifests.push(descriptor(m, &format!("manifests[{i}]"))?);
        }
    } else {
        let config = descriptor(
            obj.get("config")
                .ok_or_else(|| Invalid("config: missing".into()))?,
            "config",
        )?;
        if artifact_type.is_none() && media_type == OCI_MANIFEST {
            artifact_type = Some(config.media_type.clone());
        }
        blobs.push(config);
        match obj.get("layers") {
            Some(Value::Array(list)) => {
                for (i, l) in list.iter().enumerate() {
                    blobs.push(descriptor(l, &format!("layers[{i}]"))?);
                }
            }
            None if media_type == OCI_MANIFEST => {}
            _ => return Err(Invalid("layers: missing or not an array".into())),
        }
    }
    Ok(Parsed {
        media_type,
        is_index,
        blobs,
        manifests,
        subject,
        artifact_type,
        annotations: obj.get("annotations").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn accepts_oci_and_rejects_mismatch() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{D}","size":0}},"layers":[]}}"#
        );
        let p = parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(p.blobs.len(), 1);
        assert_eq!(p.artifact_type.as_deref(), Some("a/b"));
        assert!(parse(m.as_bytes(), Some(OCI_INDEX)).is_err());
        assert!(parse(b"{", Some(OCI_MANIFEST)).is_err());
        assert!(parse(b"{\"schemaVersion\":2}", Some("text/plain")).is_err());
    }
}

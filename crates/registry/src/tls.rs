//! TLS with rustls (ring provider): loading PEM cert/key files and
//! generating self-signed certificates for tests and development.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A TLS setup problem, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("tls: {path}: {reason}")]
    Pem {
        /// File.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the cert/key pair.
    #[error("tls: cert/key rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("tls: generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Builds a rustls server config from PEM files (ALPN: h2, http/1.1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_err = |p: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, &e))?;
    if certs.is_empty() {
        return Err(pem_err(cert, &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Generates a self-signed certificate for `names` (DNS names or IPs);
/// returns `(cert_pem, key_pem)`.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

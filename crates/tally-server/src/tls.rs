//! TLS for the listener (rustls): the certificate chain and key from PEM files, reloaded on
//! demand (`tally serve` does it on SIGHUP) without dropping a connection — connections keep
//! the configuration they were accepted with, new ones get the new one — HTTP/2 and
//! HTTP/1.1 offered by ALPN, and optional client certificates.
//!
//! A client certificate, when a CA is configured, is checked against it during the handshake
//! and may stand in for an API key's secret for ingest only: a certificate whose subject common
//! name is the id of an existing, valid key authenticates requests without an `Authorization`
//! header as that key, with the ingest scope at most ([`crate::extract::Auth`]). Clients without
//! a certificate still connect and use bearer keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

/// Where the listener's certificate, key and (optional) client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates are checked against; none: clients
    /// present no certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {detail}")]
pub struct TlsError {
    /// What was being read.
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What went wrong, and what to do.
    pub detail: String,
}

/// The identity a verified client certificate carries: its subject common name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertName(pub String);

/// The current TLS configuration, replaceable while serving.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files and builds the configuration.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let config = build(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again and, when they make a valid configuration, uses it for every
    /// connection accepted from now on. On error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError {
        what: "private key",
        path: files.key.clone(),
        detail: format!("{e} (give the PEM private key of the certificate)"),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            what: "TLS versions for",
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca, "client CA")? {
                roots.add(cert).map_err(|e| TlsError {
                    what: "client CA",
                    path: ca.clone(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                // Clients without a certificate still connect and send bearer keys.
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError {
                    what: "client CA",
                    path: ca.clone(),
                    detail: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError {
        what: "certificate and key",
        path: files.cert.clone(),
        detail: format!("{e} (do the certificate and the key belong together?)"),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let failed = |detail: String| TlsError {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The subject common name of a DER certificate, if it has one.
pub(crate) fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

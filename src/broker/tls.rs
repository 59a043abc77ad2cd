//! How spbridge reaches RabbitMQ over TLS: `amqps://` with a CA bundle and, for mutual
//! TLS, a client certificate.
//!
//! Owns: reading the PEM files named in `[broker]` (or the inbox's flags), turning them into
//! lapin's TLS settings, and opening a bounded-time connection with them.
//! Must not: decide what is published or consumed (the relay, the task-update consumer and
//! the inbox do), or log the contents of a key.
//!
//! The CA bundle is added to the system's trust roots, so a broker with a public certificate
//! needs no `ca_file`; a private CA (the usual case inside an NHS trust) does. The server name
//! checked is the host of the AMQP URI.

use super::BrokerError;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection attempt (TCP, TLS and the AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of the broker connection's TLS, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerTlsFiles {
    /// CA certificates (PEM) trusted to sign the broker's certificate, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS to the broker.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

impl BrokerTlsFiles {
    /// Read and check the files: every named file must exist and hold what its key says, and
    /// a client certificate comes with its key. Called at start-up so a wrong path stops the
    /// service with a clear message instead of failing every reconnect.
    pub fn load(&self) -> Result<OwnedTLSConfig, BrokerError> {
        let cert_chain = match &self.ca_file {
            Some(path) => {
                let pem = read_text(path)?;
                let count = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .filter(|c| c.is_ok())
                    .count();
                if count == 0 {
                    return Err(tls_error(path, "holds no PEM certificate"));
                }
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let pem = read_text(cert)?;
                if CertificateDer::pem_slice_iter(pem.as_bytes())
                    .next()
                    .is_none()
                {
                    return Err(tls_error(cert, "holds no PEM certificate"));
                }
                let key_pem = read_text(key)?;
                PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|_| tls_error(key, "holds no PEM private key"))?;
                Some(OwnedIdentity::PKCS8 {
                    pem: pem.into_bytes(),
                    key: key_pem.into_bytes(),
                })
            }
            (Some(path), None) | (None, Some(path)) => {
                return Err(tls_error(
                    path,
                    "client_cert and client_key must be given together",
                ))
            }
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }

    /// Whether any TLS file is configured.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// Open a connection to `url` with these TLS files, giving up after 10 seconds.
pub async fn connect(url: &str, tls: &BrokerTlsFiles) -> Result<lapin::Connection, BrokerError> {
    let config = tls.load()?;
    let runtime = lapin::runtime::default_runtime()?;
    let connecting = lapin::Connection::connect_with_config(
        url,
        lapin::ConnectionProperties::default(),
        config,
        runtime,
    );
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| BrokerError::ConnectTimeout)?
        .map_err(BrokerError::from)
}

fn read_text(path: &Path) -> Result<String, BrokerError> {
    std::fs::read_to_string(path).map_err(|e| tls_error(path, &format!("cannot be read: {e}")))
}

fn tls_error(path: &Path, problem: &str) -> BrokerError {
    BrokerError::Tls(format!("{}: {problem}", path.display()))
}

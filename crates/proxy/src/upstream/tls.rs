//! TLS to servers (`url = "https://..."`): rustls with the aws-lc-rs provider, TLS 1.2 and 1.3,
//! ALPN `http/1.1` (Tether speaks HTTP/1.1 to servers), SNI and the certificate check for the
//! URL's host (or the service's `tls.server_name`). The certificate is checked against the
//! system's roots (read once; Mozilla's, built in, when the system has none, as in a FROM-scratch
//! image), or against a CA file's certificates, or, with `insecure_skip_verify`, not at all
//! (logged as a warning each time such a server is set up).

use std::fmt;
use std::sync::{Arc, OnceLock};

use tether_model::ServerTls;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// Why TLS to a server cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("tls.server_name {0:?}: not a host name or IP address")]
    Name(String),
    #[error("tls.ca_file {path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "tls.ca_file {path}: no certificate in it (expected PEM \"-----BEGIN CERTIFICATE-----\")"
    )]
    NoCa { path: String },
    #[error("tls.ca_file {path}: {message}")]
    BadCa { path: String, message: String },
}

/// How to open TLS to one server.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The connector for a server with these settings.
    pub fn new(tls: &ServerTls) -> Result<Connector, TlsConfigError> {
        let name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| TlsConfigError::Name(tls.server_name.clone()))?;
        let config = match (&tls.ca_file, tls.insecure_skip_verify) {
            (_, true) => insecure(),
            (Some(path), false) => with_roots(ca_file(path)?),
            (None, false) => system(),
        };
        Ok(Connector {
            connector: TlsConnector::from(config),
            name,
        })
    }

    /// The handshake over `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
}

fn finish(mut cfg: rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn with_roots(roots: RootCertStore) -> Arc<rustls::ClientConfig> {
    finish(
        builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Checked against the system's roots: one configuration for every such server.
fn system() -> Arc<rustls::ClientConfig> {
    static SYSTEM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "TLS to servers: a system root certificate could not be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::info!("TLS to servers: the system has no root certificates; checking against Mozilla's, built in");
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            } else {
                tracing::debug!(roots = added, "TLS to servers: the system's root certificates");
            }
            with_roots(roots)
        })
        .clone()
}

fn ca_file(path: &std::path::Path) -> Result<RootCertStore, TlsConfigError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::BadCa {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCa { path: shown });
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| TlsConfigError::BadCa {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// `insecure_skip_verify`: any certificate is taken (the handshake's signatures still are
/// checked, so the connection is encrypted, to whoever answers).
fn insecure() -> Arc<rustls::ClientConfig> {
    static INSECURE: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    INSECURE
        .get_or_init(|| {
            finish(
                builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Unchecked(provider())))
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// A verifier that takes any certificate (the handshake's signatures still are checked):
/// `insecure_skip_verify`, and the tests' clients, which look at the certificate presented.
#[derive(Debug)]
pub struct Unchecked(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

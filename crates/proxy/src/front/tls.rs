//! TLS termination on an entrypoint: rustls (aws-lc-rs), TLS 1.2 and 1.3 with rustls' modern
//! cipher suites only, ALPN offering `h2` and `http/1.1` (or what the entrypoint lists), the
//! certificate chosen per handshake from the shared [`certs::CertStore`] by the client's SNI name,
//! and with `strict_sni` a failed handshake for a name no certificate has.

pub mod certs;

use std::sync::Arc;

use tether_model::file_config::{EntrypointTls, TlsVersion};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use certs::CertStore;

/// Why an entrypoint's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("entrypoint {entrypoint}: TLS: {message}")]
pub struct TlsSetupError {
    pub entrypoint: String,
    pub message: String,
}

/// Picks each handshake's certificate from the store.
#[derive(Debug)]
struct Resolver {
    store: Arc<CertStore>,
    strict: bool,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        let picked = self.store.pick(name, self.strict);
        if picked.is_none() {
            tracing::debug!(sni = ?name, "TLS: no certificate for this name (strict_sni): handshake refused");
        }
        picked
    }
}

/// The acceptor of TLS entrypoint `name` with options `opts`, serving from `store`.
pub fn acceptor(
    name: &str,
    opts: &EntrypointTls,
    store: Arc<CertStore>,
) -> Result<TlsAcceptor, TlsSetupError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsSetupError {
            entrypoint: name.to_string(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            store,
            strict: opts.strict_sni,
        }));
    cfg.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

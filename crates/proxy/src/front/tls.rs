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

use crate::acme::{Challenges, ACME_TLS_ALPN};
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
    /// Pending TLS-ALPN-01 challenges, when ACME is on.
    acme: Option<Arc<Challenges>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        // A CA's TLS-ALPN-01 validation offers `acme-tls/1` alone (RFC 8737 section 3): it gets
        // the name's validation certificate, or no handshake; never a served certificate.
        let acme_only = hello
            .alpn()
            .map(|mut p| p.next() == Some(ACME_TLS_ALPN) && p.next().is_none())
            .unwrap_or(false);
        if acme_only {
            let cert = match (&self.acme, name) {
                (Some(c), Some(n)) => c.alpn_cert(n),
                _ => None,
            };
            tracing::info!(sni = ?name, answered = cert.is_some(), "ACME: TLS-ALPN-01 validation handshake");
            return cert;
        }
        let picked = self.store.pick(name, self.strict);
        if picked.is_none() {
            tracing::debug!(sni = ?name, "TLS: no certificate for this name (strict_sni): handshake refused");
        }
        picked
    }
}

/// The acceptor of TLS entrypoint `name` with options `opts`, serving from `store`; with `acme`,
/// it also answers pending TLS-ALPN-01 challenges (and offers `acme-tls/1` for them).
pub fn acceptor(
    name: &str,
    opts: &EntrypointTls,
    store: Arc<CertStore>,
    acme: Option<Arc<Challenges>>,
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
            acme: acme.clone(),
        }));
    cfg.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    if acme.is_some() {
        // Chosen only by a client that offers it alone (a CA validating); the connection is then
        // closed after the handshake ([`is_acme_validation`]).
        cfg.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Did this handshake choose `acme-tls/1`: a CA validating a TLS-ALPN-01 challenge, whose
/// connection ends with the handshake (RFC 8737 section 3).
pub fn is_acme_validation(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ACME_TLS_ALPN)
}

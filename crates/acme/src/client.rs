//! The HTTPS client ACME talks to the CA with: hyper with rustls (aws-lc-rs), checking the
//! directory's certificate against `ca_root` when a resolver gives one (a private CA), else the
//! system's roots, else Mozilla's built in (a `FROM scratch` image has no system roots, and
//! Let's Encrypt must still be reached).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;

use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _, pki_types::CertificateDer};

use crate::order::OrderError;

/// The roots of `ca_root`, else the system's, else Mozilla's.
fn roots(ca_root: Option<&Path>) -> Result<rustls::RootCertStore, OrderError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_root {
        let pem = std::fs::read(path)
            .map_err(|e| OrderError::plain(format!("ca_root {}: {e}", path.display())))?;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| OrderError::plain(format!("ca_root {}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| OrderError::plain(format!("ca_root {}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(OrderError::plain(format!(
                "ca_root {}: no certificate in it (expected PEM)",
                path.display()
            )));
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// The client for a resolver with `ca_root`.
pub fn http(ca_root: Option<&Path>) -> Result<Box<dyn HttpClient>, OrderError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OrderError::plain(format!("TLS: {e}")))?
        .with_root_certificates(roots(ca_root)?)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Box::new(Https(
        Client::builder(TokioExecutor::new()).build(connector),
    )))
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// hyper's client, as instant-acme's [`HttpClient`].
struct Https(Client<Connector, BodyWrapper<Bytes>>);

impl HttpClient for Https {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.0.request(req);
        Box::pin(async move {
            fut.await
                .map(BytesResponse::from)
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))
        })
    }
}

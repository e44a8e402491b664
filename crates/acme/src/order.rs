//! One order, start to end, with `instant-acme` (which retries a `badNonce` answer, as RFC 8555
//! section 6.5 asks): a new order for the names; for each pending authorisation, the resolver's
//! challenge published through the store (HTTP-01's key authorisation, or TLS-ALPN-01's
//! validation certificate, under the order's lock: on every replica with etcd) before the CA is
//! told it is ready; the order polled until ready; a
//! CSR of a fresh key of the resolver's type; the chain fetched. The answers are withdrawn
//! however the order ends.

use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use tether_model::acme::{AcmeResolver, Challenge, KeyType};
use tokio_rustls::rustls::pki_types::CertificateDer;

use crate::store::{Lock, Store, StoredCert};

/// How long the CA may take to validate, and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// Why an order failed: the CA's own problem document when it gave one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OrderError {
    pub message: String,
    /// The problem document's `type` (`urn:ietf:params:acme:error:...`), when the CA sent one.
    pub problem_type: Option<String>,
    /// The problem document as the CA wrote it (type, detail, status, subproblems), as JSON.
    pub problem: Option<serde_json::Value>,
}

impl OrderError {
    /// An error with no problem document.
    pub fn plain(message: impl Into<String>) -> OrderError {
        OrderError::new(message)
    }

    /// The store failed.
    pub fn from_store(e: crate::store::StoreError) -> OrderError {
        OrderError::new(format!("the ACME store: {e}"))
    }

    fn new(message: impl Into<String>) -> OrderError {
        OrderError {
            message: message.into(),
            problem_type: None,
            problem: None,
        }
    }

    /// Does the CA no longer know the account?
    pub fn account_gone(&self) -> bool {
        self.problem_type
            .as_deref()
            .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
    }

    /// Is this the CA's rate limit (then the backoff waits longer, never less)?
    pub fn rate_limited(&self) -> bool {
        self.problem_type
            .as_deref()
            .is_some_and(|t| t.ends_with(":rateLimited"))
    }
}

fn problem_json(p: &instant_acme::Problem) -> serde_json::Value {
    serde_json::json!({
        "type": p.r#type,
        "detail": p.detail,
        "status": p.status,
        "subproblems": p.subproblems.iter().map(|s| serde_json::json!({
            "type": s.r#type,
            "detail": s.detail,
            "identifier": s.identifier.as_ref().map(|i| format!("{i:?}")),
        })).collect::<Vec<_>>(),
    })
}

impl From<instant_acme::Error> for OrderError {
    fn from(e: instant_acme::Error) -> OrderError {
        match &e {
            instant_acme::Error::Api(p) => OrderError {
                message: format!("the CA refused: {p}"),
                problem_type: p.r#type.clone(),
                problem: Some(problem_json(p)),
            },
            other => OrderError::new(format!("ACME: {other}")),
        }
    }
}

/// The validation certificate of TLS-ALPN-01 (RFC 8737 section 3), chain and key PEM:
/// self-signed for `name`, with the critical `acmeIdentifier` extension holding the SHA-256
/// digest of the key authorisation.
pub fn validation_cert(name: &str, digest: &[u8]) -> Result<(String, String), OrderError> {
    let bad = |e: rcgen::Error| OrderError::new(format!("TLS-ALPN-01 certificate for {name}: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(bad)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The answers an order published, withdrawn when it ends.
struct Published<'a> {
    store: &'a Store,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Published<'_> {
    async fn withdraw(self) {
        for t in &self.tokens {
            if let Err(e) = self.store.del_http(t).await {
                tracing::warn!("ACME: withdrawing HTTP-01 token: {e}");
            }
        }
        for n in &self.names {
            if let Err(e) = self.store.del_alpn(n).await {
                tracing::warn!("ACME: withdrawing TLS-ALPN-01 certificate: {e}");
            }
        }
    }
}

/// Order a certificate of `resolver` for `names` through `account`.
pub async fn order(
    account: &Account,
    resolver: &AcmeResolver,
    names: &[String],
    store: &Store,
    lock: &Lock,
) -> Result<StoredCert, OrderError> {
    let mut published = Published {
        store,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let result = run(account, resolver, names, &mut published, lock).await;
    published.withdraw().await;
    result
}

async fn run(
    account: &Account,
    resolver: &AcmeResolver,
    names: &[String],
    published: &mut Published<'_>,
    lock: &Lock,
) -> Result<StoredCert, OrderError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let kind = match resolver.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::new(format!(
                    "authorisation of {} is {other:?}",
                    authz.identifier()
                )))
            }
        }
        let name = authz.identifier().to_string();
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            return Err(OrderError::new(format!(
                "the CA offers no {} challenge for {name}",
                resolver.challenge.as_str()
            )));
        };
        let key_authorization = challenge.key_authorization();
        match resolver.challenge {
            Challenge::Http01 => {
                let token = challenge.token.clone();
                published
                    .store
                    .put_http(lock, &token, key_authorization.as_str())
                    .await
                    .map_err(|e| OrderError::new(e.to_string()))?;
                published.tokens.push(token);
            }
            Challenge::TlsAlpn01 => {
                let pem = validation_cert(&name, key_authorization.digest().as_ref())?;
                published
                    .store
                    .put_alpn(lock, &name, &pem)
                    .await
                    .map_err(|e| OrderError::new(e.to_string()))?;
                published.names.push(name.clone());
            }
        }
        tracing::info!(resolver = %resolver.name, %name, challenge = resolver.challenge.as_str(), "ACME: challenge ready");
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&POLL).await?;
    if status != OrderStatus::Ready {
        let state = order.refresh().await?;
        if let Some(p) = &state.error {
            return Err(OrderError {
                message: format!("the order is {status:?}: {p}"),
                problem_type: p.r#type.clone(),
                problem: Some(problem_json(p)),
            });
        }
        // The authorisations say why.
        let mut why = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(a)) = authorizations.next().await {
            for c in &a.challenges {
                if let Some(p) = &c.error {
                    why.push((format!("{}: {p}", a.identifier()), p.clone()));
                }
            }
        }
        return Err(match why.into_iter().next() {
            Some((m, p)) => OrderError {
                message: format!("the order is {status:?}: {m}"),
                problem_type: p.r#type.clone(),
                problem: Some(problem_json(&p)),
            },
            None => OrderError::new(format!("the order is {status:?}")),
        });
    }
    let key = rcgen::KeyPair::generate_for(match resolver.key_type {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    })
    .map_err(|e| OrderError::new(format!("key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| OrderError::new(format!("CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::new(format!("CSR: {e}")))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&POLL).await?;
    let (not_before, not_after, serial) = dates(&chain)?;
    Ok(StoredCert {
        resolver: resolver.name.clone(),
        names: names.to_vec(),
        cert_pem: chain,
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
        serial,
        issued_at: unix(SystemTime::now()),
    })
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The leaf's validity and serial.
fn dates(chain_pem: &str) -> Result<(u64, u64, String), OrderError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| OrderError::new("the CA sent no certificate"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| OrderError::new(format!("the CA's certificate does not parse: {e}")))?;
    let v = cert.validity();
    Ok((
        u64::try_from(v.not_before.timestamp()).unwrap_or(0),
        u64::try_from(v.not_after.timestamp()).unwrap_or(0),
        cert.raw_serial_as_string().replace(':', ""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_certificate_names_the_host_and_carries_the_digest_critically() {
        let digest = [7u8; 32];
        let pem = validation_cert("a.example", &digest).unwrap();
        let k = crate::store::certified(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&k.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // An OCTET STRING of the 32 bytes.
        assert_eq!(&ext.value[2..], &digest);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names[0]),
            "DNSName(\"a.example\")"
        );
    }
}

//! Where ACME's state is kept: each resolver's account key, each certificate with its key, each
//! failing certificate's backoff, the answers to pending challenges, and the lock under which
//! one process orders a certificate.
//!
//! - [`dir`]: the state directory, for one Tether (no `--store`);
//! - [`etcd`] (cargo feature `etcd`): the store every replica follows. One replica orders a
//!   certificate under a lease that ends if it dies; its challenge answers are written under
//!   that lease before the CA is told to validate, and every replica answers them; every
//!   replica serves a certificate as soon as it is written.
//!
//! Keys (certificates' and accounts') are kept as the API's certificates are: readable by
//! whoever can read the store, never shown by any read of Tether's.

pub mod dir;
#[cfg(feature = "etcd")]
pub mod etcd;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

pub use dir::DirStore;

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a stored ACME document: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("a validation certificate: {0}")]
    Validation(String),
}

/// A certificate ACME issued, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCert {
    pub resolver: String,
    /// The names it was ordered for, the subject first.
    pub names: Vec<String>,
    /// The chain, leaf first (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// Validity, seconds since the epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// Serial number, hex.
    pub serial: String,
    /// When it was issued, seconds since the epoch.
    pub issued_at: u64,
}

/// A failing certificate's state, shared by every process that might order it: the backoff
/// holds for all of them, and all of them show the error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedStatus {
    /// Failed orders in a row.
    pub failures: u32,
    /// No order before this, seconds since the epoch.
    pub next_attempt: u64,
    pub message: String,
    /// The CA's problem document, when it sent one.
    pub problem: Option<serde_json::Value>,
    /// When it failed, seconds since the epoch.
    pub at: u64,
}

/// The id a certificate of `resolver` for `names` is stored under: readable, and one per set of
/// names (in any order).
pub fn cert_id(resolver: &str, names: &[String]) -> String {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let h = sha2::Sha256::digest(sorted.join(",").as_bytes());
    let first = names.first().map_or("none", String::as_str);
    format!("{resolver}-{first}-{}", hex8(&h))
}

/// The id of `resolver`'s account on directory `ca` for `email`: another CA or email is another
/// account.
pub fn account_id(resolver: &str, ca: &str, email: &str) -> String {
    let h = sha2::Sha256::digest(format!("{ca}\n{email}").as_bytes());
    format!("{resolver}-{}", hex8(&h))
}

fn hex8(h: &[u8]) -> String {
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A validation certificate (chain and key PEM) as rustls serves it.
pub fn certified(pem: &(String, String)) -> Result<Arc<CertifiedKey>, StoreError> {
    let bad = |e: String| StoreError::Validation(e);
    let chain = CertificateDer::pem_slice_iter(pem.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(pem.1.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let signing = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Held while a certificate is ordered; dropping it lets another process order it.
#[derive(Debug)]
pub enum Lock {
    /// An `flock` on the certificate's lock file.
    Dir(std::fs::File),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::Lease>),
}

/// The store: the state directory, or etcd.
#[derive(Debug)]
pub enum Store {
    Dir(DirStore),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdStore>),
}

/// One call on whichever store this is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Dir($s) => $e,
            #[cfg(feature = "etcd")]
            Store::Etcd($s) => $e,
        }
    };
}

impl Store {
    pub fn describe(&self) -> String {
        each!(self, s => s.describe())
    }

    /// The stored credentials of account `id`.
    pub async fn account(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.account(id).await)
    }

    pub async fn put_account(&self, id: &str, credentials: &[u8]) -> Result<(), StoreError> {
        each!(self, s => s.put_account(id, credentials).await)
    }

    /// Every stored certificate, by id.
    pub async fn certs(&self) -> Result<Vec<(String, StoredCert)>, StoreError> {
        each!(self, s => s.certs().await)
    }

    pub async fn put_cert(&self, id: &str, cert: &StoredCert) -> Result<(), StoreError> {
        each!(self, s => s.put_cert(id, cert).await)
    }

    /// Every failing certificate's shared state, by id.
    pub async fn statuses(&self) -> Result<Vec<(String, SharedStatus)>, StoreError> {
        each!(self, s => s.statuses().await)
    }

    pub async fn put_status(&self, id: &str, st: &SharedStatus) -> Result<(), StoreError> {
        each!(self, s => s.put_status(id, st).await)
    }

    pub async fn del_status(&self, id: &str) -> Result<(), StoreError> {
        each!(self, s => s.del_status(id).await)
    }

    /// The lock of certificate `id`, unless another process holds it.
    pub async fn lock(&self, id: &str) -> Result<Option<Lock>, StoreError> {
        each!(self, s => s.lock(id).await)
    }

    /// Answer HTTP-01 `token` (on every replica) while `lock` is held, until [`Store::del_http`].
    pub async fn put_http(&self, lock: &Lock, token: &str, ka: &str) -> Result<(), StoreError> {
        each!(self, s => s.put_http(lock, token, ka).await)
    }

    pub async fn del_http(&self, token: &str) -> Result<(), StoreError> {
        each!(self, s => s.del_http(token).await)
    }

    /// Present validation certificate `pem` for `name` (on every replica) while `lock` is held,
    /// until [`Store::del_alpn`].
    pub async fn put_alpn(
        &self,
        lock: &Lock,
        name: &str,
        pem: &(String, String),
    ) -> Result<(), StoreError> {
        each!(self, s => s.put_alpn(lock, name, pem).await)
    }

    pub async fn del_alpn(&self, name: &str) -> Result<(), StoreError> {
        each!(self, s => s.del_alpn(name).await)
    }

    /// Bumped when another process wrote a certificate or a status (never, for the state
    /// directory, which only this process writes).
    pub fn changed(&self) -> watch::Receiver<u64> {
        match self {
            Store::Dir(_) => watch::channel(0).1,
            #[cfg(feature = "etcd")]
            Store::Etcd(s) => s.changed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_per_set_of_names_and_readable() {
        let a = cert_id("le", &["a.example".into(), "b.example".into()]);
        let b = cert_id("le", &["b.example".into(), "a.example".into()]);
        assert!(a.starts_with("le-a.example-"), "{a}");
        assert_eq!(a[a.len() - 8..], b[b.len() - 8..]);
        assert_ne!(cert_id("le", &["a.example".into()]), a);
        assert_ne!(
            account_id("le", "https://x/dir", "a@b.c"),
            account_id("le", "https://y/dir", "a@b.c")
        );
    }
}

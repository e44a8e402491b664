//! The state directory's store, for one Tether (no `--store`):
//!
//! - `acme/accounts/<id>.json`: an account's credentials (its private key);
//! - `acme/certs/<id>.json`: a certificate chain and its key, with the names and dates;
//! - `acme/status/<id>.json`: a failing certificate's backoff and last error, so a restart
//!   does not retry before its time;
//! - `acme/locks/<id>.lock`: held (`flock`) while that certificate is ordered, so that the old
//!   and the new process of `tether upgrade` do not both order it.
//!
//! Files holding keys are written `0600`, to a temporary name and renamed, so a reader never
//! sees half a file. The answers to pending challenges are kept in memory: the CA reaches this
//! process only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tether_proxy::acme::Challenges;
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{certified, Lock, SharedStatus, StoreError, StoredCert};

/// The store of one process: the state directory.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    challenges: Arc<Challenges>,
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl DirStore {
    /// The store under `state_dir/acme`, answering challenges through `challenges`.
    pub fn open(state_dir: &Path, challenges: Arc<Challenges>) -> Result<DirStore, StoreError> {
        let root = state_dir.join("acme");
        for sub in ["accounts", "certs", "status", "locks"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(|source| StoreError::Io { path: p, source })?;
        }
        Ok(DirStore {
            root,
            challenges,
            http: Mutex::default(),
            alpn: Mutex::default(),
        })
    }

    pub fn describe(&self) -> String {
        self.root.display().to_string()
    }

    /// The stored credentials of account `id`.
    pub async fn account(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read(&self.root.join("accounts").join(format!("{id}.json")))
    }

    pub async fn put_account(&self, id: &str, credentials: &[u8]) -> Result<(), StoreError> {
        write_private(
            &self.root.join("accounts").join(format!("{id}.json")),
            credentials,
        )
    }

    /// Every stored certificate, by id; one that does not read is logged and left out.
    pub async fn certs(&self) -> Result<Vec<(String, StoredCert)>, StoreError> {
        self.list("certs")
    }

    /// The documents of folder `sub`, by id (the file name less `.json`), in id order; one that
    /// does not read is logged and left out.
    fn list<T: serde::de::DeserializeOwned>(
        &self,
        sub: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let dir = self.root.join(sub);
        let entries = std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Some(bytes) = read(&path)? else { continue };
            match serde_json::from_slice::<T>(&bytes) {
                Ok(v) => out.push((id.to_string(), v)),
                Err(source) => {
                    tracing::error!("ACME: {}", StoreError::Corrupt { path, source });
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub async fn put_cert(&self, id: &str, cert: &StoredCert) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(cert).expect("a stored certificate serialises");
        write_private(&self.root.join("certs").join(format!("{id}.json")), &bytes)
    }

    /// The lock of certificate `id`, unless another process holds it.
    pub async fn lock(&self, id: &str) -> Result<Option<Lock>, StoreError> {
        let path = self.root.join("locks").join(format!("{id}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock::Dir(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every failing certificate's backoff and last error, by id.
    pub async fn statuses(&self) -> Result<Vec<(String, SharedStatus)>, StoreError> {
        self.list("status")
    }

    pub async fn put_status(&self, id: &str, st: &SharedStatus) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(st).expect("a status serialises");
        write_private(&self.root.join("status").join(format!("{id}.json")), &bytes)
    }

    pub async fn del_status(&self, id: &str) -> Result<(), StoreError> {
        let path = self.root.join("status").join(format!("{id}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Answer HTTP-01 `token` with `key_authorization` until [`DirStore::del_http`].
    pub async fn put_http(
        &self,
        _lock: &Lock,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), StoreError> {
        let mut m = self.http.lock().expect("challenges poisoned");
        m.insert(token.to_string(), key_authorization.to_string());
        self.challenges.set_http(m.clone());
        Ok(())
    }

    pub async fn del_http(&self, token: &str) -> Result<(), StoreError> {
        let mut m = self.http.lock().expect("challenges poisoned");
        m.remove(token);
        self.challenges.set_http(m.clone());
        Ok(())
    }

    /// Present the validation certificate `pem` (chain and key) to a TLS-ALPN-01 validation of
    /// `name` until [`DirStore::del_alpn`].
    pub async fn put_alpn(
        &self,
        _lock: &Lock,
        name: &str,
        pem: &(String, String),
    ) -> Result<(), StoreError> {
        let cert: Arc<CertifiedKey> = certified(pem)?;
        let mut m = self.alpn.lock().expect("challenges poisoned");
        m.insert(name.to_string(), cert);
        self.challenges.set_alpn(m.clone());
        Ok(())
    }

    pub async fn del_alpn(&self, name: &str) -> Result<(), StoreError> {
        let mut m = self.alpn.lock().expect("challenges poisoned");
        m.remove(name);
        self.challenges.set_alpn(m.clone());
        Ok(())
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `bytes` to `path`, readable by its owner only, replacing it whole.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn certificates_and_accounts_are_kept_private_and_a_lock_is_one_holders() {
        let dir = std::env::temp_dir().join(format!("tether-acme-store-{}", fastrand::u64(..)));
        let s = DirStore::open(&dir, Challenges::new()).unwrap();
        let c = StoredCert {
            resolver: "le".into(),
            names: vec!["a.example".into()],
            cert_pem: "C".into(),
            key_pem: "K".into(),
            not_before: 1,
            not_after: 2,
            serial: "01".into(),
            issued_at: 1,
        };
        s.put_cert("le-a", &c).await.unwrap();
        assert_eq!(s.certs().await.unwrap(), vec![("le-a".to_string(), c)]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("acme/certs/le-a.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(s.account("x").await.unwrap().is_none());
        s.put_account("x", b"{}").await.unwrap();
        assert_eq!(s.account("x").await.unwrap().unwrap(), b"{}");
        let held = s.lock("le-a").await.unwrap();
        assert!(held.is_some());
        assert!(s.lock("le-a").await.unwrap().is_none(), "held: not twice");
        drop(held);
        assert!(s.lock("le-a").await.unwrap().is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

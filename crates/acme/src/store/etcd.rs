//! ACME's state in etcd, under `/PREFIX/acme/` (the API store skips these keys):
//!
//! - `accounts/<id>`: an account's credentials;
//! - `certs/<id>`: a certificate chain and its key ([`super::StoredCert`], JSON);
//! - `status/<id>`: a failing certificate's backoff and last error, for every replica;
//! - `locks/<id>`: the replica ordering that certificate, under a lease of [`LOCK_TTL`] seconds
//!   kept alive while it orders: if it dies, the lease ends and another replica takes over;
//! - `http/<token>`, `alpn/<name>`: the answers to the order's pending challenges, under the
//!   same lease, written before the CA is told to validate.
//!
//! Every replica reads the prefix, then watches it: challenge answers go to its
//! [`Challenges`] (the CA may reach any replica through a routing mesh), and a certificate or
//! status written by another replica wakes its manager, which serves it at once. A broken watch
//! is read again in full, after a backoff; meanwhile the answers read before keep serving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tether_proxy::acme::Challenges;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{certified, Lock, SharedStatus, StoreError, StoredCert};

/// A lock's lease: an ordering replica that dies holds it this long at most.
pub const LOCK_TTL: i64 = 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The store every replica follows.
pub struct EtcdStore {
    client: Client,
    /// `/PREFIX/acme/`
    root: String,
    describe: String,
    changed: watch::Sender<u64>,
    follower: JoinHandle<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("root", &self.root)
            .finish()
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// A held lock: its lease, kept alive until dropped (then revoked).
pub struct Lease {
    id: i64,
    client: Client,
    keeper: JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
        let (mut client, id) = (self.client.clone(), self.id);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.lease_revoke(id)).await;
        });
    }
}

fn etcd(e: impl std::fmt::Display) -> StoreError {
    StoreError::Etcd(e.to_string())
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Etcd(format!("{what} timed out")))?
        .map_err(etcd)
}

impl EtcdStore {
    /// Connect (lazily: an unreachable etcd is retried) and follow `/PREFIX/acme/`, answering
    /// the challenges found there through `challenges`.
    pub async fn start(
        endpoints: &[String],
        prefix: &str,
        challenges: Arc<Challenges>,
    ) -> Result<EtcdStore, StoreError> {
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), REQUEST_TIMEOUT)
            .with_keep_alive_while_idle(false);
        let client = Client::connect(urls, Some(options)).await.map_err(etcd)?;
        let root = format!("/{prefix}/acme/");
        let changed = watch::Sender::new(0);
        let follower = tokio::spawn(follow(
            client.clone(),
            root.clone(),
            challenges,
            changed.clone(),
        ));
        Ok(EtcdStore {
            client,
            describe: format!(
                "etcd://{}{}",
                endpoints.join(","),
                root.trim_end_matches('/')
            ),
            root,
            changed,
            follower,
        })
    }

    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = timed("a read", self.client.clone().get(key, None)).await?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), StoreError> {
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        timed("a write", self.client.clone().put(key, value, opts)).await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        timed("a delete", self.client.clone().delete(key, None)).await?;
        Ok(())
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let prefix = format!("{}{dir}", self.root);
        let r = timed(
            "a read",
            self.client
                .clone()
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut out = Vec::new();
        for kv in r.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let id = key.strip_prefix(&prefix).unwrap_or(&key).to_string();
            match serde_json::from_slice::<T>(kv.value()) {
                Ok(v) => out.push((id, v)),
                Err(e) => tracing::error!("ACME: etcd {key}: not a stored ACME document: {e}"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub async fn account(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&format!("{}accounts/{id}", self.root)).await
    }

    pub async fn put_account(&self, id: &str, credentials: &[u8]) -> Result<(), StoreError> {
        self.put(
            &format!("{}accounts/{id}", self.root),
            credentials.to_vec(),
            None,
        )
        .await
    }

    pub async fn certs(&self) -> Result<Vec<(String, StoredCert)>, StoreError> {
        self.list("certs/").await
    }

    pub async fn put_cert(&self, id: &str, cert: &StoredCert) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(cert).expect("a stored certificate serialises");
        self.put(&format!("{}certs/{id}", self.root), bytes, None)
            .await
    }

    pub async fn statuses(&self) -> Result<Vec<(String, SharedStatus)>, StoreError> {
        self.list("status/").await
    }

    pub async fn put_status(&self, id: &str, st: &SharedStatus) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(st).expect("a status serialises");
        self.put(&format!("{}status/{id}", self.root), bytes, None)
            .await
    }

    pub async fn del_status(&self, id: &str) -> Result<(), StoreError> {
        self.delete(&format!("{}status/{id}", self.root)).await
    }

    /// Take `locks/<id>` under a new lease, unless another replica holds it.
    pub async fn lock(&self, id: &str) -> Result<Option<Lock>, StoreError> {
        let mut client = self.client.clone();
        let key = format!("{}locks/{id}", self.root);
        let lease = timed("a lease", client.lease_grant(LOCK_TTL, None))
            .await?
            .id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                replica_id(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let taken = timed("taking the lock", client.txn(txn)).await?.succeeded();
        if !taken {
            let _ = timed("a lease revoke", client.lease_revoke(lease)).await;
            return Ok(None);
        }
        let keeper = tokio::spawn(keep_alive(client.clone(), lease));
        Ok(Some(Lock::Etcd(Box::new(Lease {
            id: lease,
            client,
            keeper,
        }))))
    }

    fn lease_of(lock: &Lock) -> Option<i64> {
        match lock {
            Lock::Etcd(l) => Some(l.id),
            Lock::Dir(_) => None,
        }
    }

    pub async fn put_http(&self, lock: &Lock, token: &str, ka: &str) -> Result<(), StoreError> {
        let key = format!("{}http/{token}", self.root);
        self.put(&key, ka.as_bytes().to_vec(), Self::lease_of(lock))
            .await
    }

    pub async fn del_http(&self, token: &str) -> Result<(), StoreError> {
        self.delete(&format!("{}http/{token}", self.root)).await
    }

    pub async fn put_alpn(
        &self,
        lock: &Lock,
        name: &str,
        pem: &(String, String),
    ) -> Result<(), StoreError> {
        let key = format!("{}alpn/{name}", self.root);
        let body =
            serde_json::to_vec(&serde_json::json!({ "cert": pem.0, "key": pem.1 })).expect("JSON");
        self.put(&key, body, Self::lease_of(lock)).await
    }

    pub async fn del_alpn(&self, name: &str) -> Result<(), StoreError> {
        self.delete(&format!("{}alpn/{name}", self.root)).await
    }
}

/// This replica's id in a lock: its host name and process id.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Keep `lease` alive until the task is aborted (the lock dropped) or the lease ends.
async fn keep_alive(mut client: Client, lease: i64) {
    let Ok((mut keeper, mut replies)) = client.lease_keep_alive(lease).await else {
        tracing::warn!(
            "ACME: the order lock's lease cannot be kept alive; it ends in {LOCK_TTL} s"
        );
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(LOCK_TTL as u64 / 3)).await;
        if keeper.keep_alive().await.is_err() {
            return;
        }
        match replies.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            _ => {
                tracing::warn!("ACME: the order lock's lease ended");
                return;
            }
        }
    }
}

/// What the follower holds: the challenge answers under the prefix.
#[derive(Default)]
struct Answers {
    http: HashMap<String, String>,
    alpn: HashMap<String, (String, String)>,
}

impl Answers {
    /// Take key `rel` (relative to the prefix); true if it is a certificate or a status.
    fn put(&mut self, rel: &str, value: &[u8]) -> bool {
        if let Some(token) = rel.strip_prefix("http/") {
            self.http.insert(
                token.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            );
        } else if let Some(name) = rel.strip_prefix("alpn/") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                self.alpn.insert(name.to_string(), (s("cert"), s("key")));
            }
        } else {
            return rel.starts_with("certs/") || rel.starts_with("status/");
        }
        false
    }

    fn delete(&mut self, rel: &str) -> bool {
        if let Some(token) = rel.strip_prefix("http/") {
            self.http.remove(token);
        } else if let Some(name) = rel.strip_prefix("alpn/") {
            self.alpn.remove(name);
        } else {
            return rel.starts_with("certs/") || rel.starts_with("status/");
        }
        false
    }

    fn publish(&self, c: &Challenges) {
        c.set_http(self.http.clone());
        c.set_alpn(
            self.alpn
                .iter()
                .filter_map(|(name, pem)| match certified(pem) {
                    Ok(k) => Some((name.clone(), k)),
                    Err(e) => {
                        tracing::error!(%name, "ACME: a stored validation certificate: {e}");
                        None
                    }
                })
                .collect(),
        );
    }
}

/// Read the prefix, then watch it, until the task is aborted.
async fn follow(
    client: Client,
    root: String,
    challenges: Arc<Challenges>,
    changed: watch::Sender<u64>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let e = session(client.clone(), &root, &challenges, &changed).await;
        tracing::warn!(error = %e, retry_in = ?backoff, "ACME: following etcd; again soon");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn session(
    mut client: Client,
    root: &str,
    challenges: &Challenges,
    changed: &watch::Sender<u64>,
) -> String {
    let read = match timed(
        "reading ACME's keys",
        client.get(root, Some(GetOptions::new().with_prefix())),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.to_string(),
    };
    let revision = read.header().map_or(0, |h| h.revision());
    let mut answers = Answers::default();
    for kv in read.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        answers.put(key.strip_prefix(root).unwrap_or(&key), kv.value());
    }
    answers.publish(challenges);
    changed.send_modify(|n| *n += 1);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let (_watcher, mut stream) = match timed("a watch", client.watch(root, Some(options))).await {
        Ok(w) => w,
        Err(e) => return e.to_string(),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the watch stream ended".into(),
            Err(e) => return e.to_string(),
        };
        if resp.canceled() || resp.compact_revision() > 0 {
            return "the watch was cancelled or compacted".into();
        }
        let (mut answered, mut stored) = (false, false);
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let rel = key.strip_prefix(root).unwrap_or(&key);
            let challenge = rel.starts_with("http/") || rel.starts_with("alpn/");
            let cert = match ev.event_type() {
                EventType::Put => answers.put(rel, kv.value()),
                EventType::Delete => answers.delete(rel),
            };
            answered |= challenge;
            stored |= cert;
        }
        if answered {
            answers.publish(challenges);
        }
        if stored {
            changed.send_modify(|n| *n += 1);
        }
    }
}

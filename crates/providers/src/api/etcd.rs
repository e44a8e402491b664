//! The shared store: etcd (cargo feature `etcd`). Keys under `/PREFIX/`:
//!
//! - `/PREFIX/routes/NAME`, `/PREFIX/services/NAME`: the JSON documents;
//! - `/PREFIX/change`: the change marker, written by every change.
//!
//! A change is one transaction: if the marker's mod revision is still the one the change was
//! checked against, put and delete the documents and the marker; else nothing (a conflict), so
//! one etcd revision is one whole change and no change is checked against a stale state. Each
//! replica reads the prefix once, then watches it from the next revision; every state the watch
//! reaches is published, the writer's own changes included. A broken watch resumes from the
//! last revision read; if that revision was compacted, the prefix is read again in full. While
//! etcd is unreachable, the last state keeps serving, the problem is reported, and the store
//! retries with backoff.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Commit, Kind, Object, Op, Snapshot, StoreError};

/// Each request to etcd gives up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connection to etcd and the state followed from it.
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
    /// `/PREFIX/`
    root: String,
    state: watch::Sender<Option<Arc<Snapshot>>>,
    health: watch::Sender<Option<String>>,
    follower: JoinHandle<()>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl EtcdStore {
    /// Connect (lazily: an unreachable etcd is retried, never fatal) and start following
    /// `/PREFIX/`.
    pub async fn start(endpoints: Vec<String>, prefix: String) -> Result<EtcdStore, StoreError> {
        let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(urls, Some(options))
            .await
            .map_err(|e| StoreError::Unreachable(format!("etcd {}: {e}", endpoints.join(","))))?;
        let root = format!("/{prefix}/");
        let state = watch::Sender::new(None);
        let health = watch::Sender::new(None);
        let follower = tokio::spawn(follow(
            client.clone(),
            root.clone(),
            state.clone(),
            health.clone(),
        ));
        Ok(EtcdStore {
            client,
            endpoints,
            root,
            state,
            health,
            follower,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "etcd://{}{}",
            self.endpoints.join(","),
            self.root.trim_end_matches('/')
        )
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.state.subscribe()
    }

    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.subscribe()
    }

    /// The revision of the last change committed, by any replica (the marker's mod revision).
    pub async fn latest(&self) -> Result<u64, StoreError> {
        let mut client = self.client.clone();
        let resp = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.get(format!("{}change", self.root), None),
        )
        .await
        .map_err(|_| unreachable("reading the change marker timed out"))?
        .map_err(|e| unreachable(&e.to_string()))?;
        Ok(resp.kvs().first().map_or(0, |kv| kv.mod_revision() as u64))
    }

    /// One transaction: the documents and the marker, if the marker is where `base` saw it.
    pub async fn commit(&self, base: &Snapshot, ops: &[Op]) -> Result<Commit, StoreError> {
        let marker = format!("{}change", self.root);
        let mut then: Vec<TxnOp> = ops
            .iter()
            .map(|op| {
                let (kind, name) = op.target();
                let key = format!("{}{}/{name}", self.root, kind.plural());
                match op {
                    Op::Put { body, .. } => TxnOp::put(key, body.to_string(), None),
                    Op::Delete { .. } => TxnOp::delete(key, None),
                }
            })
            .collect();
        then.push(TxnOp::put(marker.clone(), base.revision.to_string(), None));
        let txn = Txn::new()
            .when([Compare::mod_revision(
                marker,
                CompareOp::Equal,
                base.marker as i64,
            )])
            .and_then(then);
        let mut client = self.client.clone();
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| unreachable("the transaction timed out"))?
            .map_err(|e| unreachable(&e.to_string()))?;
        if !resp.succeeded() {
            return Ok(Commit::Conflict);
        }
        let revision = resp.header().map_or(0, |h| h.revision()) as u64;
        Ok(Commit::Done(revision))
    }
}

fn unreachable(e: &str) -> StoreError {
    StoreError::Unreachable(format!("etcd: {e}"))
}

/// Read, then watch, for as long as the store lives; reconnect with backoff.
async fn follow(
    client: Client,
    root: String,
    state: watch::Sender<Option<Arc<Snapshot>>>,
    health: watch::Sender<Option<String>>,
) {
    let mut backoff = MIN_BACKOFF;
    // The last state read; a broken watch resumes after its revision.
    let mut last: Option<Snapshot> = None;
    loop {
        let err = session(
            client.clone(),
            &root,
            &state,
            &health,
            &mut last,
            &mut backoff,
        )
        .await;
        let problem = format!("etcd unreachable: {err}");
        if health.borrow().as_deref() != Some(problem.as_str()) {
            if health.borrow().is_none() {
                tracing::error!("{problem}; serving the last configuration read and retrying");
            }
            health.send_replace(Some(problem));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: a full read unless resuming, then the watch until it breaks.
async fn session(
    mut client: Client,
    root: &str,
    state: &watch::Sender<Option<Arc<Snapshot>>>,
    health: &watch::Sender<Option<String>>,
    last: &mut Option<Snapshot>,
    backoff: &mut Duration,
) -> String {
    loop {
        let snapshot = match last.take() {
            Some(s) => s,
            None => match read_all(&mut client, root).await {
                Ok(s) => {
                    state.send_replace(Some(Arc::new(s.clone())));
                    s
                }
                Err(e) => return e,
            },
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(snapshot.revision as i64 + 1)
            .with_progress_notify();
        let (_watcher, mut stream) =
            match tokio::time::timeout(REQUEST_TIMEOUT, client.watch(root, Some(options))).await {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => {
                    *last = Some(snapshot);
                    return e.to_string();
                }
                Err(_) => {
                    *last = Some(snapshot);
                    return "the watch could not be created in time".into();
                }
            };
        if health.borrow().is_some() {
            tracing::info!(
                revision = snapshot.revision,
                "etcd: reachable again, following changes"
            );
            health.send_replace(None);
        }
        *backoff = MIN_BACKOFF;
        let mut current = snapshot;
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    *last = Some(current);
                    return "the watch stream ended".into();
                }
                Err(e) => {
                    *last = Some(current);
                    return e.to_string();
                }
            };
            if resp.compact_revision() > 0 {
                tracing::warn!(
                    from = current.revision + 1,
                    compacted = resp.compact_revision(),
                    "etcd: revisions compacted before the watch caught up; reading everything again"
                );
                break; // `last` is None: the loop reads in full
            }
            if resp.canceled() {
                *last = Some(current);
                return format!("the watch was cancelled: {}", resp.cancel_reason());
            }
            if resp.events().is_empty() {
                continue; // created, or a progress notification
            }
            let mut next = current.clone();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                next.revision = next.revision.max(kv.mod_revision() as u64);
                let rel = key.strip_prefix(root).unwrap_or(&key);
                if rel == "change" {
                    next.marker = kv.mod_revision() as u64;
                    continue;
                }
                match ev.event_type() {
                    EventType::Put => place(&mut next, rel, &key, kv.value(), kv.mod_revision()),
                    EventType::Delete => {
                        if let Some(k) = object_key(rel) {
                            next.objects.remove(&k);
                        }
                        next.strays.retain(|s| s != &key);
                    }
                }
            }
            state.send_replace(Some(Arc::new(next.clone())));
            current = next;
        }
    }
}

/// Everything under the prefix, at one revision.
async fn read_all(client: &mut Client, root: &str) -> Result<Snapshot, String> {
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.get(root, Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| "reading the store timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let mut s = Snapshot {
        revision: resp.header().map_or(0, |h| h.revision()) as u64,
        ..Snapshot::default()
    };
    for kv in resp.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let rel = key.strip_prefix(root).unwrap_or(&key);
        if rel == "change" {
            s.marker = kv.mod_revision() as u64;
        } else {
            place(&mut s, rel, &key, kv.value(), kv.mod_revision());
        }
    }
    tracing::debug!(
        revision = s.revision,
        objects = s.objects.len(),
        "etcd: read the store"
    );
    Ok(s)
}

fn object_key(rel: &str) -> Option<(Kind, String)> {
    let (kind, name) = rel.split_once('/')?;
    Some((Kind::from_plural(kind)?, name.to_string()))
}

/// Put one stored document into the snapshot; anything else under the prefix is a stray.
fn place(s: &mut Snapshot, rel: &str, key: &str, value: &[u8], mod_revision: i64) {
    s.strays.retain(|x| x != key);
    let body = serde_json::from_slice::<Value>(value);
    match (object_key(rel), body) {
        (Some(k), Ok(body)) => {
            s.objects.insert(
                k,
                Object {
                    body,
                    mod_revision: mod_revision as u64,
                },
            );
        }
        (Some(k), Err(_)) => {
            s.objects.remove(&k);
            s.strays.push(key.to_string());
        }
        (None, _) => s.strays.push(key.to_string()),
    }
}

//! The shared store: etcd (cargo feature `etcd`). Keys under `/PREFIX/`:
//!
//! - `/PREFIX/routes/NAME`, `/PREFIX/services/NAME`: the JSON documents;
//! - `/PREFIX/change`: the change marker, written by every change;
//! - `/PREFIX/affinity/key`: the affinity key the replicas share when none is given to them
//!   (written once, by the first replica, under a compare-and-swap; readable by whoever can
//!   read etcd);
//! - `/PREFIX/replicas/ID`: each live replica's key fingerprint, under a lease that ends with it;
//! - `/PREFIX/acme/...`: ACME's accounts, certificates, challenge answers and order locks, kept
//!   and followed by `tether-acme` (this store skips them).
//!
//! A change is one transaction: if the marker's mod revision is still the one the change was
//! checked against, put and delete the documents and the marker; else nothing (a conflict), so
//! one etcd revision is one whole change and no change is checked against a stale state. Each
//! replica reads the prefix once, then watches it from the next revision; every state the watch
//! reaches is published, the writer's own changes included. A broken watch resumes from the
//! last revision read; if that revision was compacted, the prefix is read again in full. While
//! etcd is unreachable, the last state keeps serving, the problem is reported, and the store
//! retries with backoff.
//!
//! A store that lost its data (etcd recreated without its volume: a new cluster id, or a
//! revision behind the one last read) is found when the connection comes back ([`lost`]):
//! every replica keeps serving its last state; into an empty store one replica writes that
//! state back under a compare-and-swap, and every replica then adopts what the store holds.
//!
//! Keepalive pings follow etcd's default policy (`--grpc-keepalive-min-time=5s`, no pings
//! without an open stream): every [`KEEPALIVE_INTERVAL`], only while a watch is open. Pinging
//! more often makes etcd close the connection (`ENHANCE_YOUR_CALM`, "too_many_pings").

mod lost;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Commit, Kind, Object, Op, Snapshot, StoreError};

/// Where ACME keeps its state (`tether-acme`'s store): not API documents, not strays.
pub const ACME: &str = "acme/";

/// Each request to etcd gives up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 keepalive pings: twice etcd's default minimum (`--grpc-keepalive-min-time`, 5 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// etcd's default `--grpc-keepalive-min-time`: pings more often than this are refused.
pub const ETCD_MIN_PING_INTERVAL: Duration = Duration::from_secs(5);
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
    /// The last time the store was found to have lost its data, and what was done.
    incident: watch::Sender<Option<String>>,
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
            .with_keep_alive(KEEPALIVE_INTERVAL, REQUEST_TIMEOUT)
            .with_keep_alive_while_idle(false);
        let client = Client::connect(urls, Some(options))
            .await
            .map_err(|e| StoreError::Unreachable(format!("etcd {}: {e}", endpoints.join(","))))?;
        let root = format!("/{prefix}/");
        let state = watch::Sender::new(None);
        let health = watch::Sender::new(None);
        let incident = watch::Sender::new(None);
        let follower = tokio::spawn(follow(
            client.clone(),
            root.clone(),
            Channels {
                state: state.clone(),
                health: health.clone(),
                incident: incident.clone(),
            },
        ));
        Ok(EtcdStore {
            client,
            endpoints,
            root,
            state,
            health,
            incident,
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

    pub fn incident(&self) -> watch::Receiver<Option<String>> {
        self.incident.subscribe()
    }

    /// The affinity key shared by the replicas: the one in the store, else one this replica
    /// makes and writes, unless another replica wrote one first.
    pub async fn shared_key(&self, fresh: String) -> Result<String, StoreError> {
        replicas::shared_key(&mut self.client.clone(), &self.root, fresh).await
    }

    /// Publish this replica's key fingerprint under a lease, kept alive while it runs.
    pub fn announce(&self, fingerprint: &str, source: &str) {
        let task = replicas::announce(
            self.client.clone(),
            self.root.clone(),
            serde_json::json!({ "fingerprint": fingerprint, "key": source }),
        );
        tokio::spawn(task);
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

/// Where the follower publishes.
struct Channels {
    state: watch::Sender<Option<Arc<Snapshot>>>,
    health: watch::Sender<Option<String>>,
    incident: watch::Sender<Option<String>>,
}

/// What the follower keeps between connections.
#[derive(Default)]
struct Followed {
    /// The last state read; a broken watch resumes after its revision.
    last: Option<Snapshot>,
    /// The last state published, which a store that lost its data gets back.
    held: Option<Snapshot>,
    /// The store's identity as last seen: its cluster id and the highest revision read.
    cluster: Option<u64>,
    revision: u64,
}

/// Read, then watch, for as long as the store lives; reconnect with backoff.
async fn follow(client: Client, root: String, out: Channels) {
    let mut backoff = MIN_BACKOFF;
    let mut f = Followed::default();
    loop {
        let err = session(client.clone(), &root, &out, &mut f, &mut backoff).await;
        let problem = format!("etcd unreachable: {err}");
        if out.health.borrow().as_deref() != Some(problem.as_str()) {
            if out.health.borrow().is_none() {
                tracing::error!("{problem}; serving the last configuration read and retrying");
            }
            out.health.send_replace(Some(problem));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: make sure it is the store read before (else recover), a full read
/// unless resuming, then the watch until it breaks.
async fn session(
    mut client: Client,
    root: &str,
    out: &Channels,
    f: &mut Followed,
    backoff: &mut Duration,
) -> String {
    let (state, health) = (&out.state, &out.health);
    match lost::check(&mut client, root, f).await {
        Err(e) => return e,
        Ok(None) => {}
        Ok(Some(what)) => {
            let done = lost::recover(&mut client, root, f).await;
            let incident = format!(
                "{} {what}; {done}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            );
            tracing::error!("etcd: {incident}");
            out.incident.send_replace(Some(incident));
            f.last = None; // read in full, and adopt it
        }
    }
    loop {
        let snapshot = match f.last.take() {
            Some(s) => s,
            None => match read_all(&mut client, root).await {
                Ok(s) => {
                    state.send_replace(Some(Arc::new(s.clone())));
                    f.held = Some(s.clone());
                    f.revision = f.revision.max(s.revision);
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
                    f.last = Some(snapshot);
                    return e.to_string();
                }
                Err(_) => {
                    f.last = Some(snapshot);
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
                    f.last = Some(current);
                    return "the watch stream ended".into();
                }
                Err(e) => {
                    f.last = Some(current);
                    return e.to_string();
                }
            };
            if resp.compact_revision() > 0 {
                tracing::warn!(
                    from = current.revision + 1,
                    compacted = resp.compact_revision(),
                    "etcd: revisions compacted before the watch caught up; reading everything again"
                );
                break; // `f.last` is None: the loop reads in full
            }
            if resp.canceled() {
                f.last = Some(current);
                return format!("the watch was cancelled: {}", resp.cancel_reason());
            }
            if resp.events().is_empty() {
                continue; // created, or a progress notification
            }
            let mut next = current.clone();
            let mut touched = false;
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                next.revision = next.revision.max(kv.mod_revision() as u64);
                let rel = key.strip_prefix(root).unwrap_or(&key);
                if rel.starts_with(ACME) {
                    continue; // ACME's own keys, followed by `tether-acme`
                }
                touched = true;
                if rel == "change" {
                    next.marker = kv.mod_revision() as u64;
                    continue;
                }
                match ev.event_type() {
                    EventType::Put => place(&mut next, rel, &key, kv.value(), kv.mod_revision()),
                    EventType::Delete => {
                        replicas::remove(&mut next, rel);
                        if let Some(k) = object_key(rel) {
                            next.objects.remove(&k);
                        }
                        next.strays.retain(|s| s != &key);
                    }
                }
            }
            f.revision = f.revision.max(next.revision);
            if !touched {
                current.revision = next.revision;
                continue;
            }
            state.send_replace(Some(Arc::new(next.clone())));
            f.held = Some(next.clone());
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
        } else if rel.starts_with(ACME) {
            // ACME's accounts, certificates, challenges and locks: `tether-acme` reads them.
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

/// The object a key names, relative to the prefix: `routes/web`, `tcp/routers/db`.
pub(super) fn object_key(rel: &str) -> Option<(Kind, String)> {
    let (kind, name) = match rel.strip_prefix("tcp/") {
        Some(rest) => {
            let (k, name) = rest.split_once('/')?;
            (&rel[..4 + k.len()], name)
        }
        None => rel.split_once('/')?,
    };
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((Kind::from_plural(kind)?, name.to_string()))
}

/// Put one stored document into the snapshot; anything else under the prefix is a stray.
fn place(s: &mut Snapshot, rel: &str, key: &str, value: &[u8], mod_revision: i64) {
    s.strays.retain(|x| x != key);
    if replicas::place(s, rel, value) {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_kind_and_object() {
        assert_eq!(object_key("routes/web"), Some((Kind::Route, "web".into())));
        assert_eq!(
            object_key("tcp/routers/db"),
            Some((Kind::TcpRouter, "db".into()))
        );
        assert_eq!(
            object_key("tcp/services/db"),
            Some((Kind::TcpService, "db".into()))
        );
        assert_eq!(object_key("tcp/db"), None);
        assert_eq!(object_key("tcp/routers/"), None);
        assert_eq!(object_key("tcp/queues/db"), None);
        assert_eq!(object_key("routes/a/b"), None);
    }

    #[test]
    fn keepalive_pings_follow_etcds_default_policy() {
        assert!(KEEPALIVE_INTERVAL >= ETCD_MIN_PING_INTERVAL);
        assert_eq!(KEEPALIVE_INTERVAL, Duration::from_secs(10));
    }
}

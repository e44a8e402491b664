//! The admin API's source: routes and services created through the API live in a [`Store`]:
//! a state file of this replica ([`local`]), or etcd shared by every replica (`etcd`, with the
//! cargo feature of that name). Every replica follows the store and applies what it holds, the
//! replica that took a change included, so all apply the same changes in the same order.
//!
//! A change is a list of [`Op`]s committed at once against the [`Snapshot`] it was checked
//! against: if the store moved on in between, the commit is refused ([`Commit::Conflict`]) and
//! the caller checks again on the newer state.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod local;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use source::{ApiHandle, ApiSource, AppliedState};
pub use tether_model::api_doc::Kind;

/// One stored route or service.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The JSON document as the API took it.
    pub body: Value,
    /// The store revision that last changed it (its ETag).
    pub mod_revision: u64,
}

/// Everything the store holds at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The store's revision this state is at (etcd's revision; the state file's change count).
    pub revision: u64,
    /// Compare token of the store's change marker: a commit succeeds only if it is unchanged.
    pub marker: u64,
    pub objects: BTreeMap<(Kind, String), Object>,
    /// Keys found in the store that are no route or service (reported, left out).
    pub strays: Vec<String>,
    /// The affinity key every replica shares when none is given (etcd's `affinity/key`).
    pub affinity_key: Option<String>,
    /// What each live replica published (etcd's `replicas/ID`, under a lease): its key's
    /// fingerprint and where its key came from.
    pub replicas: BTreeMap<String, Value>,
}

impl Snapshot {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Object> {
        self.objects.get(&(kind, name.to_string()))
    }

    /// The live replicas whose affinity key is not the one of `fingerprint`: `(id, theirs)`.
    pub fn other_keys(&self, fingerprint: &str) -> Vec<(&str, &str)> {
        self.replicas
            .iter()
            .filter_map(|(id, r)| Some((id.as_str(), r["fingerprint"].as_str()?)))
            .filter(|(_, theirs)| *theirs != fingerprint)
            .collect()
    }
}

/// One part of a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put {
        kind: Kind,
        name: String,
        body: Value,
    },
    Delete {
        kind: Kind,
        name: String,
    },
}

impl Op {
    pub fn target(&self) -> (Kind, &str) {
        match self {
            Op::Put { kind, name, .. } | Op::Delete { kind, name } => (*kind, name),
        }
    }

    /// The objects after `ops` are applied to `objects` (revisions of changed objects unset).
    pub fn apply_all(
        objects: &BTreeMap<(Kind, String), Object>,
        ops: &[Op],
    ) -> BTreeMap<(Kind, String), Object> {
        let mut next = objects.clone();
        for op in ops {
            match op {
                Op::Put { kind, name, body } => {
                    next.insert(
                        (*kind, name.clone()),
                        Object {
                            body: body.clone(),
                            mod_revision: 0,
                        },
                    );
                }
                Op::Delete { kind, name } => {
                    next.remove(&(*kind, name.clone()));
                }
            }
        }
        next
    }
}

/// The outcome of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Stored at this revision.
    Done(u64),
    /// The store changed since the snapshot the change was checked against.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unreachable: {0}")]
    Unreachable(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// Where API changes are kept.
pub enum Store {
    Local(local::LocalStore),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdStore>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Store {
    /// The provider name of its declarations: `api` for the state file, `etcd` for etcd.
    pub fn provider(&self) -> &'static str {
        match self {
            Store::Local(_) => "api",
            #[cfg(feature = "etcd")]
            Store::Etcd(_) => "etcd",
        }
    }

    /// Where it is, for logs and `/api/version`.
    pub fn describe(&self) -> String {
        match self {
            Store::Local(l) => format!("state file {}", l.path().display()),
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.describe(),
        }
    }

    /// The latest state read from the store (`None` until the first read).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        match self {
            Store::Local(l) => l.subscribe(),
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.subscribe(),
        }
    }

    /// `Some(problem)` while the store cannot be reached.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        match self {
            Store::Local(l) => l.health(),
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.health(),
        }
    }

    /// The last time the store was found to have lost its data (etcd recreated without its
    /// volume), and what was done about it; `None` if never.
    pub fn incident(&self) -> Option<String> {
        match self {
            Store::Local(_) => None,
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.incident().borrow().clone(),
        }
    }

    /// The affinity key shared through the store: the one there, else `fresh`, written by the
    /// first replica that asks (under a compare-and-swap, so never two); `None` for the state
    /// file, which no replica shares.
    pub async fn shared_key(&self, fresh: String) -> Result<Option<String>, StoreError> {
        match self {
            Store::Local(_) => {
                let _ = fresh;
                Ok(None)
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.shared_key(fresh).await.map(Some),
        }
    }

    /// Publish this replica's key fingerprint (and where its key came from) for as long as it
    /// runs, so that replicas with other keys are found.
    pub fn announce(&self, fingerprint: &str, source: &str) {
        match self {
            Store::Local(_) => {
                let _ = (fingerprint, source);
            }
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.announce(fingerprint, source),
        }
    }

    /// The revision of the last change committed to the store, by any replica: a change is
    /// checked against a state at least this new, so that it sees every change made before it.
    pub async fn latest(&self) -> Result<u64, StoreError> {
        match self {
            Store::Local(l) => Ok(l.subscribe().borrow().as_ref().map_or(0, |s| s.revision)),
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.latest().await,
        }
    }

    /// Store `ops` as one change, if the store is still at `base`.
    pub async fn commit(&self, base: &Snapshot, ops: &[Op]) -> Result<Commit, StoreError> {
        match self {
            Store::Local(l) => l.commit(base, ops).await,
            #[cfg(feature = "etcd")]
            Store::Etcd(e) => e.commit(base, ops).await,
        }
    }

    /// Is it shared by several replicas (etcd), rather than this replica's own file?
    pub fn is_shared(&self) -> bool {
        !matches!(self, Store::Local(_))
    }
}

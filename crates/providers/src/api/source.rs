//! The store followed as a [`Source`], and the handle through which the admin API changes it
//! and learns when a change is served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tether_model::api_doc;
use tether_model::{ProviderUpdate, ValidationError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Kind, Object, Snapshot, Store};
use crate::source::{Applied, Event, FirstSync, Run, Source};

/// How long start-up waits for the first read of a shared store before serving without it.
pub const FIRST_SYNC: Duration = Duration::from_secs(5);

/// A snapshot of the store and what applying it gave.
#[derive(Debug, Clone)]
pub struct AppliedState {
    pub snapshot: Arc<Snapshot>,
    /// The version of the table served after it, or the errors that kept it out.
    pub result: Applied,
}

/// Follows the store: every state it reaches is applied, in order.
pub struct ApiSource {
    store: Arc<Store>,
    entrypoints: Arc<[String]>,
    applied: watch::Sender<Option<AppliedState>>,
}

/// What the admin API holds: the store to commit to and the state last applied.
#[derive(Debug, Clone)]
pub struct ApiHandle {
    store: Arc<Store>,
    entrypoints: Arc<[String]>,
    applied: watch::Receiver<Option<AppliedState>>,
}

impl ApiSource {
    /// A source following `store`, whose routes may list these entrypoints.
    pub fn new(store: Store, entrypoints: Vec<String>) -> (ApiSource, ApiHandle) {
        let store = Arc::new(store);
        let entrypoints: Arc<[String]> = entrypoints.into();
        let (applied, rx) = watch::channel(None);
        let handle = ApiHandle {
            store: store.clone(),
            entrypoints: entrypoints.clone(),
            applied: rx,
        };
        (
            ApiSource {
                store,
                entrypoints,
                applied,
            },
            handle,
        )
    }
}

impl Source for ApiSource {
    fn name(&self) -> &str {
        self.store.provider()
    }

    fn first_sync(&self) -> FirstSync {
        if self.store.is_shared() {
            FirstSync::Wait(FIRST_SYNC)
        } else {
            FirstSync::Required
        }
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Event>) -> Run {
        Box::pin(async move { self.follow(tx).await })
    }
}

impl ApiSource {
    async fn follow(self, tx: mpsc::Sender<Event>) {
        let mut snapshots = self.store.subscribe();
        let mut health = self.store.health();
        let provider = self.store.provider();
        let mut applied_revision = None;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = snapshot.filter(|s| applied_revision != Some(s.revision)) {
                let update = update(provider, &snapshot, &self.entrypoints);
                let (ack, outcome) = oneshot::channel();
                let event = Event::Update {
                    update,
                    applied: Some(ack),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
                let Ok(result) = outcome.await else { return };
                applied_revision = Some(snapshot.revision);
                self.applied
                    .send_replace(Some(AppliedState { snapshot, result }));
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                changed = health.changed() => {
                    if changed.is_err() { return }
                    let problem = health.borrow_and_update().clone();
                    if tx.send(Event::Health(problem)).await.is_err() { return }
                }
            }
        }
    }
}

/// The declarations of a snapshot. A document that does not check out (written to etcd by
/// hand, say) is left out and reported; the rest is applied.
fn update(provider: &str, snapshot: &Snapshot, entrypoints: &[String]) -> ProviderUpdate {
    let (declared, mut errors) = match declarations(&snapshot.objects, entrypoints) {
        Ok(d) => (d, Vec::new()),
        Err(_) => {
            let (mut declared, mut errors) = (api_doc::Declarations::default(), Vec::new());
            for (key, object) in &snapshot.objects {
                let one = BTreeMap::from([(key.clone(), object.clone())]);
                match declarations(&one, entrypoints) {
                    Ok(d) => declared.extend(d),
                    Err(es) => errors.extend(es.iter().map(|e| {
                        format!("{e} (stored at revision {}, left out)", object.mod_revision)
                    })),
                }
            }
            (declared, errors)
        }
    };
    errors.extend(snapshot.strays.iter().map(|k| {
        format!(
            "{k}: not a route, service, middleware, TCP router, TCP service or certificate holding a JSON object; left out"
        )
    }));
    let certificates = certificates(provider, &snapshot.objects, &mut errors);
    ProviderUpdate {
        provider: provider.to_string(),
        services: declared.services,
        routes: declared.routes,
        errors,
        version: snapshot.revision.to_string(),
        observed: None,
        certificates,
        middlewares: declared.middlewares,
        tcp_routes: declared.tcp_routes,
    }
}

/// The stored certificates; one whose document does not check out is left out and reported.
fn certificates(
    provider: &str,
    objects: &BTreeMap<(Kind, String), Object>,
    errors: &mut Vec<String>,
) -> Vec<tether_model::CertificateDecl> {
    let mut out = Vec::new();
    for ((kind, name), o) in objects {
        if *kind != Kind::Certificate {
            continue;
        }
        match api_doc::certificate(name, &o.body) {
            Ok(mut c) => {
                c.origin = format!("{} ({provider})", c.origin);
                out.push(c);
            }
            Err(e) => errors.push(format!(
                "{e} (stored at revision {}, left out)",
                o.mod_revision
            )),
        }
    }
    out
}

/// The declarations of a set of stored objects, with every error naming its field.
pub fn declarations(
    objects: &BTreeMap<(Kind, String), Object>,
    entrypoints: &[String],
) -> Result<api_doc::Declarations, Vec<ValidationError>> {
    api_doc::declarations(
        objects
            .iter()
            .map(|((kind, name), o)| (*kind, name.as_str(), &o.body)),
        entrypoints,
    )
}

impl ApiHandle {
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every state applied from the store, as it comes.
    pub fn watch_applied(&self) -> watch::Receiver<Option<AppliedState>> {
        self.applied.clone()
    }

    pub fn entrypoints(&self) -> &[String] {
        &self.entrypoints
    }

    /// The state last applied (`None` before the store's first read).
    pub fn applied(&self) -> Option<AppliedState> {
        self.applied.borrow().clone()
    }

    /// The update `objects` would give, for checking a change before it is committed.
    pub fn update_for(
        &self,
        objects: &BTreeMap<(Kind, String), Object>,
    ) -> Result<ProviderUpdate, Vec<ValidationError>> {
        let d = declarations(objects, &self.entrypoints)?;
        Ok(ProviderUpdate {
            provider: self.store.provider().to_string(),
            services: d.services,
            routes: d.routes,
            middlewares: d.middlewares,
            tcp_routes: d.tcp_routes,
            errors: Vec::new(),
            ..ProviderUpdate::default()
        })
    }

    /// Wait until a state at `revision` or later is applied; `None` after `deadline`.
    pub async fn wait_for(&self, revision: u64, deadline: Duration) -> Option<AppliedState> {
        let mut rx = self.applied.clone();
        let reached = async move {
            rx.wait_for(|a| a.as_ref().is_some_and(|a| a.snapshot.revision >= revision))
                .await
                .ok()
                .and_then(|state| state.clone())
        };
        tokio::time::timeout(deadline, reached).await.ok().flatten()
    }
}

//! The affinity key of replicas that share a store. A key given by file or configuration always
//! wins. Without one, and with `--store etcd://...`, every replica takes the key in the store,
//! which the first replica to ask writes there (under a compare-and-swap, so never two keys):
//! stickiness across replicas then needs no step to forget. Each replica publishes its key's
//! fingerprint in the store, so that one holding another key is reported.
//!
//! If etcd does not answer at start, the replica seals with a key of its own (saying so), keeps
//! asking, and re-seals with the shared key once it has it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_balance::AffinityKey;
use tether_control::{key, Control};
use tether_model::file_config::KeySource;
use tether_providers::api::{ApiHandle, Store};

/// How long start-up waits for etcd to give the shared key.
const WAIT_AT_START: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);

/// Where the key in use came from (published with its fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file or the configuration.
    Given,
    /// The store, shared by every replica.
    Store,
    /// This replica's own, generated (no store).
    Generated,
    /// This replica's own until etcd answers.
    Pending,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Given => "given",
            Origin::Store => "store",
            Origin::Generated => "generated",
            Origin::Pending => "own until etcd answers",
        }
    }
}

/// The key to start with.
pub async fn at_start(
    source: &KeySource,
    state_dir: &Path,
    store: Option<&Store>,
) -> anyhow::Result<(AffinityKey, Origin)> {
    if !matches!(source, KeySource::Generated) {
        return Ok((key::load(source, state_dir)?, Origin::Given));
    }
    let Some(store) = store.filter(|s| s.is_shared()) else {
        return Ok((key::load(source, state_dir)?, Origin::Generated));
    };
    let end = Instant::now() + WAIT_AT_START;
    loop {
        match store.shared_key(key::random_secret()).await {
            Ok(Some(k)) => {
                tracing::info!(store = %store.describe(), "affinity key: the one every replica shares through the store");
                return Ok((AffinityKey::from_secret(k.trim().as_bytes()), Origin::Store));
            }
            Ok(None) => return Ok((key::load(source, state_dir)?, Origin::Generated)),
            Err(e) if Instant::now() < end => {
                tracing::debug!(error = %e, "affinity key: waiting for the store");
                tokio::time::sleep(RETRY / 4).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "affinity key: the store does not answer, so this replica seals with a key of its own until it does: sessions it pins are not recognised by the other replicas meanwhile");
                let own = AffinityKey::from_secret(key::random_secret().as_bytes());
                return Ok((own, Origin::Pending));
            }
        }
    }
}

/// Publish this replica's fingerprint; for a pending key, keep asking the store and re-seal
/// with the shared key once it answers.
pub fn follow_up(origin: Origin, api: &ApiHandle, control: &Arc<Control>) {
    if !api.store().is_shared() {
        return;
    }
    tokio::spawn(report_disagreement(api.clone(), control.clone()));
    if origin != Origin::Pending {
        api.store()
            .announce(&control.key_fingerprint(), origin.as_str());
        return;
    }
    let (api, control) = (api.clone(), control.clone());
    tokio::spawn(async move {
        loop {
            match api.store().shared_key(key::random_secret()).await {
                Ok(Some(k)) => {
                    control.rekey(AffinityKey::from_secret(k.trim().as_bytes()));
                    tracing::info!("affinity key: the store answered; sealing with the key every replica shares");
                    api.store()
                        .announce(&control.key_fingerprint(), Origin::Store.as_str());
                    return;
                }
                Ok(None) => return,
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    });
}

/// Log, whenever it changes, which replicas seal with another key than this one.
async fn report_disagreement(api: ApiHandle, control: Arc<Control>) {
    let mut applied = api.watch_applied();
    let mut said: Vec<String> = Vec::new();
    while applied.changed().await.is_ok() {
        let own = control.key_fingerprint();
        let others: Vec<String> = applied
            .borrow_and_update()
            .as_ref()
            .map(|a| {
                a.snapshot
                    .other_keys(&own)
                    .into_iter()
                    .map(|(id, theirs)| format!("{id} ({theirs})"))
                    .collect()
            })
            .unwrap_or_default();
        if others != said {
            if !others.is_empty() {
                tracing::error!(replicas = %others.join(", "), fingerprint = %own, "affinity key: these replicas seal sticky cookies with another key than this one: sessions pinned by one are not recognised by the others; give them all the same --key-file, or none");
            }
            said = others;
        }
    }
}

//! What the replicas share besides routes and services: the affinity key when none is given
//! to them (`affinity/key`, written once under a compare-and-swap), and each live replica's key
//! fingerprint (`replicas/ID`, under a lease that ends with the replica), so that a replica
//! holding another key (a `--key-file` given to one replica only, say) is found and reported.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde_json::Value;

use super::super::{Snapshot, StoreError};
use super::{unreachable, REQUEST_TIMEOUT};

const KEY: &str = "affinity/key";
const REPLICAS: &str = "replicas/";
/// A replica's entry outlives it by at most this.
const LEASE_TTL: i64 = 15;

/// Take a key of this module's into the snapshot; false if `rel` is none of them.
pub(super) fn place(s: &mut Snapshot, rel: &str, value: &[u8]) -> bool {
    if rel == KEY {
        s.affinity_key = Some(String::from_utf8_lossy(value).into_owned());
        return true;
    }
    if let Some(id) = rel.strip_prefix(REPLICAS) {
        let v = serde_json::from_slice::<Value>(value).unwrap_or(Value::Null);
        s.replicas.insert(id.to_string(), v);
        return true;
    }
    false
}

/// A key of this module's was deleted (a replica's lease ended).
pub(super) fn remove(s: &mut Snapshot, rel: &str) {
    if rel == KEY {
        s.affinity_key = None;
    } else if let Some(id) = rel.strip_prefix(REPLICAS) {
        s.replicas.remove(id);
    }
}

/// The key in the store, else `fresh` written unless another replica wrote one first.
pub(super) async fn shared_key(
    client: &mut Client,
    root: &str,
    fresh: String,
) -> Result<String, StoreError> {
    let key = format!("{root}{KEY}");
    let txn = Txn::new()
        .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), fresh.clone(), None)])
        .or_else([TxnOp::get(key.clone(), None)]);
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn))
        .await
        .map_err(|_| unreachable("writing the affinity key timed out"))?
        .map_err(|e| unreachable(&e.to_string()))?;
    if resp.succeeded() {
        tracing::info!("etcd: no affinity key in the store: this replica wrote one, which every replica shares");
        return Ok(fresh);
    }
    for r in resp.op_responses() {
        if let etcd_client::TxnOpResponse::Get(g) = r {
            if let Some(kv) = g.kvs().first() {
                return Ok(String::from_utf8_lossy(kv.value()).into_owned());
            }
        }
    }
    Err(unreachable("the affinity key vanished while it was read"))
}

/// This replica's id: its host name and process id.
fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

/// Keep `replicas/ID` = `entry` under a lease for as long as the process runs.
pub(super) async fn announce(mut client: Client, root: String, entry: Value) {
    let key = format!("{root}{REPLICAS}{}", replica_id());
    loop {
        if let Err(e) = hold(&mut client, &key, &entry).await {
            tracing::debug!(error = %e, "etcd: announcing this replica's key fingerprint; again soon");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Grant a lease, put the entry under it and keep the lease alive until that fails.
async fn hold(client: &mut Client, key: &str, entry: &Value) -> Result<(), String> {
    let lease = client
        .lease_grant(LEASE_TTL, None)
        .await
        .map_err(|e| e.to_string())?;
    client
        .put(
            key,
            entry.to_string(),
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut keeper, mut replies) = client
        .lease_keep_alive(lease.id())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        tokio::time::sleep(Duration::from_secs(LEASE_TTL as u64 / 3)).await;
        keeper.keep_alive().await.map_err(|e| e.to_string())?;
        match replies.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            Ok(_) => return Err("the lease ended".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

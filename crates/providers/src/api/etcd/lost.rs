//! A store that lost its data: etcd recreated without its volume (a new cluster id) or restored
//! from an older backup (a revision behind the one last read). Found when a connection comes
//! back, before the watch resumes. Every replica keeps serving its last state meanwhile. Into an
//! empty store one replica writes that state back, routes, services and certificates, under a
//! compare-and-swap on the change marker (so never two of them); then every replica reads the
//! store in full and adopts what it holds.

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::{Followed, REQUEST_TIMEOUT};

/// etcd's default `--max-txn-ops`: operations in one transaction.
const MAX_TXN_OPS: usize = 128;

/// Is the store the one read before? `Ok(Some(what))` when it lost its data.
pub(super) async fn check(
    client: &mut Client,
    root: &str,
    f: &mut Followed,
) -> Result<Option<String>, String> {
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.get(format!("{root}change"), None))
        .await
        .map_err(|_| "reading the change marker timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let Some(h) = resp.header() else {
        return Ok(None);
    };
    let (cluster, revision) = (h.cluster_id(), h.revision().max(0) as u64);
    let what = match f.cluster {
        Some(c) if c != cluster => Some(format!(
            "the store lost its data: etcd's cluster id changed from {c:x} to {cluster:x} (recreated without its data?)"
        )),
        Some(_) if revision < f.revision => Some(format!(
            "the store lost its data: its revision went back from {} to {revision} (restored from an older backup?)",
            f.revision
        )),
        _ => None,
    };
    f.cluster = Some(cluster);
    if what.is_some() {
        f.revision = revision;
    }
    Ok(what)
}

/// Write this replica's last state back if the store is empty; says what was done.
pub(super) async fn recover(client: &mut Client, root: &str, f: &Followed) -> String {
    let adopt = "every replica adopts what the store holds";
    let Some(held) = &f.held else {
        return format!("this replica held no state; {adopt}");
    };
    let count = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.get(
            root,
            Some(GetOptions::new().with_prefix().with_count_only()),
        ),
    )
    .await
    {
        Ok(Ok(r)) => r.count(),
        Ok(Err(e)) => return format!("cannot read it ({e}); {adopt}"),
        Err(_) => return format!("reading it timed out; {adopt}"),
    };
    if count > 0 {
        return format!("it holds {count} keys already; {adopt}");
    }
    let marker = format!("{root}change");
    let mut puts: Vec<TxnOp> = held
        .objects
        .iter()
        .map(|((kind, name), o)| {
            TxnOp::put(
                format!("{root}{}/{name}", kind.plural()),
                o.body.to_string(),
                None,
            )
        })
        .collect();
    let n = puts.len();
    if let Some(k) = &held.affinity_key {
        // The shared affinity key too, so that the sessions pinned before stay pinned.
        puts.push(TxnOp::put(format!("{root}affinity/key"), k.clone(), None));
    }
    let rest = puts.split_off(puts.len().min(MAX_TXN_OPS - 1));
    puts.push(TxnOp::put(marker.clone(), "restored", None));
    // Only while no replica has written a marker: one replica writes, the others adopt.
    let first = Txn::new()
        .when([Compare::version(marker, CompareOp::Equal, 0)])
        .and_then(puts);
    match tokio::time::timeout(REQUEST_TIMEOUT, client.txn(first)).await {
        Ok(Ok(r)) if r.succeeded() => {}
        Ok(Ok(_)) => return format!("another replica wrote its state back first; {adopt}"),
        Ok(Err(e)) => return format!("writing this replica's state back failed ({e}); {adopt}"),
        Err(_) => return format!("writing this replica's state back timed out; {adopt}"),
    }
    for chunk in rest.chunks(MAX_TXN_OPS) {
        let txn = Txn::new().and_then(chunk.to_vec());
        if let Err(e) = client.txn(txn).await {
            return format!(
                "this replica wrote part of its state back, then failed ({e}); {adopt}"
            );
        }
    }
    format!("the store was empty: this replica wrote its last state back ({n} routes, services and certificates), and every replica adopts it")
}

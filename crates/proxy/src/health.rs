//! Active health checks: every server of a service with `[services.<name>.health]` gets
//! `GET <path>` on a connection of its own (never a pooled one) every `interval`; a TCP
//! service's (`[tcp.services.<name>.health]`) gets a connection, closed once made. `fall` failures
//! in a row (no answer within `timeout`, a refused connection, or a status outside 2xx and 3xx)
//! take it out of rotation: it gets no new requests, and its pinned sessions move as their
//! service's `on_missing` says. `rise` successes in a row bring it back. A server starts in
//! rotation, so a new replica serves at once; one that refuses a connection under traffic is
//! taken out at once (the passive check) and comes back only through these checks.
//!
//! One task runs them all: it reads the live table every [`TICK`], so a check follows its server
//! through reloads (its state lives with the server's, in the registry) and stops with it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tether_balance::ServerState;
use tether_model::HealthCheck;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::upstream::registry::Backend;
use crate::TableStore;

/// How often the table is looked at for checks that are due.
pub const TICK: Duration = Duration::from_millis(100);

/// One server's checks so far, and what its last table said of them.
struct Tracked {
    state: Weak<ServerState>,
    service: String,
    server: Arc<str>,
    rise: u32,
    fall: u32,
    due: Instant,
    running: bool,
    successes: u32,
    failures: u32,
}

/// Run the checks of every table `store` serves, until the task is dropped.
pub async fn run(store: TableStore) {
    let mut tracked: HashMap<usize, Tracked> = HashMap::new();
    let mut probes: JoinSet<(usize, Result<(), String>)> = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                if let Ok((key, outcome)) = done {
                    if let Some(t) = tracked.get_mut(&key) {
                        if record(t, outcome) {
                            // Requests waiting for a server of its service may go now.
                            crate::handler::wake_waiting(&store.load());
                        }
                    }
                }
                continue;
            }
        }
        let table = store.load_full();
        let now = Instant::now();
        let mut seen = HashSet::new();
        for svc in table.services.iter() {
            let Some(check) = &svc.health else { continue };
            for b in &svc.backends {
                let key = Arc::as_ptr(&b.state) as usize;
                seen.insert(key);
                let t = tracked.entry(key).or_insert_with(|| Tracked {
                    state: Arc::downgrade(&b.state),
                    service: svc.name.clone(),
                    server: b.name.clone(),
                    rise: check.rise,
                    fall: check.fall,
                    due: now,
                    running: false,
                    successes: 0,
                    failures: 0,
                });
                (t.rise, t.fall) = (check.rise, check.fall);
                if t.running || t.due > now {
                    continue;
                }
                t.running = true;
                t.due = now + check.interval;
                let (backend, check) = (b.clone(), check.clone());
                // A TCP service's check, or an HTTP one without a path (dockercloud's
                // HEALTH_CHECK without HTTP_CHECK: HAProxy's `check`), is a connect.
                if svc.protocol.is_tcp() || check.path.is_empty() {
                    probes.spawn(async move { (key, connects(&backend, &check).await) });
                } else {
                    probes.spawn(async move { (key, probe(&backend, &check).await) });
                }
            }
        }
        // Servers no longer declared, or no longer checked, are forgotten.
        tracked.retain(|k, t| seen.contains(k) && t.state.strong_count() > 0);
        drop(table);
    }
}

/// Count one probe's outcome and change the server's state when a streak says so. True when
/// the server came back into rotation.
fn record(t: &mut Tracked, outcome: Result<(), String>) -> bool {
    t.running = false;
    let Some(state) = t.state.upgrade() else {
        return false;
    };
    match outcome {
        Ok(()) => {
            t.failures = 0;
            t.successes = t.successes.saturating_add(1);
            if !state.is_healthy() && t.successes >= t.rise {
                state.set_healthy(true);
                state.mark_ok();
                tracing::info!(service = %t.service, server = %t.server, "health: passed {} checks in a row: back in rotation", t.rise);
                return true;
            }
        }
        Err(e) => {
            t.successes = 0;
            t.failures = t.failures.saturating_add(1);
            if state.is_healthy() && t.failures >= t.fall {
                state.set_healthy(false);
                tracing::warn!(service = %t.service, server = %t.server, error = %e, "health: failed {} checks in a row: out of rotation", t.fall);
            }
        }
    }
    false
}

/// A TCP service's check: a connection is made within the timeout (and closed at once).
async fn connects(backend: &Backend, check: &HealthCheck) -> Result<(), String> {
    let dial = crate::upstream::pool::Dial {
        timeout: check.timeout,
        keepalive: None,
    };
    match tokio::time::timeout(check.timeout, backend.pool.open(dial)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {:?}", check.timeout)),
    }
}

/// One `GET` of the check's path on a fresh connection (over TLS to an `https://` server).
async fn probe(backend: &Backend, check: &HealthCheck) -> Result<(), String> {
    let addr = &backend.addr;
    let attempt = async {
        let stream = backend
            .pool
            .open(crate::upstream::pool::Dial {
                timeout: check.timeout,
                keepalive: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(check.path.as_str())
            .header(header::HOST, addr.to_string())
            .header(header::USER_AGENT, "tether-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let s = resp.status();
        if s.is_success() || s.is_redirection() {
            Ok(())
        } else {
            Err(format!("{} answered {s}", check.path))
        }
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

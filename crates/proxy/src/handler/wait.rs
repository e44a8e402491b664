//! A service that has no server keeps its routes: a request for it waits here, up to the
//! service's `wait_for_server`, for a server to come (a task that starts in a rolling update, a
//! scaled-up service, a server whose health check passes again), and is then routed afresh on the
//! table of that moment. Past the wait, or beyond `wait_queue` waiting requests, it gets 503 with
//! `Retry-After: 1`: never 404, and never another route.
//!
//! A waiting request sleeps on its service's [`ServiceStats::ready`], which a new table that
//! gives the service a server ([`wake`]) and a health check that passes wake; a short poll covers
//! what signals nothing (a passive failure mark running out).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tether_model::ServerWait;

use super::route::lookup;
use super::send::route_and_send;
use super::{Arrival, Shared};
use crate::answer::{error, Answer};
use crate::request::RequestHead;
use crate::route::table::{RoutingTable, Service};
use crate::stats::ServiceStats;
use crate::upstream::body::{ClientBody, ProxyBody};
use crate::upstream::meter::Meter;

/// How often a waiting request looks again without being woken.
const POLL: Duration = Duration::from_millis(100);

/// A request put aside until its service has a server.
pub(super) struct Parked {
    head: RequestHead,
    body: ClientBody,
    stats: Arc<ServiceStats>,
    wait: ServerWait,
}

impl Parked {
    pub(super) fn new(svc: &Service, head: RequestHead, body: ClientBody) -> Parked {
        Parked {
            head,
            body,
            stats: svc.stats.clone(),
            wait: svc.wait,
        }
    }
}

/// 503 for a service without a server, with `Retry-After: 1`.
pub(crate) fn no_server(service: &str) -> Response<ProxyBody> {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("service {service} has no available server"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Wake the requests waiting for a service of `table` that now has a server.
pub fn wake(table: &RoutingTable) {
    for svc in &table.services {
        if svc.stats.waiting.load(Relaxed) > 0 && svc.has_server() {
            svc.stats.ready.notify_waiters();
        }
    }
}

/// One waiting request's place in its service's queue.
struct Slot<'a>(&'a ServiceStats);

impl<'a> Slot<'a> {
    fn take(stats: &'a ServiceStats, queue: u32) -> Option<Slot<'a>> {
        let before = stats.waiting.fetch_add(1, Relaxed);
        let slot = Slot(stats);
        (before < queue).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Relaxed);
    }
}

/// Wait for the parked request's service to have a server, then route it again; 503 past the
/// wait. A trait object: it routes through [`route_and_send`], which parks through it.
pub(super) fn for_server<'a>(
    shared: &'a Shared,
    from: &'a Arrival<'a>,
    parked: Parked,
    host: &'a str,
    meter: &'a mut Meter,
) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>> {
    Box::pin(async move {
        let Parked {
            head,
            body,
            stats,
            wait,
        } = parked;
        match until(&shared.store, &stats, wait, |t| {
            routable(t, shared, from, &head, host)
        })
        .await
        {
            Some(table) => {
                route_and_send(shared, &table, from, head, body, host, meter, false).await
            }
            None => no_server(&stats.name).into(),
        }
    })
}

/// Wait, up to `wait.timeout` and as one of at most `wait.queue` waiting on the service of
/// `stats`, until `ready` holds of the table of the moment: that table; `None` past the wait,
/// beyond the queue, or with no wait at all. Woken by a table or a health check that gives the
/// service a server ([`wake`]), else every [`POLL`]. HTTP requests and TCP connections alike.
pub(crate) async fn until(
    store: &crate::TableStore,
    stats: &ServiceStats,
    wait: ServerWait,
    ready: impl Fn(&RoutingTable) -> bool,
) -> Option<Arc<RoutingTable>> {
    if wait.timeout.is_zero() {
        return None;
    }
    let Some(_slot) = Slot::take(stats, wait.queue) else {
        tracing::debug!(service = %stats.name, queue = wait.queue, "no server, and the wait queue is full");
        return None;
    };
    stats.count_waited();
    let deadline = Instant::now() + wait.timeout;
    loop {
        let woken = stats.ready.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let table = store.load_full();
        if ready(&table) {
            return Some(table);
        }
        let now = Instant::now();
        if now >= deadline {
            stats.count_wait_expired();
            return None;
        }
        tokio::select! {
            () = &mut woken => {}
            () = tokio::time::sleep(POLL.min(deadline - now)) => {}
        }
    }
}

/// May the request be routed on `table` without waiting: its route now leads to a service with a
/// server, or it is gone (and the request gets the answer of the table of that moment)?
fn routable(
    table: &RoutingTable,
    shared: &Shared,
    from: &Arrival<'_>,
    head: &RequestHead,
    host: &str,
) -> bool {
    let client = super::admit::client(from.peer, head, &shared.cfg.trusted_proxies);
    match lookup(table, from.ep, head, host, client) {
        Some(route) => table.services[route.service].has_server(),
        None => true,
    }
}

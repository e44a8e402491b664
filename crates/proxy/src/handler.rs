//! One request, start to end, as a fixed list of phases, each a file of this folder:
//!
//! 1. **admit** ([`admit`]): one `Host`, a target within limits, the path in normal form; and
//!    the client's address, computed once;
//! 2. **local answers** ([`local`]): what Tether answers itself (ACME HTTP-01 tokens, the stats
//!    page);
//! 3. **route** ([`route`]): the host, and the route the request takes on its entrypoint;
//! 4. **request middlewares** ([`rewrite`], running the route's [`crate::middleware::Chain`]):
//!    `redirect_https` first, then the route's middlewares in order, until one answers or all
//!    have worked out their edits ([`crate::edit::RequestEdits`]);
//! 5. **pick a server** ([`pick`]): the session's pin, then the service's algorithm;
//! 6. **send** ([`send`]): encoded once with the edits, sent, another server tried when one
//!    refuses the connection; a service with no server parks the request ([`wait`]);
//! 7. **response middlewares** ([`respond`]): the pin cookie, then the route's header edits,
//!    `hsts` last;
//! 8. **meter**: counted and logged when the response's body has gone out
//!    ([`crate::upstream::meter`]).
//!
//! An upgrade (WebSocket) leaves at phase 6 for [`upgrade`]. Every failure ends in a short,
//! specific status: 400 malformed, 404 no route, 502 no server reachable, 503 no server
//! available, 504 too slow.

mod admit;
mod local;
mod pick;
mod respond;
mod rewrite;
mod route;
mod send;
mod upgrade;
pub(crate) mod wait;

use std::borrow::Cow;
use std::time::Instant;

use http::{Request, StatusCode, Version};

use crate::answer::Answer;
use crate::headers::{Peer, ReadFields as _};
use crate::idle::Activity;
use crate::request::RequestHead;
use crate::stats;
use crate::upstream::body::ClientBody;
use crate::upstream::meter::{LogFields, Meter};
use crate::{ProxyConfig, TableStore};

use route::HostSource;

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    pub store: TableStore,
    pub cfg: ProxyConfig,
}

pub use crate::answer::error;
pub use wait::wake as wake_waiting;

/// Where a request came from, and who keeps its response timeout.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    ep: usize,
    peer: &'a Peer,
    watched: Option<&'a Activity>,
}

/// Handle one request that arrived on entrypoint `ep` from `peer`. `watched`: the connection's
/// activity when it carries one request at a time (Tether's own HTTP/1.1 server): its watchdog
/// keeps the response timeout instead of a timer of the request's own.
pub async fn handle(
    shared: &Shared,
    ep: usize,
    peer: &Peer,
    head: RequestHead,
    body: ClientBody,
    watched: Option<&Activity>,
) -> Answer {
    // Boxed: it rides in the response, which is moved several times on its way out; a pointer
    // moves for less than the meter would (measured in instructions per request).
    let mut meter = Box::new(Meter::new(
        Instant::now(),
        stats::method_index(head.method()),
    ));
    meter.bytes_in = match &body {
        ClientBody::Whole(b) => b.len() as u64,
        ClientBody::Streamed(b) => hyper::body::Body::size_hint(b).exact().unwrap_or(0),
        ClientBody::Piped(_) => 0,
    };
    if let Some(log) = &shared.cfg.access_log {
        meter.log = Some(Box::new(LogFields {
            log: log.clone(),
            client: peer.ip,
            method: head.method().clone(),
            target: head.target().to_string(),
            version: head.version(),
            host: String::new(),
            route: None,
            middleware: None,
        }));
    }
    // Not boxed: the caller boxes the request's future once (`front::conn`).
    let mut answer = pipeline(shared, ep, peer, head, body, watched, &mut meter).await;
    // Phase 8, meter: counted when the body has gone out (the meter rides in it).
    meter.status = answer.parts.status.as_u16();
    answer.body.meter = Some(meter);
    answer
}

/// Phases 1 to 7.
async fn pipeline(
    shared: &Shared,
    ep: usize,
    peer: &Peer,
    head: RequestHead,
    body: ClientBody,
    watched: Option<&Activity>,
    meter: &mut Meter,
) -> Answer {
    // Phase 1, admit.
    let head = match admit::admit(head, &shared.cfg) {
        Ok(head) => head,
        Err((status, why)) => return error(status, why).into(),
    };
    if let Some(l) = &mut meter.log {
        l.client = admit::client(peer, &head, &shared.cfg.trusted_proxies);
    }
    // Phase 2, local answers.
    if let Some(c) = &shared.cfg.acme {
        if let Some(answer) = local::acme_challenge(c, &head) {
            return answer;
        }
    }
    if let Some(m) = &shared.cfg.stats_page {
        if let Some(answer) = local::stats_page(m, ep, &head) {
            return answer;
        }
    }
    // Phase 3, route (and on to the server).
    let table = shared.store.load_full();
    let from = Arrival { ep, peer, watched };
    let source = HostSource::of(&head);
    let host = match source.as_ref().and_then(HostSource::host) {
        Some(host) => host,
        None => {
            let (version, authority) = match &head {
                RequestHead::Parts(p) => (p.version, p.uri.authority().is_some()),
                RequestHead::Received(r) => (r.version, false),
            };
            if !(version == Version::HTTP_10 && !authority && !head.has_field("host")) {
                return error(StatusCode::BAD_REQUEST, "missing or invalid Host header").into();
            }
            // HTTP/1.0 may name no host: only routes without a Host rule match it.
            Cow::Borrowed("")
        }
    };
    if let Some(l) = &mut meter.log {
        l.host = host.to_string();
    }
    // One await, its future built in place: each await of a future kept in a local, or of the
    // same future in two places, takes room of its own in this future's state.
    send::route_and_send(shared, &table, &from, head, body, &host, meter, true).await
}

/// [`handle`] for a request hyper parsed.
pub async fn handle_request(
    shared: &Shared,
    ep: usize,
    peer: &Peer,
    req: Request<ClientBody>,
) -> Answer {
    let (parts, body) = req.into_parts();
    handle(
        shared,
        ep,
        peer,
        RequestHead::Parts(Box::new(parts)),
        body,
        None,
    )
    .await
}

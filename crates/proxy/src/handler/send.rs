//! Phase 4 to 6 for one request: route it, run its middlewares' request phase
//! ([`super::rewrite`]), pick its server ([`super::pick`]), encode it once, and send it,
//! trying another server when one refuses the connection (at most [`MAX_ATTEMPTS`], within the
//! service's retry budget). A service with no server parks it ([`super::wait`]).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Uri, Version};
use tether_balance::PickInput;
use tether_model::file_config::{Cidr, Timeouts};
use tether_model::OnMissing;

use super::pick::{affinity_of, choose, hash_key, refusal, rehome, Choice, Refusal};
use super::route::lookup;
use super::upgrade::Upgrade;
use super::{respond, rewrite, wait, Arrival, Shared};
use crate::answer::{error, Answer};
use crate::edit::{FieldEdits, RequestEdits};
use crate::headers::{self, ForwardedHost, Forwarding, Peer};
use crate::request::RequestHead;
use crate::route::router::RouteEntry;
use crate::route::sticky;
use crate::route::sticky::{CookieEdit, RequestPin};
use crate::route::table::{RoutingTable, Service};
use crate::stats::Affinity;
use crate::upstream;
use crate::upstream::body::{ClientBody, ProxyBody};
use crate::upstream::exchange::Outgoing;
use crate::upstream::meter::Meter;
use crate::upstream::pool::Dial;
use crate::upstream::registry::Backend;
use crate::upstream::send::{Failure, UpstreamError};

/// Servers tried for one request before answering 502.
const MAX_ATTEMPTS: usize = 3;

/// A request routed, its server picked and its head encoded: all the sending loop keeps.
pub(super) struct Routed<'t> {
    svc: &'t Service,
    choice: Choice,
    key: Option<Vec<u8>>,
    /// Prefix mode: the application's own cookie value.
    app_value: Option<String>,
    out: Outgoing,
    /// The route's own body limit.
    max_body: Option<u64>,
    /// What affinity made of it.
    affinity: Affinity,
    /// The route's response edits (its middlewares', then `hsts`), and whether the request
    /// came over TLS.
    response: Option<(&'t FieldEdits, bool)>,
    /// The head as routed, kept so that a request no server could take, and of which nothing
    /// was sent, can wait for a server and be routed afresh ([`wait`]).
    head: RequestHead,
}

/// Where a request goes once routed.
pub(super) enum Next<'t> {
    Send(Routed<'t>),
    Upgrade(Upgrade<'t>, Box<http::request::Parts>, ClientBody),
    /// Boxed: a refusal is the rare case, and an answer is large.
    Answer(Box<Answer>),
    /// Its service has no server that takes it: wait for one ([`wait`]). Boxed: rare.
    Wait(Box<wait::Parked>),
}

/// Route the request, read its pin, pick its server and encode it. Not async: what it needs on
/// the way takes no room in the request's future. `may_wait`: a service without a server parks
/// the request ([`Next::Wait`]) instead of refusing it.
#[allow(clippy::too_many_arguments)]
pub(super) fn route<'t>(
    table: &'t RoutingTable,
    peer: &'t Peer,
    trusted: &[Cidr],
    ep: usize,
    head: RequestHead,
    body: ClientBody,
    host: &str,
    meter: &mut Meter,
    may_wait: bool,
) -> Next<'t> {
    // Computed here rather than kept in the request's future: it is needed only on the way.
    let client = super::admit::client(peer, &head, trusted);
    let Some(route) = lookup(table, ep, &head, host, client) else {
        return Next::Answer(Box::new(
            error(StatusCode::NOT_FOUND, crate::answer::NO_ROUTE).into(),
        ));
    };
    let svc = &table.services[route.service];
    meter.service = Some(svc.stats.clone());
    meter.route_slot = route.stats_slot;
    if let Some(l) = &mut meter.log {
        l.route = Some(route.name.clone());
    }
    // Phase 4, request middlewares.
    let mut edits = RequestEdits::default();
    if let Some(chain) = &route.chain {
        if let Some(answer) = rewrite::run(chain, &head, client, peer, host, &mut edits, meter) {
            return Next::Answer(answer);
        }
    }
    let (pin, cookie) = match &svc.sticky {
        Some(s) => sticky::read_request(&head, s),
        None => (RequestPin::NONE, CookieEdit::Keep),
    };
    // Phase 5, pick a server.
    let key = hash_key(svc, &head, client);
    let choice = match choose(svc, pin.pin, key.as_deref(), &[]) {
        Ok(c) => c,
        Err(Refusal::NoServer) if may_wait && !svc.has_server() => {
            return Next::Wait(Box::new(wait::Parked::new(svc, head, body)));
        }
        Err(r) => return Next::Answer(Box::new(refusal(svc, r).into())),
    };
    let affinity = affinity_of(svc, &pin, &choice);
    let app_value = pin.app_value;
    let (out, head) = match head {
        RequestHead::Received(r) => {
            let fwd_host = if r.host.is_some() {
                ForwardedHost::HostHeader
            } else {
                ForwardedHost::Name(host)
            };
            let forwarding = Forwarding::new(&*r, peer, fwd_host);
            let out = Outgoing::received(&r, &forwarding, &cookie, &edits, body);
            (out, RequestHead::Received(r))
        }
        RequestHead::Parts(mut parts) => {
            cookie.apply(&mut parts.headers);
            let upgrade =
                parts.version == Version::HTTP_11 && headers::wants_upgrade(&parts.headers);
            let forwarding = prepare(&mut parts, host, peer, upgrade, &edits);
            if upgrade {
                let up = Upgrade {
                    svc,
                    choice,
                    app_value,
                    forwarding,
                    response: response_edits(route, peer),
                };
                return Next::Upgrade(up, parts, body);
            }
            let out = Outgoing::new(&parts, &forwarding, body);
            (out, RequestHead::Parts(parts))
        }
    };
    Next::Send(Routed {
        svc,
        choice,
        key,
        app_value,
        out,
        max_body: route.max_body,
        affinity,
        response: response_edits(route, peer),
        head,
    })
}

/// The route's response edits for a request from `peer`.
fn response_edits<'t>(route: &'t RouteEntry, peer: &Peer) -> Option<(&'t FieldEdits, bool)> {
    let edits = route.chain.as_ref()?.response_edits()?;
    Some((edits, peer.https))
}

#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) async fn route_and_send(
    shared: &Shared,
    table: &Arc<RoutingTable>,
    from: &Arrival<'_>,
    head: RequestHead,
    body: ClientBody,
    host: &str,
    meter: &mut Meter,
    may_wait: bool,
) -> Answer {
    let Arrival { ep, peer, watched } = *from;
    let t = &shared.cfg.timeouts;
    let Routed {
        svc,
        mut choice,
        key,
        app_value,
        mut out,
        max_body,
        affinity,
        response,
        head,
    } = match route(
        table,
        peer,
        &shared.cfg.trusted_proxies,
        ep,
        head,
        body,
        host,
        meter,
        may_wait,
    ) {
        Next::Send(r) => r,
        Next::Answer(a) => return *a,
        // Boxed (and a trait object, since it routes again through this function): rare.
        Next::Wait(parked) => return wait::for_server(shared, from, *parked, host, meter).await,
        // Boxed: rare, and its future would otherwise take room in every request's.
        Next::Upgrade(up, parts, body) => {
            return Box::pin(up.forward(*parts, body, *t, shared.cfg.pipe)).await
        }
    };
    let app_value = app_value.as_deref();
    if let Some(max) = max_body.or(shared.cfg.limits.body) {
        if !out.limit_body(max) {
            let mut r = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is over its limit",
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r.into();
        }
    }
    out.pace(t);
    svc.retries.deposit();
    let mut tried = Vec::new();
    loop {
        let backend = svc.backends[choice.idx].clone();
        let in_flight = backend.state.start_request();
        let respond = match watched {
            Some(a) => upstream::send::Deadline::Watched(a, t.upstream_response),
            None => upstream::send::Deadline::Timer(t.upstream_response),
        };
        match upstream::send::send(&backend, &mut out, Dial::of(t), respond).await {
            Ok((head, conn)) => {
                backend.state.mark_ok();
                meter.affinity = if choice.fresh && affinity == Affinity::Pinned {
                    Affinity::Rebalanced // its server failed it: moved
                } else {
                    affinity
                };
                meter.server = Some(backend.clone());
                // Phase 7, response middlewares.
                return respond::answer(
                    svc,
                    backend,
                    choice,
                    app_value,
                    response,
                    meter.encode.take(),
                    head,
                    conn,
                    in_flight,
                );
            }
            Err(failure) => {
                match after_failure(
                    svc,
                    &backend,
                    choice,
                    &mut tried,
                    key.as_deref(),
                    failure,
                    t,
                ) {
                    Then::Retry(c) => choice = c,
                    // Its last server is gone (a task stopping in a rolling update) and nothing
                    // was sent: it waits for a server, as a request arriving now would.
                    Then::Exhausted(_) if may_wait && !svc.has_server() => {
                        let parked = wait::Parked::new(svc, head, out.take_body());
                        return wait::for_server(shared, from, parked, host, meter).await;
                    }
                    Then::Exhausted(answer) | Then::Answer(answer) => return *answer,
                }
            }
        }
    }
}

/// What the sending loop does once a server failed the request.
enum Then {
    /// Try this server.
    Retry(Choice),
    /// No other server may be tried: this answer, unless the service has no server left and the
    /// request may wait for one.
    Exhausted(Box<Answer>),
    /// This answer.
    Answer(Box<Answer>),
}

/// A server failed the request: take it out of rotation if it refused the connection, and
/// choose the next server to try, if any may be. Out of line and cold: the request's future
/// stays small enough to be inlined into its caller's.
#[cold]
#[inline(never)]
fn after_failure(
    svc: &Service,
    backend: &Arc<Backend>,
    choice: Choice,
    tried: &mut Vec<usize>,
    key: Option<&[u8]>,
    failure: Failure,
    t: &Timeouts,
) -> Then {
    let e = match failure {
        Failure {
            error: e,
            retryable: true,
        } => e,
        Failure { error: failed, .. } => {
            if let UpstreamError::Exchange(e) = &failed {
                if let Some(status) = e.client_status() {
                    // The client's fault: its connection cannot carry another request.
                    tracing::debug!(service = %svc.name, error = %e, "request body refused");
                    let mut r = error(status, &e.to_string());
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return Then::Answer(Box::new(r.into()));
                }
            }
            tracing::warn!(service = %svc.name, server = %backend.name, error = %failed, "upstream failed");
            return Then::Answer(Box::new(upstream_error(svc, &failed).into()));
        }
    };
    // Nothing was sent (or it is a bodiless idempotent request that may go again): trying
    // another server is safe.
    tracing::warn!(service = %svc.name, server = %backend.name, error = %e, "server unreachable");
    if matches!(
        e,
        UpstreamError::Connect(_) | UpstreamError::Exchange(upstream::exchange::WireError::Dead)
    ) {
        // Out of rotation for every worker at once, the connects to it still pending give up
        // and its idle connections are not used again: a dead server costs one connect timeout
        // (or one wait for TCP to find a connection dead), not one per request.
        backend.state.mark_failed();
        backend.pool.failed();
        upstream::revive::watch(backend, Dial::of(t));
        if svc.health.is_some() {
            // Out until its active checks pass again.
            backend.state.set_healthy(false);
        }
    }
    tried.push(choice.idx);
    backend.stats.count_retry();
    let on_missing = svc.sticky.as_ref().map(|s| s.policy.on_missing);
    if !choice.fresh && on_missing == Some(OnMissing::Fail) {
        return Then::Answer(Box::new(refusal(svc, Refusal::PinnedGone).into()));
    }
    // A connect given up because another one to the same server just failed costs the budget
    // nothing: the server is known dead, and nothing was tried on it.
    let gave_up = matches!(
        e,
        UpstreamError::Connect(crate::upstream::pool::ConnectError::GaveUp(_))
    );
    let next = if tried.len() >= MAX_ATTEMPTS.min(svc.backends.len()) {
        None
    } else if !gave_up && !svc.retries.withdraw() {
        tracing::debug!(service = %svc.name, "retry budget spent: not trying another server");
        None
    } else if !choice.fresh && svc.sticky.is_some() {
        rehome(svc, choice.idx, tried)
    } else {
        svc.balancer
            .pick(PickInput {
                hash_key: key,
                exclude: tried,
            })
            .map(|idx| Choice {
                idx,
                fresh: svc.sticky.is_some(),
            })
    };
    match next {
        Some(c) => Then::Retry(c),
        None => Then::Exhausted(Box::new(upstream_error(svc, &e).into())),
    }
}

/// The request as the server must see it: origin-form HTTP/1.1, no hop-by-hop headers; and the
/// true forwarding headers it is to carry.
fn prepare<'p>(
    parts: &mut http::request::Parts,
    host: &str,
    peer: &'p Peer,
    upgrade: bool,
    edits: &RequestEdits<'_>,
) -> Forwarding<'p> {
    if let Some(authority) = parts.uri.authority().cloned() {
        // h2 or absolute-form: the authority becomes the Host header of an origin-form request.
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = Uri::try_from(pq).unwrap_or_else(|_| Uri::from_static("/"));
    }
    parts.version = Version::HTTP_11;
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); the length is re-derived from the
    // body when the request is written, so a stale Content-Length must never go out with it.
    if headers::has(&parts.headers, &header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let fwd_host = if headers::has(&parts.headers, &header::HOST) && !edits.replaces_host() {
        ForwardedHost::HostHeader
    } else {
        ForwardedHost::Name(host)
    };
    let forwarding = Forwarding::new(&parts.headers, peer, fwd_host);
    if !peer.trusted {
        // A forwarding field no other hop writes: a client's own is never believed.
        parts.headers.remove(headers::X_FORWARDED_PREFIX);
    }
    if !edits.is_empty() {
        if let Some(t) = edits.target(parts.uri.path_and_query().map_or("/", |p| p.as_str())) {
            if let Ok(uri) = Uri::try_from(t) {
                parts.uri = uri;
            }
        }
        edits.apply(&mut parts.headers);
    }
    forwarding
}

pub(super) fn upstream_error(svc: &Service, e: &UpstreamError) -> Response<ProxyBody> {
    match e {
        UpstreamError::Timeout(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("service {} did not answer in time", svc.name),
        ),
        _ => error(
            StatusCode::BAD_GATEWAY,
            &format!("no server of service {} could be reached", svc.name),
        ),
    }
}

//! One request, start to end: route, pin or balance, rewrite, send (retrying a refused connect on
//! another server), and pin the response. Every failure ends in a short, specific status:
//! 400 malformed, 404 no route, 502 no server reachable, 503 no server available, 504 too slow.
//! What a request must be to be routed at all is checked first ([`door`]).

mod door;
mod wait;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use tether_balance::{hash, PickInput, Pin};
use tether_model::rule::RequestView;
use tether_model::{HashOn, OnMissing};

use crate::answer::Answer;
use crate::headers::{ForwardedHost, Forwarding, Peer, ReadFields};
use crate::idle::Activity;
use crate::request::RequestHead;
use crate::route::sticky;
use crate::route::sticky::{CookieEdit, RequestPin};
use crate::route::table::{RoutingTable, Service};
use crate::stats::{self, Affinity};
use crate::upstream::body::{ClientBody, ProxyBody};
use crate::upstream::exchange::{BodyReader, Head, Outgoing, WireError};
use crate::upstream::meter::{LogFields, Meter};
use crate::upstream::pool::Dial;
use crate::upstream::send::{Failure, UpstreamError};
use crate::upstream::{self, upgrade};
use crate::{headers, ProxyConfig, TableStore};

/// Servers tried for one request before answering 502.
const MAX_ATTEMPTS: usize = 3;

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    pub store: TableStore,
    pub cfg: ProxyConfig,
}

pub use crate::answer::error;
pub use wait::wake as wake_waiting;

/// Where the request names its host: the URI's authority (HTTP/2, absolute-form) or the `Host`
/// header. A cheap handle (a reference count), so the host can be borrowed from it while the
/// request's headers are rewritten.
enum HostSource {
    Authority(http::uri::Authority),
    Header(HeaderValue),
    Received(bytes::Bytes),
}

impl HostSource {
    fn of(head: &RequestHead) -> Option<HostSource> {
        match head {
            RequestHead::Parts(parts) => match parts.uri.authority() {
                Some(a) => Some(HostSource::Authority(a.clone())),
                None => headers::first(&parts.headers, &header::HOST)
                    .cloned()
                    .map(HostSource::Header),
            },
            RequestHead::Received(r) => r.host_bytes().map(HostSource::Received),
        }
    }

    /// The host, lower case and without port; `None` if malformed.
    fn host(&self) -> Option<Cow<'_, str>> {
        match self {
            HostSource::Authority(a) => crate::route::host::parse(a.as_str().as_bytes()),
            HostSource::Header(v) => crate::route::host::parse(v.as_bytes()),
            HostSource::Received(b) => crate::route::host::parse(b),
        }
    }
}

/// The pick a request ended up with.
#[derive(Debug, Clone, Copy)]
struct Choice {
    idx: usize,
    /// Not validly pinned to `idx` before: the response must (re)pin.
    fresh: bool,
}

enum Refusal {
    PinnedGone,
    NoServer,
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
        }));
    }
    // Not boxed: the caller boxes the request's future once (`front::conn`).
    let mut answer = admit_and_send(shared, ep, peer, head, body, watched, &mut meter).await;
    meter.status = answer.parts.status.as_u16();
    answer.body.meter = Some(meter);
    answer
}

/// [`handle`] less the counting.
async fn admit_and_send(
    shared: &Shared,
    ep: usize,
    peer: &Peer,
    head: RequestHead,
    body: ClientBody,
    watched: Option<&Activity>,
    meter: &mut Meter,
) -> Answer {
    let head = match door::admit(head, &shared.cfg) {
        Ok(head) => head,
        Err((status, why)) => return error(status, why).into(),
    };
    if let Some(m) = &shared.cfg.stats_page {
        if let Some(answer) = stats_page(m, ep, &head) {
            return answer;
        }
    }
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
    route_and_send(shared, &table, &from, head, body, &host, meter, true).await
}

/// The stats page, when `head` asks for it on an entrypoint it is mounted on.
fn stats_page(m: &stats::StatsMount, ep: usize, head: &RequestHead) -> Option<Answer> {
    if head.path() != m.path || !(m.entrypoints.is_empty() || m.entrypoints.contains(&ep)) {
        return None;
    }
    if !matches!(*head.method(), http::Method::GET | http::Method::HEAD) {
        return Some(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "the stats page is read-only",
            )
            .into(),
        );
    }
    let query = head.target().split_once('?').map(|(_, q)| q);
    let auth = head.values("authorization").next();
    Some(m.page.answer(query, auth).map(ProxyBody::full).into())
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

/// Where a request came from, and who keeps its response timeout.
#[derive(Clone, Copy)]
struct Arrival<'a> {
    ep: usize,
    peer: &'a Peer,
    watched: Option<&'a Activity>,
}

/// A request routed, its server picked and its head encoded: all the sending loop keeps.
struct Routed<'t> {
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
    /// The route's `Strict-Transport-Security`, when the request came over TLS.
    hsts: Option<&'t HeaderValue>,
    /// The head as routed, kept so that a request no server could take, and of which nothing
    /// was sent, can wait for a server and be routed afresh ([`wait`]).
    head: RequestHead,
}

/// Where a request goes once routed.
enum Next<'t> {
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
fn route<'t>(
    table: &'t RoutingTable,
    peer: &'t Peer,
    ep: usize,
    head: RequestHead,
    body: ClientBody,
    host: &str,
    meter: &mut Meter,
    may_wait: bool,
) -> Next<'t> {
    let Some(route) = lookup(table, ep, &head, host) else {
        return Next::Answer(Box::new(
            error(StatusCode::NOT_FOUND, "no route matches this request").into(),
        ));
    };
    let svc = &table.services[route.service];
    meter.service = Some(svc.stats.clone());
    meter.route_slot = route.stats_slot;
    if let Some(l) = &mut meter.log {
        l.route = Some(route.name.clone());
    }
    if let (Some(to), false) = (&route.redirect_https, peer.https) {
        return Next::Answer(Box::new(https_redirect(host, to, head.target())));
    }
    let (pin, cookie) = match &svc.sticky {
        Some(s) => sticky::read_request(&head, s),
        None => (RequestPin::NONE, CookieEdit::Keep),
    };
    let key = hash_key(svc, &head, peer.ip);
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
            let out = Outgoing::received(&r, &forwarding, &cookie, body);
            (out, RequestHead::Received(r))
        }
        RequestHead::Parts(mut parts) => {
            cookie.apply(&mut parts.headers);
            let upgrade =
                parts.version == Version::HTTP_11 && headers::wants_upgrade(&parts.headers);
            let forwarding = prepare(&mut parts, host, peer, upgrade);
            if upgrade {
                let up = Upgrade {
                    svc,
                    choice,
                    app_value,
                    forwarding,
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
        hsts: route.hsts.as_ref().filter(|_| peer.https),
        head,
    })
}

/// The route `head` takes on entrypoint `ep`.
fn lookup<'t>(
    table: &'t RoutingTable,
    ep: usize,
    head: &RequestHead,
    host: &str,
) -> Option<&'t crate::route::router::RouteEntry> {
    table.routers.get(ep).and_then(|r| {
        r.find(&RequestView {
            host,
            path: head.path(),
            method: head.method(),
            headers: head,
        })
    })
}

/// `redirect_https`: 308 or 307 (both keep the method and body, RFC 9110 §15.4.8-9) to the
/// request's URL with the `https` scheme, the route's port and the same path and query.
fn https_redirect(host: &str, to: &crate::route::router::Redirect, target: &str) -> Answer {
    let port = &to.port;
    if host.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "this route redirects to https, which needs the request's Host",
        )
        .into();
    }
    let bracket = host.contains(':') && !host.starts_with('[');
    let url = if bracket {
        format!("https://[{host}]{port}{target}")
    } else {
        format!("https://{host}{port}{target}")
    };
    let Ok(location) = HeaderValue::from_str(&url) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the request's URL cannot be redirected",
        )
        .into();
    };
    let reason = to.status.canonical_reason().unwrap_or("");
    let mut r = Response::new(ProxyBody::full(format!(
        "{} {reason}: {url}\n",
        to.status.as_u16()
    )));
    *r.status_mut() = to.status;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.into()
}

/// What affinity made of a request: its pin as read, and the server chosen.
fn affinity_of(svc: &Service, pin: &RequestPin, choice: &Choice) -> Affinity {
    if svc.sticky.is_none() {
        return Affinity::None;
    }
    match pin.pin {
        Pin::Server(i) if i == choice.idx && !choice.fresh => Affinity::Pinned,
        Pin::Server(_) | Pin::Stale(_) => Affinity::Rebalanced,
        Pin::None if pin.presented => Affinity::Forged,
        Pin::None => Affinity::New,
    }
}

#[allow(clippy::too_many_arguments)]
async fn route_and_send(
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
        hsts,
        head,
    } = match route(table, peer, ep, head, body, host, meter, may_wait) {
        Next::Send(r) => r,
        Next::Answer(a) => return *a,
        // Boxed (and a trait object, since it routes again through this function): rare.
        Next::Wait(parked) => return wait::for_server(shared, from, *parked, host, meter).await,
        // Boxed: rare, and its future would otherwise take room in every request's.
        Next::Upgrade(up, parts, body) => return Box::pin(up.forward(*parts, body, *t)).await,
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
                let Head {
                    parts: mut rp,
                    fields,
                    framing,
                    keep_alive,
                } = head;
                let mut server = Some(fields);
                let mut pin = None;
                if let Some(s) = &svc.sticky {
                    let has_cache_control = server.as_ref().is_some_and(|f| f.has_cache_control);
                    if sticky::edits_server_fields(s, choice.fresh, has_cache_control) {
                        // The server's own fields are edited: they go into the header map.
                        if let Some(f) = server.take() {
                            match f.to_map() {
                                Ok(map) => rp.headers = map,
                                Err(e) => {
                                    tracing::warn!(service = %svc.name, server = %backend.name, error = %e, "upstream failed");
                                    return upstream_error(svc, &WireError::from(e).into()).into();
                                }
                            }
                        }
                        sticky::write_response(
                            &mut rp.headers,
                            s,
                            choice.idx,
                            choice.fresh,
                            app_value,
                        );
                    } else {
                        pin = sticky::pin_fields(s, choice.idx, choice.fresh);
                    }
                }
                if let Some(v) = hsts {
                    // After the server's own fields (above) may have become the map.
                    rp.headers
                        .insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
                }
                let body = match BodyReader::new(conn, framing, keep_alive) {
                    Ok(reader) => ProxyBody::upstream(reader, backend, in_flight),
                    Err(conn) => {
                        if keep_alive {
                            backend.pool.release(conn);
                        }
                        ProxyBody::finished(in_flight, backend)
                    }
                };
                return Answer {
                    parts: rp,
                    server,
                    pin,
                    body,
                };
            }
            Err(Failure {
                error: e,
                retryable: true,
            }) => {
                // Nothing was sent (or it is a bodiless idempotent request that may go again):
                // trying another server is safe.
                tracing::warn!(service = %svc.name, server = %backend.name, error = %e, "server unreachable");
                if matches!(e, UpstreamError::Connect(_)) {
                    // Out of rotation for every worker at once, and the connects to it still
                    // pending give up: a dead server costs one connect timeout.
                    backend.state.mark_failed();
                    backend.pool.failed();
                    upstream::revive::watch(&backend, Dial::of(t));
                    if svc.health.is_some() {
                        // Out until its active checks pass again.
                        backend.state.set_healthy(false);
                    }
                }
                tried.push(choice.idx);
                backend
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let on_missing = svc.sticky.as_ref().map(|s| s.policy.on_missing);
                if !choice.fresh && on_missing == Some(OnMissing::Fail) {
                    return refusal(svc, Refusal::PinnedGone).into();
                }
                // A connect given up because another one to the same server just failed costs
                // the budget nothing: the server is known dead, and nothing was tried on it.
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
                    rehome(svc, choice.idx, &tried)
                } else {
                    svc.balancer
                        .pick(PickInput {
                            hash_key: key.as_deref(),
                            exclude: &tried,
                        })
                        .map(|idx| Choice {
                            idx,
                            fresh: svc.sticky.is_some(),
                        })
                };
                match next {
                    Some(c) => choice = c,
                    // Its last server is gone (a task stopping in a rolling update) and nothing
                    // was sent: it waits for a server, as a request arriving now would.
                    None if may_wait && !svc.has_server() => {
                        let parked = wait::Parked::new(svc, head, out.take_body());
                        return wait::for_server(shared, from, parked, host, meter).await;
                    }
                    None => return upstream_error(svc, &e).into(),
                }
            }
            Err(Failure { error: failed, .. }) => {
                if let UpstreamError::Exchange(e) = &failed {
                    if let Some(status) = e.client_status() {
                        // The client's fault: its connection cannot carry another request.
                        tracing::debug!(service = %svc.name, error = %e, "request body refused");
                        let mut r = error(status, &e.to_string());
                        r.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return r.into();
                    }
                }
                tracing::warn!(service = %svc.name, server = %backend.name, error = %failed, "upstream failed");
                return upstream_error(svc, &failed).into();
            }
        }
    }
}

/// An upgrade request (a WebSocket handshake), on its way to the server picked for it.
struct Upgrade<'a> {
    svc: &'a Service,
    choice: Choice,
    app_value: Option<String>,
    forwarding: Forwarding<'a>,
}

impl Upgrade<'_> {
    async fn forward(
        self,
        mut parts: http::request::Parts,
        body: ClientBody,
        t: tether_model::file_config::Timeouts,
    ) -> Answer {
        let Upgrade {
            svc,
            choice,
            app_value,
            forwarding,
        } = self;
        let ClientBody::Streamed(body) = body else {
            // Tether's own HTTP/1.1 server hands every upgrade request to hyper.
            return error(
                StatusCode::BAD_REQUEST,
                "upgrade not possible on this connection",
            )
            .into();
        };
        let backend = svc.backends[choice.idx].clone();
        forwarding.apply(&mut parts.headers);
        let req = Request::from_parts(parts, body);
        let resp = match upgrade::forward(backend, req, Dial::of(&t), t.upstream_response).await {
            Ok(mut resp) => {
                if let Some(s) = &svc.sticky {
                    sticky::write_response(
                        resp.headers_mut(),
                        s,
                        choice.idx,
                        choice.fresh,
                        app_value.as_deref(),
                    );
                }
                resp
            }
            Err(e) => upstream_error(svc, &e),
        };
        resp.into()
    }
}

/// The request as the server must see it: origin-form HTTP/1.1, no hop-by-hop headers; and the
/// true forwarding headers it is to carry.
fn prepare<'p>(
    parts: &mut http::request::Parts,
    host: &str,
    peer: &'p Peer,
    upgrade: bool,
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
    let fwd_host = if headers::has(&parts.headers, &header::HOST) {
        ForwardedHost::HostHeader
    } else {
        ForwardedHost::Name(host)
    };
    Forwarding::new(&parts.headers, peer, fwd_host)
}

fn hash_key(svc: &Service, h: &RequestHead, ip: std::net::IpAddr) -> Option<Vec<u8>> {
    match svc.hash_on.as_ref()? {
        HashOn::ClientIp => Some(match ip {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        }),
        HashOn::Header(name) => h.first_value(name).map(<[u8]>::to_vec),
        HashOn::Cookie(name) => sticky::cookie(h, name).map(<[u8]>::to_vec),
    }
}

fn choose(
    svc: &Service,
    pin: Pin,
    key: Option<&[u8]>,
    exclude: &[usize],
) -> Result<Choice, Refusal> {
    let sticky = svc.sticky.as_ref();
    let policy = sticky.map(|s| s.policy.on_missing);
    match pin {
        Pin::Server(i) if svc.backends[i].state.takes_pinned() => {
            svc.backends[i].state.count_pinned();
            return Ok(Choice {
                idx: i,
                fresh: false,
            });
        }
        Pin::Server(i) => {
            if policy == Some(OnMissing::Fail) {
                return Err(Refusal::PinnedGone);
            }
            return rehome(svc, i, exclude).ok_or(Refusal::NoServer);
        }
        Pin::Stale(id) => {
            if policy == Some(OnMissing::Fail) {
                return Err(Refusal::PinnedGone);
            }
            let s = sticky.expect("a pin implies affinity");
            if let Some(idx) = s.index.rehome(id, |i| takes_new(svc, i, exclude)) {
                return Ok(Choice { idx, fresh: true });
            }
        }
        Pin::None => {}
    }
    svc.balancer
        .pick(PickInput {
            hash_key: key,
            exclude,
        })
        .map(|idx| Choice {
            idx,
            fresh: sticky.is_some(),
        })
        .ok_or(Refusal::NoServer)
}

/// May server `i` take a session it does not hold yet (and was not tried already)?
fn takes_new(svc: &Service, i: usize, exclude: &[usize]) -> bool {
    !exclude.contains(&i)
        && svc.balancer.servers()[i].weight > 0
        && svc.backends[i].state.takes_new(true)
}

/// Move a session off server `from`, the same way on every replica.
fn rehome(svc: &Service, from: usize, exclude: &[usize]) -> Option<Choice> {
    let s = svc.sticky.as_ref()?;
    let id = hash::hash64(s.index.value(from).as_bytes());
    s.index
        .rehome(id, |i| i != from && takes_new(svc, i, exclude))
        .or_else(|| {
            svc.balancer.pick(PickInput {
                hash_key: None,
                exclude: &[from],
            })
        })
        .filter(|i| !exclude.contains(i))
        .map(|idx| Choice { idx, fresh: true })
}

fn refusal(svc: &Service, r: Refusal) -> Response<ProxyBody> {
    match r {
        Refusal::PinnedGone => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the server holding this session of service {} is unavailable",
                svc.name
            ),
        ),
        Refusal::NoServer => wait::no_server(&svc.name),
    }
}

fn upstream_error(svc: &Service, e: &UpstreamError) -> Response<ProxyBody> {
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

//! The stats page: `GET /` on the admin listener (and, read-only, on a traffic entrypoint under
//! `[stats] path`), and the same figures as JSON at `GET /api/stats`.
//!
//! Per service and server: state, weight, source, requests per second, 4xx and 5xx per second,
//! p50 and p99 latency, requests in flight, bytes, retries, pinned requests, new pins,
//! rebalances and forged cookies; above them the applied version, its sources and the inputs
//! rejected lately with the field at fault. A [`Sampler`] reads the counters once a second, so
//! rates and quantiles are those of the last seconds, and the page renders complete without
//! JavaScript; with it, the table is fetched again every second (`?fragment=1`) and a filter box
//! narrows the rows as one types (`?filter=` does the same without JavaScript). Every asset is in
//! the binary.

mod html;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tether_control::Control;
use tether_proxy::stats::Snapshot;

use crate::AppState;

/// How often the counters are read.
pub const TICK: Duration = Duration::from_secs(1);
/// Quantiles are over this many ticks.
const WINDOW: usize = 10;

/// One server's counters at one tick.
#[derive(Debug, Clone, Default)]
struct Counts {
    requests: u64,
    by_class: [u64; 5],
    latency: Snapshot,
}

/// What the sampler reads: a server of a service, or a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Server(String, String),
    Route(String),
}

/// The last [`WINDOW`] readings of every server's counters.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    ticks: Mutex<VecDeque<(Instant, HashMap<Key, Counts>)>>,
}

impl Sampler {
    /// A sampler reading `control`'s table every [`TICK`] until it is dropped.
    pub(crate) fn start(control: Arc<Control>) -> Arc<Sampler> {
        let s = Arc::new(Sampler::default());
        s.read(&control);
        let weak: Weak<Sampler> = Arc::downgrade(&s);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(s) = weak.upgrade() else { return };
                    s.read(&control);
                }
            });
        }
        s
    }

    fn read(&self, control: &Control) {
        let table = control.store().load_full();
        let mut now = HashMap::new();
        for s in &table.services {
            for b in &s.backends {
                let by_class: [u64; 5] = b.stats.by_class();
                now.insert(
                    Key::Server(s.name.clone(), b.name.to_string()),
                    Counts {
                        requests: by_class.iter().sum(),
                        by_class,
                        latency: b.stats.latency(),
                    },
                );
            }
        }
        for r in table.routers.first().map_or(&[][..], |r| r.routes()) {
            let (by_class, _) = table.services[r.service].stats.routes.of(&r.name);
            now.insert(
                Key::Route(r.name.clone()),
                Counts {
                    requests: by_class.iter().sum(),
                    by_class,
                    latency: Snapshot::default(),
                },
            );
        }
        let mut ticks = self.ticks.lock().expect("sampler poisoned");
        if ticks.len() > WINDOW {
            ticks.pop_front();
        }
        ticks.push_back((Instant::now(), now));
    }

    /// Rates over the last tick and quantiles over the window, for one server.
    fn rates(&self, key: &Key) -> Rates {
        let ticks = self.ticks.lock().expect("sampler poisoned");
        let (Some(last), Some(first)) = (ticks.back(), ticks.front()) else {
            return Rates::default();
        };
        let prev = ticks.len().checked_sub(2).and_then(|i| ticks.get(i));
        let mut r = Rates::default();
        if let (Some(prev), Some(now)) = (prev, last.1.get(key)) {
            let dt = last.0.duration_since(prev.0).as_secs_f64().max(0.001);
            let before = prev.1.get(key).cloned().unwrap_or_default();
            r.rps = (now.requests.saturating_sub(before.requests)) as f64 / dt;
            r.r4xx = now.by_class[3].saturating_sub(before.by_class[3]) as f64 / dt;
            r.r5xx = now.by_class[4].saturating_sub(before.by_class[4]) as f64 / dt;
        }
        if let Some(now) = last.1.get(key) {
            let base = first
                .1
                .get(key)
                .map(|c| c.latency.clone())
                .unwrap_or_default();
            let window = now.latency.since(&base);
            let lat = if window.count() > 0 {
                window
            } else {
                now.latency.clone()
            };
            r.p50_ms = lat.quantile_us(0.5).map(|u| u / 1000.0);
            r.p99_ms = lat.quantile_us(0.99).map(|u| u / 1000.0);
        }
        r
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    rps: f64,
    r4xx: f64,
    r5xx: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// One server's row.
#[derive(Debug, Clone)]
pub(crate) struct ServerRow {
    pub name: String,
    pub address: String,
    pub state: &'static str,
    pub weight: Option<u32>,
    pub in_flight: u32,
    pub requests: u64,
    pub rps: f64,
    pub r4xx: f64,
    pub r5xx: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retries: u64,
    pub pinned: u64,
    pub new_pins: u64,
    pub rebalanced: u64,
    /// A TCP service's server: connects to it that failed (`requests` counts its connections).
    pub connect_errors: Option<u64>,
}

/// One route's row: its declaration and its traffic (by status class).
#[derive(Debug, Clone)]
pub(crate) struct RouteRow {
    pub name: String,
    pub rule: String,
    pub service: String,
    pub source: String,
    pub requests: u64,
    pub rps: f64,
    pub r4xx: f64,
    pub r5xx: f64,
    /// Counted together with the service's other routes beyond its first eight.
    pub shared: bool,
    /// Its middlewares in order (`redirect_https` first, `hsts` last, a chain's members by their
    /// own names), each with the requests it answered itself, by status.
    pub middlewares: Vec<(String, Vec<(String, u64)>)>,
}

/// What each route's middlewares answered: (route, middleware, by status: `"401"`, `"other"`,
/// and `compress`'s `"bytes saved"`).
type Answered = Vec<(String, String, Vec<(String, u64)>)>;

/// Route `r`'s middlewares as its row shows them.
fn middlewares_of(
    r: &tether_model::RouteDecl,
    answered: &Answered,
) -> Vec<(String, Vec<(String, u64)>)> {
    let mut names: Vec<String> = Vec::new();
    if r.redirect_https.is_some() {
        names.push("redirect_https".into());
    }
    names.extend(r.middlewares.iter().cloned());
    // A chain's members answer under their own names.
    for (route, m, _) in answered {
        if *route == r.name && !names.contains(m) {
            names.push(m.clone());
        }
    }
    if r.hsts.is_some() {
        names.push("hsts".into());
    }
    names
        .into_iter()
        .map(|n| {
            let counts = answered
                .iter()
                .find(|(route, m, _)| *route == r.name && *m == n)
                .map(|(_, _, c)| c.clone())
                .unwrap_or_default();
            (n, counts)
        })
        .collect()
}

/// One service's rows.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRow {
    pub name: String,
    pub source: String,
    pub affinity: Option<String>,
    pub rps: f64,
    pub sticky: [u64; 4],
    pub servers: Vec<ServerRow>,
    /// No server takes new requests: its requests wait for one, then get 503.
    pub no_server: bool,
    /// Requests waiting for a server now, and those that waited (and got none in time).
    pub waiting: u32,
    pub waited: u64,
    pub wait_expired: u64,
    /// A TCP service: connections open now, piped in all, and connects that failed.
    pub tcp: Option<[u64; 3]>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub version: String,
    pub applied_at: Option<SystemTime>,
    pub sources: Vec<(String, String, Option<String>)>,
    pub rejections: Vec<(SystemTime, String, Option<String>, String)>,
    pub routes: Vec<RouteRow>,
    pub services: Vec<ServiceRow>,
    /// The certificates ACME keeps, when resolvers are declared.
    pub acme: Vec<tether_acme::CertState>,
}

/// `?filter=` (a part of a service, server or address) and `?fragment=1` (the live part only).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct View {
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub fragment: Option<String>,
}

/// Gather the page from the control plane and the sampler.
pub(crate) fn gather(control: &Control, sampler: &Sampler, filter: &str) -> Page {
    let table = control.store().load_full();
    let status = control.status();
    let decls = control.declarations();
    let answered: Answered = control
        .registry()
        .middleware_answers
        .read()
        .into_iter()
        .map(|(r, m, c)| {
            let mut by: Vec<(String, u64)> = c
                .read()
                .into_iter()
                .map(|(code, n)| {
                    let code = if code == 0 {
                        "other".to_string()
                    } else {
                        code.to_string()
                    };
                    (code, n)
                })
                .collect();
            let saved = c.bytes_saved();
            if saved > 0 {
                by.push(("bytes saved".to_string(), saved));
            }
            (r, m, by)
        })
        .collect();
    let mut owner: HashMap<&str, (&str, HashMap<&str, u32>)> = HashMap::new();
    let mut routes = Vec::new();
    for (provider, u) in &decls {
        for s in &u.services {
            let weights = s
                .servers
                .iter()
                .map(|v| (v.name.as_str(), v.weight))
                .collect();
            owner.insert(s.name.as_str(), (provider.as_str(), weights));
        }
        for r in &u.routes {
            let (by_class, shared) = table
                .services
                .iter()
                .find(|s| s.name == r.service)
                .map_or(([0; 5], false), |s| s.stats.routes.of(&r.name));
            let rates = sampler.rates(&Key::Route(r.name.clone()));
            routes.push(RouteRow {
                name: r.name.clone(),
                rule: r.rule_text.clone(),
                service: r.service.clone(),
                source: provider.clone(),
                requests: by_class.iter().sum(),
                rps: rates.rps,
                r4xx: rates.r4xx,
                r5xx: rates.r5xx,
                shared,
                middlewares: middlewares_of(r, &answered),
            });
        }
    }
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let f = filter.trim().to_lowercase();
    let mut services = Vec::new();
    for s in &table.services {
        let (source, weights) = owner
            .get(s.name.as_str())
            .map(|(p, w)| (p.to_string(), Some(w)))
            .unwrap_or_else(|| ("-".into(), None));
        let service_matches = f.is_empty() || s.name.to_lowercase().contains(&f);
        let mut servers = Vec::new();
        for b in &s.backends {
            let key = Key::Server(s.name.clone(), b.name.to_string());
            let matches = service_matches
                || b.name.to_lowercase().contains(&f)
                || b.addr.to_string().contains(&f);
            if !matches {
                continue;
            }
            let r = sampler.rates(&key);
            let st = &b.stats;
            servers.push(ServerRow {
                name: b.name.to_string(),
                address: b.addr.to_string(),
                state: b.state.describe(),
                weight: weights.and_then(|w| w.get(&*b.name).copied()),
                in_flight: b.state.in_flight(),
                requests: if s.protocol.is_tcp() {
                    st.traffic.connections()
                } else {
                    st.requests()
                },
                rps: r.rps,
                r4xx: r.r4xx,
                r5xx: r.r5xx,
                p50_ms: r.p50_ms,
                p99_ms: r.p99_ms,
                bytes_in: st.traffic.bytes_in(),
                bytes_out: st.traffic.bytes_out(),
                retries: st.retries(),
                pinned: b.state.pinned(),
                new_pins: st.new_pins(),
                rebalanced: st.rebalanced(),
                connect_errors: s.protocol.is_tcp().then(|| st.traffic.connect_errors()),
            });
        }
        if servers.is_empty() && !service_matches {
            continue;
        }
        let st = &s.stats;
        services.push(ServiceRow {
            name: s.name.clone(),
            source,
            affinity: s.sticky.as_ref().map(|k| match &k.policy.mode {
                tether_model::AffinityMode::Cookie(a) => format!("cookie {}", a.name),
                tether_model::AffinityMode::Prefix { cookie } => format!("prefix {cookie}"),
            }),
            rps: servers.iter().map(|v| v.rps).sum(),
            sticky: {
                let k = st.sticky();
                [k.hits, k.misses, k.rebalanced, k.forged]
            },
            servers,
            no_server: !s.has_server(),
            waiting: st.waiting.load(Relaxed),
            waited: st.waited(),
            wait_expired: st.wait_expired(),
            tcp: s.protocol.is_tcp().then(|| {
                [
                    u64::from(st.active.load(Relaxed)),
                    st.traffic.connections(),
                    st.traffic.connect_errors(),
                ]
            }),
        });
    }
    Page {
        acme: control
            .acme()
            .map(tether_acme::Acme::certificates)
            .unwrap_or_default(),
        version: status.version.clone(),
        applied_at: status.applied_at,
        sources: control
            .sources()
            .into_iter()
            .map(|(n, s)| (n, s.version, s.problem))
            .collect(),
        rejections: control
            .rejections()
            .into_iter()
            .rev()
            .take(10)
            .map(|r| (r.at, r.source, r.field, r.message))
            .collect(),
        routes,
        services,
    }
}

/// `GET /`: the page (or its live part, for the page's own refresh).
pub async fn page(State(s): State<AppState>, Query(v): Query<View>) -> Response {
    let p = gather(&s.control, &s.sampler, &v.filter);
    if v.fragment.is_some() {
        return Html(html::live(&p)).into_response();
    }
    Html(html::page(&p, &v.filter)).into_response()
}

/// The page on a traffic entrypoint: read-only, behind basic auth with the admin token as
/// password (a browser asks for it; any user name).
#[derive(Debug)]
pub struct Mounted {
    control: Arc<Control>,
    sampler: Arc<Sampler>,
    token: String,
}

impl Mounted {
    pub fn new(control: Arc<Control>, token: String) -> Mounted {
        Mounted {
            sampler: Sampler::start(control.clone()),
            control,
            token,
        }
    }
}

impl tether_proxy::stats::StatsPage for Mounted {
    fn answer(
        &self,
        query: Option<&str>,
        authorization: Option<&[u8]>,
    ) -> http::Response<bytes::Bytes> {
        use http::{header, HeaderValue, StatusCode};
        if !crate::auth::presents(authorization, &self.token) {
            let mut r = http::Response::new(bytes::Bytes::from_static(
                b"401 Unauthorized: the stats page needs the admin token as the password\n",
            ));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tether stats\", charset=\"UTF-8\""),
            );
            return r;
        }
        let mut filter = String::new();
        let mut fragment = false;
        for pair in query.unwrap_or_default().split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "filter" => filter = decode(v),
                "fragment" => fragment = true,
                _ => {}
            }
        }
        let p = gather(&self.control, &self.sampler, &filter);
        let body = if fragment {
            html::live(&p)
        } else {
            html::page(&p, &filter)
        };
        let mut r = http::Response::new(bytes::Bytes::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A query value, `+` and `%XX` decoded.
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /api/stats`: the page's figures as JSON.
pub async fn json(State(s): State<AppState>, Query(v): Query<View>) -> Json<Value> {
    let p = gather(&s.control, &s.sampler, &v.filter);
    Json(to_json(&p))
}

fn to_json(p: &Page) -> Value {
    let services: Vec<Value> = p
        .services
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "source": s.source,
                "affinity": s.affinity,
                "requests_per_second": s.rps,
                "sticky": { "hits": s.sticky[0], "new": s.sticky[1], "rebalanced": s.sticky[2], "forged": s.sticky[3] },
                "no_server": s.no_server,
                "waiting": s.waiting,
                "waited": s.waited,
                "wait_expired": s.wait_expired,
                "tcp": s.tcp.map(|[active, connections, errors]| json!({
                    "active": active, "connections": connections, "connect_errors": errors,
                })),
                "servers": s.servers.iter().map(|v| json!({
                    "name": v.name, "address": v.address, "state": v.state, "weight": v.weight,
                    "in_flight": v.in_flight, "requests": v.requests,
                    "requests_per_second": v.rps, "4xx_per_second": v.r4xx, "5xx_per_second": v.r5xx,
                    "p50_ms": v.p50_ms, "p99_ms": v.p99_ms,
                    "bytes_in": v.bytes_in, "bytes_out": v.bytes_out, "retries": v.retries,
                    "pinned_requests": v.pinned, "new_pins": v.new_pins, "rebalanced": v.rebalanced,
                    "connect_errors": v.connect_errors,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "version": p.version,
        "applied_at": crate::render::time(p.applied_at),
        "sources": p.sources.iter().map(|(n, v, pr)| json!({"name": n, "version": v, "problem": pr})).collect::<Vec<_>>(),
        "rejected": p.rejections.iter().map(|(at, src, field, m)| json!({
            "at": crate::render::time(Some(*at)), "source": src, "field": field, "message": m,
        })).collect::<Vec<_>>(),
        "routes": p.routes.iter().map(|r| json!({"name": r.name, "rule": r.rule, "service": r.service, "source": r.source, "requests": r.requests, "requests_per_second": r.rps, "4xx_per_second": r.r4xx, "5xx_per_second": r.r5xx, "shared": r.shared, "middlewares": r.middlewares.iter().map(|(n, c)| json!({"name": n, "answered": c.iter().map(|(code, k)| (code.clone(), json!(k))).collect::<serde_json::Map<_, _>>()})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "services": services,
    })
}

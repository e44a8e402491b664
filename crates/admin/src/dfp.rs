//! Docker Flow Proxy's HTTP API (`--dfp-compat`), served on the admin listener:
//! `GET /v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080` and
//! `GET /v1/docker-flow-proxy/remove?serviceName=go-demo`, and `PUT
//! /v1/docker-flow-proxy/cert?certName=NAME` (the PEM text as the body), a certificate kept in
//! the store like the admin API's.
//!
//! A reconfigure becomes the same change the API takes: a service `serviceName` whose server is
//! `http://serviceName:port` (a Swarm service's DNS name on a shared network, or any resolvable
//! name or address) and a route `serviceName` on `PathPrefix` of each path (and `Host` of each
//! domain), as the `com.df.*` labels are read. With `reqMode=tcp` or `reqMode=sni` it is a TCP
//! service `serviceName` (server `serviceName:port`) and a TCP router on Tether's entrypoint of
//! `srcPort` ([`tether_model::labels::flow::tcp`]); a reconfigure in one mode removes what an
//! earlier one in the other declared under the name. It is stored once and every replica applies
//! it from the store, so `distribute=true` needs no fan-out. They take the admin token like every
//! change; `--dfp-compat-allow CIDR` admits a source network for these two endpoints only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tether_model::file_config::Cidr;
use tether_model::labels::flow::tcp::Mode as TcpMode;
use tether_model::labels::flow::{self, dfsl};
use tether_model::labels::Context;
use tether_providers::api::{Kind, Op};

use crate::auth::Need;
use crate::changes::{self, Part};
use crate::{ApiError, AppState};

/// Docker Flow Proxy compatibility settings.
#[derive(Debug, Clone, Default)]
pub struct DfpConfig {
    /// Source networks admitted without the token, for these endpoints only.
    pub allow: Vec<Cidr>,
    /// Tether's entrypoints, those that terminate TLS, those of `protocol = "tcp"`, and the
    /// port each listens on: a `srcPort` finds its entrypoint by them.
    pub entrypoints: Vec<String>,
    pub tls_entrypoints: Vec<String>,
    pub tcp_entrypoints: Vec<String>,
    pub entrypoint_ports: Vec<(String, u16)>,
}

impl DfpConfig {
    /// What the label readers know of Tether, for the same lookups.
    fn context(&self) -> Context<'_> {
        Context {
            entrypoints: &self.entrypoints,
            tls_entrypoints: &self.tls_entrypoints,
            tcp_entrypoints: &self.tcp_entrypoints,
            entrypoint_ports: &self.entrypoint_ports,
            ..Context::default()
        }
    }
}

use tether_model::labels::flow::middlewares as dfp_middlewares;

/// Is `p` a parameter reconfigure reads, or one of Docker Flow Swarm Listener's that it ignores
/// on purpose?
fn known(p: &str) -> bool {
    tether_model::labels::flow::reads_http(p)
}

/// What a reconfigure declares, as the API's documents, and DFP's echo of it.
struct Reconfigure {
    name: String,
    /// Middlewares, then the service, then the route; or the TCP service, then its router.
    objects: Vec<(Kind, String, Value)>,
    echo: Value,
}

#[cfg(test)]
impl Reconfigure {
    fn get(&self, kind: Kind) -> Option<&Value> {
        self.objects.iter().find(|o| o.0 == kind).map(|o| &o.2)
    }

    fn is_tcp(&self) -> bool {
        self.get(Kind::TcpRouter).is_some()
    }
}

/// DFP's answer shape: `{"Status": "OK" | "NOK", "Message": ...}` plus the service's fields.
fn status(code: StatusCode, message: &str, extra: Value) -> Response {
    let mut body = json!({
        "Status": if code.is_success() { "OK" } else { "NOK" },
        "Message": message,
    });
    if let (Some(b), Value::Object(m)) = (body.as_object_mut(), extra) {
        b.extend(m);
    }
    (code, Json(body)).into_response()
}

fn refused(e: ApiError) -> Response {
    let mut message = e.message.clone();
    if let Some(f) = &e.field {
        if !message.starts_with(f.as_str()) {
            message = format!("{f}: {message}");
        }
    }
    let mut resp = status(e.status, &message, json!({}));
    if e.status == StatusCode::UNAUTHORIZED {
        resp = (e.status, resp).into_response();
    }
    resp
}

fn allowed(s: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
    admitted(s, peer, headers, Need::Change)
}

/// `--dfp-compat-allow`'s networks, or the token as `need` asks it.
fn admitted(
    s: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    need: Need,
) -> Result<(), ApiError> {
    let cfg = s.dfp.as_ref().expect("routes exist only with --dfp-compat");
    if cfg.allow.iter().any(|c| c.contains(peer.ip())) {
        return Ok(());
    }
    s.auth.check(headers, need)
}

fn list(v: Option<&String>) -> Vec<String> {
    v.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(vec![(Some(param.to_string()), message.to_string())])
}

/// `serviceName` and `port`, which every mode needs, and `distribute`.
fn name_and_port(q: &BTreeMap<String, String>) -> Result<(String, u16), ApiError> {
    let name = q
        .get("serviceName")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("serviceName", "missing"))?
        .clone();
    let port = q.get("port").ok_or_else(|| bad("port", "missing"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("port", format!("{port:?}: not a port number")))?;
    if let Some(d) = q.get("distribute") {
        if !matches!(d.as_str(), "true" | "false") {
            return Err(bad("distribute", format!("{d:?}: expected true or false")));
        }
    }
    Ok((name, port))
}

/// `srcPort`, when given.
fn src_port(q: &BTreeMap<String, String>) -> Result<Option<u16>, ApiError> {
    q.get("srcPort")
        .map(|p| flow::parse_src_port(p).map_err(|m| bad("srcPort", m)))
        .transpose()
}

/// What a reconfigure declares, in the mode `reqMode` names.
fn translate(
    q: &BTreeMap<String, String>,
    cx: &Context<'_>,
    index: u32,
) -> Result<Reconfigure, ApiError> {
    match q.get("reqMode") {
        None => translate_http(q, cx, index),
        Some(m) if m.eq_ignore_ascii_case("http") => translate_http(q, cx, index),
        Some(m) => match TcpMode::of(m) {
            Some(mode) => translate_tcp(q, cx, mode, index),
            None => Err(bad("reqMode", format!("{m:?}: expected http, tcp or sni"))),
        },
    }
}

/// Every destination of a reconfigure (`port.1`, `servicePath.1`, ...: DFP's indexed forms),
/// each translated in its mode; an error names the option as written (`port.1`).
fn translate_all(
    q: &BTreeMap<String, String>,
    cx: &Context<'_>,
) -> Result<Vec<Reconfigure>, ApiError> {
    let dests = flow::destinations(q).map_err(|(k, m)| bad(&k, m))?;
    let mut out = Vec::new();
    for (index, options) in dests {
        out.push(translate(&options, cx, index).map_err(|mut e| {
            if let Some(f) = e.field.take() {
                e.field = Some(flow::indexed_field(&f, index));
            }
            for (f, _) in e.errors.iter_mut() {
                if let Some(x) = f.take() {
                    *f = Some(flow::indexed_field(&x, index));
                }
            }
            e
        })?);
    }
    Ok(out)
}

/// `reqMode=tcp` or `sni`: a TCP service and its router on the entrypoint of `srcPort`.
fn translate_tcp(
    q: &BTreeMap<String, String>,
    cx: &Context<'_>,
    mode: TcpMode,
    index: u32,
) -> Result<Reconfigure, ApiError> {
    if let Some(k) = q.keys().find(|k| !mode.reads(k)) {
        return Err(bad(k, mode.refusal()));
    }
    let (host, port) = name_and_port(q)?;
    // The service's DNS name reaches it; destination N's objects are `<name>-N`.
    let name = flow::destination_name(&host, index);
    let paths = list(q.get("servicePath"));
    let rule = mode
        .rule(q.get("pathType").map(String::as_str), &paths)
        .map_err(|(p, m)| bad(p, m))?;
    let src = src_port(q)?.ok_or_else(|| bad("srcPort", mode.src_port_missing()))?;
    let entrypoint = mode.entrypoint(cx, src).map_err(|m| bad("srcPort", m))?;
    let service = json!({ "servers": [{ "name": name, "address": format!("{host}:{port}") }] });
    let mut router = json!({ "rule": rule, "service": name, "entrypoints": [entrypoint] });
    if mode == TcpMode::Sni {
        router["tls"] = json!({ "passthrough": true });
    }
    let echo = json!({
        "ServiceName": name,
        "ServicePath": paths,
        "Port": port.to_string(),
        "SrcPort": src,
        "ReqMode": q.get("reqMode"),
        "Distribute": q.get("distribute").is_some_and(|d| d == "true"),
    });
    Ok(Reconfigure {
        objects: vec![
            (Kind::TcpService, name.clone(), service),
            (Kind::TcpRouter, name.clone(), router),
        ],
        name,
        echo,
    })
}

/// HTTP: the service, its route and the middlewares of the request options.
fn translate_http(
    q: &BTreeMap<String, String>,
    cx: &Context<'_>,
    index: u32,
) -> Result<Reconfigure, ApiError> {
    if let Some(unknown) = q.keys().find(|k| !known(k)) {
        return Err(bad(unknown, flow::not_read(unknown)));
    }
    let (host, port) = name_and_port(q)?;
    // The service's DNS name reaches it; destination N's objects are `<name>-N`.
    let name = flow::destination_name(&host, index);
    let paths = list(q.get("servicePath"));
    let domains = list(q.get("serviceDomain"));
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(bad("servicePath", format!("{p:?}: a path starts with /")));
    }
    let get = |p: &str| q.get(p).cloned();
    let routing = tether_model::labels::flow::routing(&get).map_err(|es| {
        ApiError::invalid(
            es.into_iter()
                .map(|(p, m)| (Some(p.to_string()), m))
                .collect(),
        )
    })?;
    if paths.is_empty() && domains.is_empty() && !routing.default_backend {
        return Err(bad(
            "servicePath",
            "missing: give servicePath, serviceDomain or both",
        ));
    }
    let mut service =
        json!({ "servers": [{ "name": name, "url": format!("http://{host}:{port}") }] });
    match q.get("sessionType").map(String::as_str) {
        None => {}
        // One server per task, each found in Swarm's DNS and pinned by Tether's own cookie.
        Some("sticky-server") => {
            service = json!({
                "resolve": format!("tasks.{host}:{port}"),
                "affinity": { "mode": "cookie" },
            });
        }
        Some(other) => {
            return Err(bad(
                "sessionType",
                format!("{other:?}: expected sticky-server"),
            ))
        }
    }
    let any_of = |m: &str, items: &[String]| {
        let parts: Vec<String> = items.iter().map(|i| format!("{m}(`{i}`)")).collect();
        if parts.len() > 1 {
            format!("({})", parts.join(" || "))
        } else {
            parts.join("")
        }
    };
    let get = |p: &str| q.get(p).cloned();
    let translated = dfp_middlewares::translate(&get, &domains).map_err(|es| {
        ApiError::invalid(
            es.into_iter()
                .map(|(p, m)| (Some(p.to_string()), m))
                .collect(),
        )
    })?;
    let mut hosts = domains.clone();
    hosts.extend(translated.redirect_from.iter().cloned());
    let mut rule = Vec::new();
    if routing.default_backend {
        // Every request no other route takes, whatever its paths and domains.
        rule.push("PathPrefix(`/`)".to_string());
    } else {
        if !hosts.is_empty() {
            rule.push(any_of("Host", &hosts));
        }
        if !paths.is_empty() {
            rule.push(any_of("PathPrefix", &paths));
        }
    }
    rule.extend(routing.parts.iter().cloned());
    let mut route = json!({ "rule": rule.join(" && "), "service": name });
    match q.get("httpsOnly").map(String::as_str) {
        None | Some("false") => {}
        // Plain HTTP answered with the https:// URL (DFP's `redirect scheme https`).
        Some("true") => route["redirect_https"] = json!(true),
        Some(other) => {
            return Err(bad(
                "httpsOnly",
                format!("{other:?}: expected true or false"),
            ))
        }
    }
    if let Some(p) = src_port(q)? {
        let entrypoint = cx.http_entrypoint_on(p).map_err(|m| bad("srcPort", m))?;
        route["entrypoints"] = json!([entrypoint]);
    }
    if routing.default_backend {
        route["priority"] = json!(1);
    }
    if routing.tls_skip_verify {
        if service.get("resolve").is_some() {
            return Err(bad(
                "sslVerifyNone",
                "TLS to the servers of a sessionType=sticky-server service (its tasks found in DNS) is not offered",
            ));
        }
        service["servers"] = json!([{ "name": name, "url": format!("https://{host}:{port}") }]);
        service["tls"] = json!({ "insecure_skip_verify": true });
    }
    let mut objects: Vec<(Kind, String, Value)> = translated
        .tables
        .into_iter()
        .map(|t| {
            let body = serde_json::to_value(&t.table).unwrap_or_default();
            (Kind::Middleware, format!("{name}-{}", t.suffix), body)
        })
        .collect();
    if !objects.is_empty() {
        route["middlewares"] = json!(objects.iter().map(|m| &m.1).collect::<Vec<_>>());
    }
    let echo = json!({
        "ServiceName": name,
        "ServicePath": paths,
        "ServiceDomain": domains,
        "Port": port.to_string(),
        "Distribute": q.get("distribute").is_some_and(|d| d == "true"),
    });
    objects.push((Kind::Service, name.clone(), service));
    objects.push((Kind::Route, name.clone(), route));
    Ok(Reconfigure {
        name,
        objects,
        echo,
    })
}

/// Deletes of what the store holds of `kinds` under `name` (an earlier reconfigure's).
fn held(s: &AppState, name: &str, kinds: &[Kind]) -> Vec<Part> {
    let applied = s.api.as_ref().and_then(|a| a.applied());
    kinds
        .iter()
        .filter(|&&k| {
            applied
                .as_ref()
                .is_some_and(|a| a.snapshot.get(k, name).is_some())
        })
        .map(|&kind| Part {
            op: Op::Delete {
                kind,
                name: name.to_string(),
            },
            precondition: None,
        })
        .collect()
}

/// The API middlewares an earlier reconfigure of `name` made that `keep` does not hold.
fn stale_middlewares(s: &AppState, name: &str, keep: &[String]) -> Vec<Part> {
    let applied = s.api.as_ref().and_then(|a| a.applied());
    dfp_middlewares::SUFFIXES
        .iter()
        .map(|suffix| format!("{name}-{suffix}"))
        .filter(|m| !keep.contains(m))
        .filter(|m| {
            applied
                .as_ref()
                .is_some_and(|a| a.snapshot.get(Kind::Middleware, m).is_some())
        })
        .map(|m| Part {
            op: Op::Delete {
                kind: Kind::Middleware,
                name: m,
            },
            precondition: None,
        })
        .collect()
}

/// `GET /v1/docker-flow-proxy/reconfigure`
pub async fn reconfigure(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = allowed(&s, peer, &headers) {
        return refused(e);
    }
    if dfsl::is_node_notification(q.keys().map(String::as_str)) {
        return node_notification(&q);
    }
    let cfg = s.dfp.as_ref().expect("routes exist only with --dfp-compat");
    let all = match translate_all(&q, &cfg.context()) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let name = all[0].name.clone();
    let mut echo = all[0].echo.clone();
    echo["Destinations"] = json!(all.len());
    let puts: Vec<(Kind, String, Value)> = all.into_iter().flat_map(|t| t.objects).collect();
    // What an earlier reconfigure of the service declared and this one does not (another mode,
    // a destination or an option dropped) goes.
    let keep: Vec<String> = puts
        .iter()
        .filter(|o| o.0 == Kind::Middleware)
        .map(|o| o.1.clone())
        .collect();
    let mut parts = Vec::new();
    for n in service_names(&s, &q) {
        for kind in [
            Kind::Route,
            Kind::Service,
            Kind::TcpRouter,
            Kind::TcpService,
        ] {
            if !puts.iter().any(|(k, m, _)| *k == kind && *m == n) {
                parts.extend(held(&s, &n, &[kind]));
            }
        }
        parts.extend(stale_middlewares(&s, &n, &keep));
    }
    parts.extend(puts.into_iter().map(|(kind, name, body)| Part {
        op: Op::Put { kind, name, body },
        precondition: None,
    }));
    match changes::apply(&s, parts).await {
        Ok(done) => {
            echo["Revision"] = json!(done.revision);
            echo["Version"] = json!(done.version);
            tracing::info!(service = %name, revision = done.revision, "dfp: reconfigured");
            status(StatusCode::OK, "", echo)
        }
        Err(e) => refused(e),
    }
}

/// The names a service's objects have: its own, and those of its destinations
/// (`go-demo-1`, ...) that the store holds as this service's: a destination's servers are
/// reached at the service's own name, so another service that happens to be called
/// `go-demo-1` is never taken for one.
fn service_names(s: &AppState, q: &BTreeMap<String, String>) -> Vec<String> {
    let Some(base) = q.get("serviceName").filter(|n| !n.is_empty()) else {
        return Vec::new();
    };
    let applied = s.api.as_ref().and_then(|a| a.applied());
    let reached_at_base = |n: &str| {
        let Some(a) = &applied else { return false };
        [Kind::Service, Kind::TcpService].iter().any(|&k| {
            a.snapshot.get(k, n).is_some_and(|o| {
                let b = &o.body;
                let at = b["servers"][0]["url"]
                    .as_str()
                    .and_then(|u| u.split_once("://"))
                    .map(|(_, rest)| rest)
                    .or_else(|| b["servers"][0]["address"].as_str())
                    .or_else(|| b["resolve"].as_str().and_then(|r| r.strip_prefix("tasks.")))
                    .unwrap_or_default();
                at.rsplit_once(':').is_some_and(|(h, _)| h == base)
            })
        })
    };
    (0..=flow::MAX_DESTINATION)
        .map(|i| flow::destination_name(base, i))
        .enumerate()
        .filter(|(i, n)| *i == 0 || reached_at_base(n))
        .map(|(_, n)| n)
        .collect()
}

/// DFSL's node notification (a node joined, changed or left): Tether routes services, not
/// nodes, so it is acknowledged and changes nothing.
fn node_notification(q: &BTreeMap<String, String>) -> Response {
    let node = q.get("hostname").or_else(|| q.get("id")).cloned();
    tracing::debug!(node = ?node, "dfp: a node notification; nothing to route");
    status(
        StatusCode::OK,
        "a node notification: Tether routes services, not nodes; nothing changed",
        json!({ "Node": node }),
    )
}

/// `GET /v1/docker-flow-proxy/remove?serviceName=NAME`
pub async fn remove(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = allowed(&s, peer, &headers) {
        return refused(e);
    }
    if dfsl::is_node_notification(q.keys().map(String::as_str)) {
        return node_notification(&q);
    }
    if let Some(unknown) = q.keys().find(|k| {
        !["serviceName", "distribute"].contains(&k.as_str()) && dfsl::ignored(k).is_none()
    }) {
        return refused(bad(
            unknown,
            "unknown parameter; Tether reads serviceName, distribute",
        ));
    }
    let Some(name) = q.get("serviceName").filter(|n| !n.is_empty()).cloned() else {
        return refused(bad("serviceName", "missing"));
    };
    let mut parts = Vec::new();
    for n in service_names(&s, &q) {
        parts.extend(held(
            &s,
            &n,
            &[
                Kind::Route,
                Kind::Service,
                Kind::TcpRouter,
                Kind::TcpService,
            ],
        ));
    }
    if !parts.is_empty() {
        // Its middlewares go with it.
        for n in service_names(&s, &q) {
            parts.extend(stale_middlewares(&s, &n, &[]));
        }
    }
    if parts.is_empty() {
        return status(
            StatusCode::NOT_FOUND,
            &format!("no service {name:?} was reconfigured through the API"),
            json!({ "ServiceName": name }),
        );
    }
    match changes::apply(&s, parts).await {
        Ok(done) => status(
            StatusCode::OK,
            "",
            json!({ "ServiceName": name, "Revision": done.revision, "Version": done.version }),
        ),
        Err(e) => refused(e),
    }
}

/// `GET /v1/docker-flow-proxy/ping`: DFP's liveness check (DFSL and health checks call it).
pub async fn ping(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match admitted(&s, peer, &headers, Need::Read) {
        Ok(()) => status(StatusCode::OK, "", json!({})),
        Err(e) => refused(e),
    }
}

/// `GET /v1/docker-flow-proxy/reload[?recreate=true&fromListener=true]`: nothing to do, since
/// every change is applied whole as it comes (from the store on every replica); answered OK so
/// that DFP's tooling keeps working.
pub async fn reload(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = admitted(&s, peer, &headers, Need::Read) {
        return refused(e);
    }
    for (k, v) in &q {
        if !matches!(k.as_str(), "recreate" | "fromListener") {
            return refused(bad(
                k,
                "unknown parameter; Tether reads recreate, fromListener",
            ));
        }
        if !matches!(v.as_str(), "true" | "false") {
            return refused(bad(k, format!("{v:?}: expected true or false")));
        }
    }
    status(
        StatusCode::OK,
        "nothing to reload: Tether applies every change as it comes, on every replica",
        json!({}),
    )
}

/// `GET /v1/docker-flow-proxy/config[?type=json|toml]`: the configuration served, every source's
/// routes, services, middlewares, TCP routers and TCP services, in `tether.toml`'s shape (as
/// `GET /api/...` shows them: never a password hash, a private key or a token).
pub async fn config(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(e) = admitted(&s, peer, &headers, Need::Read) {
        return refused(e);
    }
    if let Some(k) = q.keys().find(|k| k.as_str() != "type") {
        return refused(bad(k, "unknown parameter; Tether reads type"));
    }
    let kinds = [
        Kind::Route,
        Kind::Service,
        Kind::Middleware,
        Kind::TcpRouter,
        Kind::TcpService,
    ];
    match q.get("type").map(String::as_str) {
        None | Some("json") => {
            let mut out = serde_json::Map::new();
            for kind in kinds {
                let all: Vec<Value> = crate::reads::objects(&s, kind)
                    .into_iter()
                    .map(|o| o.1)
                    .collect();
                out.insert(kind.table().replace('.', "_"), Value::Array(all));
            }
            Json(Value::Object(out)).into_response()
        }
        Some("toml") => {
            let mut text = String::from(
                "# The configuration Tether serves, every source's, in tether.toml's shape.\n# A view: basic_auth lists user names only (no hash is shown).\n",
            );
            for kind in kinds {
                for (name, body) in crate::reads::objects(&s, kind) {
                    text.push_str(&toml_table(kind, &name, &body));
                }
            }
            (
                [(
                    http::header::CONTENT_TYPE,
                    "application/toml; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Some(other) => refused(bad("type", format!("{other:?}: expected json or toml"))),
    }
}

/// One object as a `tether.toml` table, its source as a comment.
fn toml_table(kind: Kind, name: &str, body: &Value) -> String {
    let mut fields = body.clone();
    let source = fields["source"].as_str().unwrap_or_default().to_string();
    if let Some(o) = fields.as_object_mut() {
        for k in ["name", "source", "etag"] {
            o.remove(k);
        }
    }
    let mut table = toml::Table::new();
    if let Some(toml::Value::Table(t)) = to_toml(&fields) {
        table = t;
    }
    let mut out = format!("\n# from {source}\n[{}.{}]\n", kind.table(), toml_key(name));
    // Plain values first: a table's keys end at the next header.
    let (nested, plain): (Vec<_>, Vec<_>) = table
        .into_iter()
        .partition(|(_, v)| matches!(v, toml::Value::Table(_)));
    for (k, v) in plain.into_iter().chain(nested) {
        out.push_str(&format!("{} = {v}\n", toml_key(&k)));
    }
    out
}

/// A key as TOML writes it: bare when it may be, quoted otherwise (`"db@docker"`).
fn toml_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// A JSON value as TOML, without its nulls (TOML has none).
fn to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().filter_map(to_toml).collect()),
        Value::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_toml(v)?)))
                .collect(),
        ),
    })
}

/// `PUT /v1/docker-flow-proxy/cert?certName=NAME` with the PEM text (chain and key) as the
/// body, as DFP's `cert` endpoint takes it: stored as the API's certificate NAME (every replica
/// serves it from the store, so `distribute=true` needs no fan-out).
pub async fn cert(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = allowed(&s, peer, &headers) {
        return refused(e);
    }
    if let Some(unknown) = q
        .keys()
        .find(|k| !["certName", "distribute"].contains(&k.as_str()))
    {
        return refused(bad(
            unknown,
            "unknown parameter; Tether reads certName, distribute",
        ));
    }
    let Some(name) = q.get("certName").filter(|n| !n.is_empty()).cloned() else {
        return refused(bad("certName", "missing"));
    };
    let Ok(pem) = std::str::from_utf8(&body) else {
        return refused(bad("body", "not PEM text (UTF-8)"));
    };
    let part = Part {
        op: Op::Put {
            kind: Kind::Certificate,
            name: name.clone(),
            body: json!({ "cert": pem }),
        },
        precondition: None,
    };
    match changes::apply(&s, vec![part]).await {
        Ok(done) => {
            tracing::info!(certificate = %name, revision = done.revision, "dfp: certificate stored");
            status(
                StatusCode::OK,
                "",
                json!({ "CertName": name, "Revision": done.revision }),
            )
        }
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// web (80), websecure (443, TLS), pg (6379, TCP), as the label tests have them.
    fn cfg() -> DfpConfig {
        DfpConfig {
            allow: Vec::new(),
            entrypoints: vec!["pg".into(), "web".into(), "websecure".into()],
            tls_entrypoints: vec!["websecure".into()],
            tcp_entrypoints: vec!["pg".into()],
            entrypoint_ports: vec![
                ("pg".into(), 6379),
                ("web".into(), 80),
                ("websecure".into(), 443),
            ],
        }
    }

    fn translate(q: &BTreeMap<String, String>) -> Result<Reconfigure, ApiError> {
        let mut all = translate_all(q, &cfg().context())?;
        assert_eq!(all.len(), 1, "one destination");
        Ok(all.remove(0))
    }

    /// An HTTP reconfigure's service name, service, route, middlewares and echo.
    type Http = (String, Value, Value, Vec<(String, Value)>, Value);

    fn http(q: &BTreeMap<String, String>) -> Result<Http, ApiError> {
        let t = translate(q)?;
        let mws = t
            .objects
            .iter()
            .filter(|o| o.0 == Kind::Middleware)
            .map(|o| (o.1.clone(), o.2.clone()))
            .collect();
        Ok((
            t.name.clone(),
            t.get(Kind::Service).cloned().unwrap(),
            t.get(Kind::Route).cloned().unwrap(),
            mws,
            t.echo,
        ))
    }

    #[test]
    fn https_only_redirects_plain_http() {
        let base = [
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("port", "8080"),
        ];
        let (_, _, route, _, _) =
            http(&q(&[base.as_slice(), &[("httpsOnly", "true")]].concat())).unwrap();
        assert_eq!(route["redirect_https"], json!(true));
        let (_, _, route, _, _) = http(&q(&base)).unwrap();
        assert!(route.get("redirect_https").is_none());
        let e = translate(&q(
            &[base.as_slice(), &[("httpsOnly", "yes please")]].concat()
        ))
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("httpsOnly"));
    }

    #[test]
    fn the_seeds_call_becomes_a_service_and_a_route() {
        let (name, svc, route, _, _) = http(&q(&[
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("port", "8080"),
            ("distribute", "true"),
        ]))
        .unwrap();
        assert_eq!(name, "go-demo");
        assert_eq!(svc["servers"][0]["url"], "http://go-demo:8080");
        assert_eq!(route["rule"], "PathPrefix(`/demo`)");
        let (_, _, route, _, _) = http(&q(&[
            ("serviceName", "a"),
            ("servicePath", "/x,/y"),
            ("serviceDomain", "a.com"),
            ("port", "80"),
        ]))
        .unwrap();
        assert_eq!(
            route["rule"],
            "Host(`a.com`) && (PathPrefix(`/x`) || PathPrefix(`/y`))"
        );
        let (_, svc, _, _, _) = http(&q(&[
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("port", "8080"),
            ("sessionType", "sticky-server"),
        ]))
        .unwrap();
        assert_eq!(svc["resolve"], "tasks.go-demo:8080");
        assert_eq!(svc["affinity"]["mode"], "cookie");
    }

    #[test]
    fn request_options_become_middlewares_with_no_plain_password_kept() {
        let (_, _, route, mws, _) = http(&q(&[
            ("serviceName", "shop"),
            ("servicePath", "/shop"),
            ("serviceDomain", "shop.com"),
            ("port", "8080"),
            ("users", "admin:hunter2,ops:s3cret"),
            ("reqPathSearchReplace", "/shop/(.*),/\\1"),
            ("setReqHeader", "X-Env prod"),
            ("delResHeader", "Server"),
            ("redirectFromDomain", "old-shop.com"),
            ("deniedMethods", "DELETE"),
        ]))
        .unwrap();
        let names: Vec<&str> = mws.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "shop-redirect-from-domain",
                "shop-methods",
                "shop-auth",
                "shop-path-1",
                "shop-headers"
            ]
        );
        assert_eq!(route["middlewares"], json!(names));
        assert_eq!(
            route["rule"],
            "(Host(`shop.com`) || Host(`old-shop.com`)) && PathPrefix(`/shop`)"
        );
        let auth = mws[2].1.to_string();
        assert!(
            !auth.contains("hunter2") && !auth.contains("s3cret"),
            "{auth}"
        );
        assert!(auth.contains("admin:$6$"), "hashed when read: {auth}");
        assert_eq!(mws[3].1["replace_path_regex"]["replacement"], "/${1}");
        assert_eq!(mws[4].1["headers"]["request"]["set"]["X-Env"], "prod");
        let e = translate(&q(&[
            ("serviceName", "a"),
            ("port", "1"),
            ("servicePath", "/"),
            ("addReqHeader", "X-Port %[dst_port]"),
        ]))
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("addReqHeader"));
    }

    #[test]
    fn tcp_and_sni_modes_become_a_tcp_service_and_its_router_on_src_ports_entrypoint() {
        let t = translate(&q(&[
            ("serviceName", "redis"),
            ("reqMode", "tcp"),
            ("srcPort", "6379"),
            ("port", "6379"),
            ("distribute", "true"),
        ]))
        .ok()
        .unwrap();
        assert!(t.is_tcp() && t.get(Kind::Route).is_none());
        assert_eq!(
            t.get(Kind::TcpService).unwrap()["servers"][0]["address"],
            "redis:6379"
        );
        let r = t.get(Kind::TcpRouter).unwrap();
        assert_eq!(r["rule"], "HostSNI(`*`)");
        assert_eq!(r["entrypoints"], json!(["pg"]));
        assert!(r.get("tls").is_none());
        // DFP's SNI tutorial, as its listener sends it.
        let t = translate(&q(&[
            ("serviceName", "api"),
            ("reqMode", "sni"),
            ("pathType", "req_ssl_sni -i -m reg"),
            ("servicePath", "^(api\\.)"),
            ("srcPort", "443"),
            ("port", "443"),
            ("notify", "true"),
        ]))
        .ok()
        .unwrap();
        let r = t.get(Kind::TcpRouter).unwrap();
        assert_eq!(r["rule"], "HostSNIRegexp(`^(api\\.)`)");
        assert_eq!(r["entrypoints"], json!(["websecure"]));
        assert_eq!(r["tls"]["passthrough"], true);
        let field = |extra: &[(&'static str, &'static str)]| {
            let mut p = vec![("serviceName", "x"), ("port", "1")];
            p.extend_from_slice(extra);
            translate(&q(&p)).err().unwrap().field.unwrap()
        };
        assert_eq!(field(&[("reqMode", "tcp")]), "srcPort");
        assert_eq!(field(&[("reqMode", "tcp"), ("srcPort", "5432")]), "srcPort");
        assert_eq!(
            field(&[("reqMode", "tcp"), ("srcPort", "6379"), ("users", "a:b")]),
            "users"
        );
        assert_eq!(
            field(&[("reqMode", "sni"), ("srcPort", "443"), ("servicePath", "a")]),
            "pathType"
        );
        assert_eq!(field(&[("reqMode", "udp")]), "reqMode");
        // srcPort in HTTP mode: the HTTP entrypoint of that port.
        let (_, _, route, _, _) = http(&q(&[
            ("serviceName", "a"),
            ("servicePath", "/"),
            ("port", "8080"),
            ("srcPort", "443"),
        ]))
        .ok()
        .unwrap();
        assert_eq!(route["entrypoints"], json!(["websecure"]));
        assert_eq!(
            field(&[("servicePath", "/"), ("srcPort", "6379")]),
            "srcPort",
            "a TCP entrypoint serves no HTTP"
        );
    }

    #[test]
    fn the_toml_view_is_tether_toml_that_reads_back() {
        let body = json!({
            "name": "go-demo@docker", "source": "docker", "etag": "\"1\"",
            "servers": [{ "name": "a", "url": "http://10.0.0.1:8080", "weight": 1 }],
            "affinity": { "mode": "cookie", "domain": null },
            "balance": "round_robin",
        });
        let text = toml_table(Kind::Service, "go-demo@docker", &body);
        assert!(text.contains("# from docker"), "{text}");
        assert!(text.contains("[services.\"go-demo@docker\"]"), "{text}");
        let parsed: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
        let svc = &parsed["services"]["go-demo@docker"];
        assert_eq!(svc["balance"].as_str(), Some("round_robin"));
        assert_eq!(svc["affinity"]["mode"].as_str(), Some("cookie"));
        assert!(svc["affinity"].get("domain").is_none(), "no null in TOML");
        assert!(svc.get("etag").is_none() && svc.get("source").is_none());
    }

    /// The documents a reconfigure stores, as the API checks them.
    fn checked(t: &Reconfigure) -> tether_model::api_doc::Declarations {
        let eps = cfg().entrypoints;
        tether_model::api_doc::declarations(
            t.objects.iter().map(|(k, n, b)| (*k, n.as_str(), b)),
            &eps,
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn routing_options_become_the_rule_tls_and_a_host_rule_the_api_takes() {
        let t = translate(&q(&[
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("servicePathExclude", "/demo/admin"),
            ("serviceHeader", "X-Version:3"),
            ("port", "8080"),
            ("sslVerifyNone", "true"),
            ("checkResolvers", "true"),
            ("outboundHostname", "internal.demo"),
        ]))
        .ok()
        .unwrap();
        let d = checked(&t);
        assert_eq!(
            d.routes[0].rule_text,
            "PathPrefix(`/demo`) && Header(`X-Version`, `3`) && !PathPrefix(`/demo/admin`)"
        );
        let srv = &d.services[0].servers[0];
        assert!(srv.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(d.middlewares.len(), 1, "the Host rule");
        let t = translate(&q(&[
            ("serviceName", "fallback"),
            ("isDefaultBackend", "true"),
            ("port", "8080"),
        ]))
        .ok()
        .unwrap();
        let d = checked(&t);
        assert_eq!(
            (d.routes[0].rule_text.as_str(), d.routes[0].priority),
            ("PathPrefix(`/`)", 1)
        );
        for (p, v) in [
            ("timeoutServer", "60"),
            ("timeoutTunnel", "3600"),
            ("isDefaultBackend", "maybe"),
        ] {
            let e = translate(&q(&[
                ("serviceName", "a"),
                ("servicePath", "/a"),
                ("port", "80"),
                (p, v),
            ]))
            .err()
            .unwrap();
            assert_eq!(e.field.as_deref(), Some(p), "{e:?}");
        }
    }

    #[test]
    fn indexed_options_are_destinations_of_their_own() {
        let all = translate_all(
            &q(&[
                ("serviceName", "go-demo"),
                ("servicePath", "/demo"),
                ("port", "8080"),
                ("servicePath.1", "/admin"),
                ("port.1", "9090"),
                ("reqMode.2", "tcp"),
                ("srcPort.2", "6379"),
                ("port.2", "6379"),
                ("users", "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
                ("usersPassEncrypted", "true"),
                ("alertName.1", "mem"),
            ]),
            &cfg().context(),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(all.len(), 3);
        let d: Vec<_> = all.iter().map(checked).collect();
        assert_eq!(d[0].routes[0].name, "go-demo");
        assert_eq!(d[1].routes[0].name, "go-demo-1");
        assert_eq!(d[1].routes[0].rule_text, "PathPrefix(`/admin`)");
        assert_eq!(
            d[1].services[0].servers[0].addr.to_string(),
            "go-demo:9090",
            "reached at the service's own name"
        );
        assert_eq!(
            d[1].routes[0].middlewares,
            ["go-demo-1-auth@api"],
            "the service's users guard every destination"
        );
        assert_eq!(d[2].tcp_routes[0].name, "go-demo-2");
        // A bad indexed option is named as written; a service's option cannot be indexed.
        let e = translate_all(
            &q(&[
                ("serviceName", "a"),
                ("servicePath", "/a"),
                ("port", "80"),
                ("servicePath.1", "/b"),
                ("port.1", "x"),
            ]),
            &cfg().context(),
        )
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("port.1"), "{e:?}");
        let e = translate_all(
            &q(&[
                ("serviceName", "a"),
                ("servicePath", "/a"),
                ("port", "80"),
                ("sessionType.1", "sticky-server"),
            ]),
            &cfg().context(),
        )
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("sessionType.1"), "{e:?}");
    }

    #[test]
    fn unknown_and_bad_parameters_are_named() {
        let e = translate(&q(&[
            ("serviceName", "a"),
            ("port", "1"),
            ("servicePath", "/"),
            ("aclName", "x"),
        ]))
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("aclName"));
        let e = translate(&q(&[
            ("serviceName", "a"),
            ("port", "http"),
            ("servicePath", "/"),
        ]))
        .err()
        .unwrap();
        assert_eq!(e.field.as_deref(), Some("port"));
        let e = translate(&q(&[("serviceName", "a"), ("port", "1")]))
            .err()
            .unwrap();
        assert_eq!(e.field.as_deref(), Some("servicePath"));
    }
}

//! Docker Flow Proxy's HTTP API (`--dfp-compat`), served on the admin listener:
//! `GET /v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080` and
//! `GET /v1/docker-flow-proxy/remove?serviceName=go-demo`, and `PUT
//! /v1/docker-flow-proxy/cert?certName=NAME` (the PEM text as the body), a certificate kept in
//! the store like the admin API's.
//!
//! A reconfigure becomes the same change the API takes: a service `serviceName` whose server is
//! `http://serviceName:port` (a Swarm service's DNS name on a shared network, or any resolvable
//! name or address) and a route `serviceName` on `PathPrefix` of each path (and `Host` of each
//! domain), as the `com.df.*` labels are read. It is stored once and every replica applies it from
//! the store, so `distribute=true` needs no fan-out. They take the admin token like every change;
//! `--dfp-compat-allow CIDR` admits a source network for these two endpoints only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tether_model::file_config::Cidr;
use tether_providers::api::{Kind, Op};

use crate::auth::Need;
use crate::changes::{self, Part};
use crate::{ApiError, AppState};

/// Docker Flow Proxy compatibility settings.
#[derive(Debug, Clone, Default)]
pub struct DfpConfig {
    /// Source networks admitted without the token, for these endpoints only.
    pub allow: Vec<Cidr>,
}

const RECONFIGURE: &[&str] = &[
    "serviceName",
    "servicePath",
    "port",
    "serviceDomain",
    "distribute",
    "sessionType",
    "reqMode",
    "httpsOnly",
];

use tether_model::labels::flow::middlewares as dfp_middlewares;

/// Is `p` a parameter reconfigure reads?
fn known(p: &str) -> bool {
    RECONFIGURE.contains(&p) || dfp_middlewares::PARAMS.contains(&p)
}

/// What a reconfigure declares: the service's name, its service, route and middlewares (as the
/// API's documents), and DFP's echo of it.
type Reconfigure = (String, Value, Value, Vec<(String, Value)>, Value);

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
    let cfg = s.dfp.as_ref().expect("routes exist only with --dfp-compat");
    if cfg.allow.iter().any(|c| c.contains(peer.ip())) {
        return Ok(());
    }
    s.auth.check(headers, Need::Change)
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

/// The service and route a reconfigure declares.
fn translate(q: &BTreeMap<String, String>) -> Result<Reconfigure, ApiError> {
    if let Some(unknown) = q.keys().find(|k| !known(k)) {
        return Err(bad(
            unknown,
            format!(
                "unknown parameter; Tether reads {}, {}",
                RECONFIGURE.join(", "),
                dfp_middlewares::PARAMS.join(", ")
            ),
        ));
    }
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
    let paths = list(q.get("servicePath"));
    let domains = list(q.get("serviceDomain"));
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(bad("servicePath", format!("{p:?}: a path starts with /")));
    }
    if paths.is_empty() && domains.is_empty() {
        return Err(bad(
            "servicePath",
            "missing: give servicePath, serviceDomain or both",
        ));
    }
    if let Some(d) = q.get("distribute") {
        if !matches!(d.as_str(), "true" | "false") {
            return Err(bad("distribute", format!("{d:?}: expected true or false")));
        }
    }
    if let Some(m) = q.get("reqMode") {
        if !m.eq_ignore_ascii_case("http") {
            return Err(bad("reqMode", format!("{m:?}: only http is supported")));
        }
    }
    let mut service =
        json!({ "servers": [{ "name": name, "url": format!("http://{name}:{port}") }] });
    match q.get("sessionType").map(String::as_str) {
        None => {}
        // One server per task, each found in Swarm's DNS and pinned by Tether's own cookie.
        Some("sticky-server") => {
            service = json!({
                "resolve": format!("tasks.{name}:{port}"),
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
    if !hosts.is_empty() {
        rule.push(any_of("Host", &hosts));
    }
    if !paths.is_empty() {
        rule.push(any_of("PathPrefix", &paths));
    }
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
    let middlewares: Vec<(String, Value)> = translated
        .tables
        .into_iter()
        .map(|t| {
            let body = serde_json::to_value(&t.table).unwrap_or_default();
            (format!("{name}-{}", t.suffix), body)
        })
        .collect();
    if !middlewares.is_empty() {
        route["middlewares"] = json!(middlewares.iter().map(|m| &m.0).collect::<Vec<_>>());
    }
    let echo = json!({
        "ServiceName": name,
        "ServicePath": paths,
        "ServiceDomain": domains,
        "Port": port.to_string(),
        "Distribute": q.get("distribute").is_some_and(|d| d == "true"),
    });
    Ok((name, service, route, middlewares, echo))
}

/// The API middlewares an earlier reconfigure of `name` made that `keep` does not hold.
fn stale_middlewares(s: &AppState, name: &str, keep: &[(String, Value)]) -> Vec<Part> {
    let applied = s.api.as_ref().and_then(|a| a.applied());
    dfp_middlewares::SUFFIXES
        .iter()
        .map(|suffix| format!("{name}-{suffix}"))
        .filter(|m| !keep.iter().any(|k| &k.0 == m))
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
    let (name, service, route, middlewares, mut echo) = match translate(&q) {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let stale = stale_middlewares(&s, &name, &middlewares);
    let mut parts: Vec<Part> = middlewares
        .into_iter()
        .map(|(m, body)| Part {
            op: Op::Put {
                kind: Kind::Middleware,
                name: m,
                body,
            },
            precondition: None,
        })
        .collect();
    parts.extend(vec![
        Part {
            op: Op::Put {
                kind: Kind::Service,
                name: name.clone(),
                body: service,
            },
            precondition: None,
        },
        Part {
            op: Op::Put {
                kind: Kind::Route,
                name: name.clone(),
                body: route,
            },
            precondition: None,
        },
    ]);
    parts.extend(stale);
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
    if let Some(unknown) = q
        .keys()
        .find(|k| !["serviceName", "distribute"].contains(&k.as_str()))
    {
        return refused(bad(
            unknown,
            "unknown parameter; Tether reads serviceName, distribute",
        ));
    }
    let Some(name) = q.get("serviceName").filter(|n| !n.is_empty()).cloned() else {
        return refused(bad("serviceName", "missing"));
    };
    let applied = s.api.as_ref().and_then(|a| a.applied());
    let has = |kind| {
        applied
            .as_ref()
            .is_some_and(|a| a.snapshot.get(kind, &name).is_some())
    };
    let mut parts: Vec<Part> = [Kind::Route, Kind::Service]
        .into_iter()
        .filter(|&k| has(k))
        .map(|kind| Part {
            op: Op::Delete {
                kind,
                name: name.clone(),
            },
            precondition: None,
        })
        .collect();
    if !parts.is_empty() {
        // Its middlewares go with it.
        parts.extend(stale_middlewares(&s, &name, &[]));
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

    #[test]
    fn https_only_redirects_plain_http() {
        let base = [
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("port", "8080"),
        ];
        let (_, _, route, _, _) =
            translate(&q(&[base.as_slice(), &[("httpsOnly", "true")]].concat())).unwrap();
        assert_eq!(route["redirect_https"], json!(true));
        let (_, _, route, _, _) = translate(&q(&base)).unwrap();
        assert!(route.get("redirect_https").is_none());
        let e = translate(&q(
            &[base.as_slice(), &[("httpsOnly", "yes please")]].concat()
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("httpsOnly"));
    }

    #[test]
    fn the_seeds_call_becomes_a_service_and_a_route() {
        let (name, svc, route, _, _) = translate(&q(&[
            ("serviceName", "go-demo"),
            ("servicePath", "/demo"),
            ("port", "8080"),
            ("distribute", "true"),
        ]))
        .unwrap();
        assert_eq!(name, "go-demo");
        assert_eq!(svc["servers"][0]["url"], "http://go-demo:8080");
        assert_eq!(route["rule"], "PathPrefix(`/demo`)");
        let (_, _, route, _, _) = translate(&q(&[
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
        let (_, svc, _, _, _) = translate(&q(&[
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
        let (_, _, route, mws, _) = translate(&q(&[
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
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("addReqHeader"));
    }

    #[test]
    fn unknown_and_bad_parameters_are_named() {
        let e = translate(&q(&[
            ("serviceName", "a"),
            ("port", "1"),
            ("servicePath", "/"),
            ("aclName", "x"),
        ]))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("aclName"));
        let e = translate(&q(&[
            ("serviceName", "a"),
            ("port", "http"),
            ("servicePath", "/"),
        ]))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("port"));
        let e = translate(&q(&[("serviceName", "a"), ("port", "1")])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("servicePath"));
    }
}

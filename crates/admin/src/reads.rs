//! The reads: what is served and where it came from. Every object carries an ETag: a stored
//! object's store revision (what `If-Match` compares), a digest for the other sources' objects.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::{json, Map, Value};
use tether_model::Middleware;
use tether_providers::api::Kind;

use crate::render;
use crate::{ApiError, AppState};

/// `GET /api/version`: the applied table's hash, when it was applied, and each source's version.
pub async fn version(State(s): State<AppState>) -> Json<Value> {
    Json(version_body(&s))
}

pub(crate) fn version_body(s: &AppState) -> Value {
    let status = s.control.status();
    let mut sources = Map::new();
    for (name, src) in s.control.sources() {
        sources.insert(
            name,
            json!({
                "version": src.version,
                "routes": src.routes,
                "services": src.services,
                "updated_at": render::time(src.updated_at),
                "problem": src.problem,
                "errors": src.errors.len(),
            }),
        );
    }
    let mut body = json!({
        "hash": status.version,
        "applied_at": render::time(status.applied_at),
        "routes": status.routes,
        "services": status.services,
        "swaps": status.swaps,
        "sources": sources,
    });
    if let Some(api) = &s.api {
        let applied = api.applied();
        let problem = api.store().health().borrow().clone();
        body["store"] = json!({
            "provider": api.store().provider(),
            "location": api.store().describe(),
            "revision": applied.as_ref().map(|a| a.snapshot.revision),
            "reachable": problem.is_none(),
            "problem": problem,
            "incident": api.store().incident(),
        });
        if api.store().is_shared() {
            body["affinity"] = affinity(s, api);
        }
    }
    body
}

/// This replica's key fingerprint, every live replica's, and those that hold another key.
fn affinity(s: &AppState, api: &tether_providers::api::ApiHandle) -> Value {
    let own = s.control.key_fingerprint();
    let snapshot = api.applied().map(|a| a.snapshot);
    let replicas = snapshot
        .as_ref()
        .map(|s| s.replicas.clone())
        .unwrap_or_default();
    let disagree: Vec<&str> = snapshot
        .as_ref()
        .map(|s| s.other_keys(&own).into_iter().map(|(id, _)| id).collect())
        .unwrap_or_default();
    json!({ "fingerprint": own, "replicas": replicas, "disagree": disagree })
}

/// The error when replicas sharing the store seal with different keys.
fn key_disagreement(s: &AppState) -> Option<String> {
    let api = s.api.as_ref().filter(|a| a.store().is_shared())?;
    let a = affinity(s, api);
    let ids: Vec<&str> = a["disagree"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    (!ids.is_empty()).then(|| {
        format!(
            "replicas {} seal sticky cookies with another affinity key than this one (fingerprint {}): sessions pinned by one are not recognised by the others. Give them all the same --key-file, or none, so that they share the store's",
            ids.join(", "),
            a["fingerprint"].as_str().unwrap_or_default()
        )
    })
}

/// Each declared object of a kind, with its source and ETag, best first by name.
pub(crate) fn objects(s: &AppState, kind: Kind) -> Vec<(String, Value)> {
    let snapshot = s.api.as_ref().and_then(|a| a.applied()).map(|a| a.snapshot);
    let api_provider = s.api.as_ref().map(|a| a.store().provider());
    let mut out = Vec::new();
    for (source, update) in s.control.declarations() {
        let stored_etag = |name: &str| {
            // The API's middlewares are named `NAME@api` in the table, `NAME` in the store.
            let stored = match kind {
                Kind::Middleware => name
                    .strip_suffix(&format!("@{}", tether_model::api_doc::PROVIDER))
                    .unwrap_or(name),
                _ => name,
            };
            (Some(source.as_str()) == api_provider)
                .then(|| snapshot.as_ref()?.get(kind, stored))
                .flatten()
                .map(|o| render::revision_etag(o.mod_revision))
        };
        let mut push = |name: &str, mut body: Value, digest: String| {
            let etag = stored_etag(name).unwrap_or(digest);
            body["name"] = json!(name);
            body["source"] = json!(source);
            body["etag"] = json!(etag);
            out.push((name.to_string(), body));
        };
        match kind {
            Kind::Route => {
                for r in &update.routes {
                    push(&r.name, render::route(r), render::digest_etag(r));
                }
            }
            Kind::Service => {
                for svc in update.services.iter().filter(|s| !s.protocol.is_tcp()) {
                    push(&svc.name, render::service(svc), render::digest_etag(svc));
                }
            }
            Kind::TcpService => {
                for svc in update.services.iter().filter(|s| s.protocol.is_tcp()) {
                    push(
                        &svc.name,
                        render::tcp_service(svc),
                        render::digest_etag(svc),
                    );
                }
            }
            Kind::TcpRouter => {
                for r in &update.tcp_routes {
                    push(&r.name, render::tcp_router(r), render::digest_etag(r));
                }
            }
            // Listed from the certificate store (`certificates`).
            Kind::Certificate => {}
            Kind::Middleware => {
                for m in &update.middlewares {
                    let mut body = render::middleware(m);
                    if let Middleware::BasicAuth(b) = &m.kind {
                        if let Some(p) = b
                            .users_file
                            .as_ref()
                            .and_then(|f| s.control.users_file_problem(f))
                        {
                            body["users_file_error"] = json!(p);
                        }
                    }
                    push(&m.name, body, render::digest_etag(m));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `GET /api/routes`
pub async fn routes(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        objects(&s, Kind::Route).into_iter().map(|o| o.1).collect(),
    ))
}

/// `GET /api/services`
pub async fn services(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        objects(&s, Kind::Service)
            .into_iter()
            .map(|o| o.1)
            .collect(),
    ))
}

fn one(s: &AppState, kind: Kind, name: &str) -> Result<Response, ApiError> {
    let all = objects(s, kind);
    // A middleware is found by its qualified name, or by the bare name the API gave it.
    let api_name = format!("{name}@{}", tether_model::api_doc::PROVIDER);
    let found = all
        .iter()
        .find(|o| o.0 == name)
        .or_else(|| {
            (kind == Kind::Middleware)
                .then(|| all.iter().find(|o| o.0 == api_name))
                .flatten()
        })
        .cloned();
    let Some((_, body)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {} named {name:?}", kind.singular()),
        ));
    };
    let etag = body["etag"].as_str().unwrap_or_default().to_string();
    let mut resp = Json(body).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// `GET /api/routes/NAME`
pub async fn route(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, Kind::Route, &name)
}

/// `GET /api/services/NAME`
pub async fn service(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, Kind::Service, &name)
}

/// `GET /api/tcp/routers`
pub async fn tcp_routers(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        objects(&s, Kind::TcpRouter)
            .into_iter()
            .map(|o| o.1)
            .collect(),
    ))
}

/// `GET /api/tcp/routers/NAME`
pub async fn tcp_router(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, Kind::TcpRouter, &name)
}

/// `GET /api/tcp/services`
pub async fn tcp_services(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        objects(&s, Kind::TcpService)
            .into_iter()
            .map(|o| o.1)
            .collect(),
    ))
}

/// `GET /api/tcp/services/NAME`
pub async fn tcp_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, Kind::TcpService, &name)
}

/// `GET /api/middlewares`: every source's middlewares (password hashes never shown).
pub async fn middlewares(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(
        objects(&s, Kind::Middleware)
            .into_iter()
            .map(|o| o.1)
            .collect(),
    ))
}

/// `GET /api/middlewares/NAME` (`NAME@source`, or the API's own `NAME`).
pub async fn middleware(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    one(&s, Kind::Middleware, &name)
}

/// `GET /api/backends`: every server of the served table with its live state.
pub async fn backends(State(s): State<AppState>) -> Json<Value> {
    let mut rows: Vec<(String, String, Value)> = s
        .control
        .registry()
        .snapshot()
        .into_iter()
        .map(|(service, b)| {
            let row = json!({
                "service": service,
                "server": &*b.name,
                "address": b.addr.to_string(),
                "state": b.state.describe(),
                "in_flight": b.state.in_flight(),
                "pinned_requests": b.state.pinned(),
            });
            (service, b.name.to_string(), row)
        })
        .collect();
    // A service with no server has a row of its own: its routes stay, and requests wait for one.
    for svc in s.control.store().load().services.iter() {
        if svc.backends.is_empty() {
            let row = json!({
                "service": svc.name,
                "server": null,
                "address": null,
                "state": "no server",
                "in_flight": 0,
                "pinned_requests": 0,
                "waiting": svc.stats.waiting.load(std::sync::atomic::Ordering::Relaxed),
            });
            rows.push((svc.name.clone(), String::new(), row));
        }
    }
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Json(Value::Array(rows.into_iter().map(|r| r.2).collect()))
}

/// `GET /api/errors`: what each source has refused or left out now, and the rejections of late.
pub async fn errors(State(s): State<AppState>) -> Json<Value> {
    let status = s.control.status();
    let recent: Vec<Value> = s
        .control
        .rejections()
        .into_iter()
        .rev()
        .map(|r| {
            json!({
                "at": render::time(Some(r.at)),
                "source": r.source,
                "field": r.field,
                "message": r.message,
            })
        })
        .collect();
    let problems: Map<String, Value> = s
        .control
        .sources()
        .into_iter()
        .filter_map(|(name, src)| src.problem.map(|p| (name, json!(p))))
        .collect();
    let incident = s.api.as_ref().and_then(|a| a.store().incident());
    Json(json!({
        "current": status.errors,
        "unreachable": problems,
        "recent": recent,
        "store_incident": incident,
        "affinity": key_disagreement(&s),
    }))
}

//! Changes: `PUT`/`DELETE /api/routes/NAME` and `/api/services/NAME`, and `POST /api/changes`
//! for several at once, whole or not at all.
//!
//! A change is checked before anything is written, against the state this replica serves: its
//! preconditions (`If-Match`), names that another source declares (409), the documents with the
//! checks of `tether.toml`, and the merged table they would make (400 naming the field); that
//! state is first brought up to the store's last change, so a change made through another replica
//! just before is seen (one read of the store's change marker). It is
//! then committed to the store in one step, which fails if the store moved on since the check;
//! the check is then made again on the newer state. The answer comes once this replica serves
//! the change, which it applies from its store (with etcd: from its own watch), and carries the
//! new version.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tether_control::Declares;
use tether_providers::api::{ApiHandle, Commit, Kind, Op, Snapshot};

use crate::render::revision_etag;
use crate::{ApiError, AppState};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// How long a change waits to be served by this replica before its answer says so.
pub const APPLY_DEADLINE: Duration = Duration::from_secs(5);
/// How many times a change is checked again after the store moved on under it.
const ATTEMPTS: usize = 8;

/// What must hold of an object for a change to it to go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: "5"`: its ETag is one of these revisions.
    Match(Vec<u64>),
    /// `If-Match: *`: it exists.
    Exists,
    /// `If-None-Match: *`: it does not exist yet.
    Absent,
}

/// One part of a change with its precondition.
#[derive(Debug, Clone)]
pub struct Part {
    pub op: Op,
    pub precondition: Option<Precondition>,
}

/// Read `If-Match` / `If-None-Match`.
pub(crate) fn precondition(headers: &HeaderMap) -> Result<Option<Precondition>, ApiError> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return match v.to_str().map(str::trim) {
            Ok("*") => Ok(Some(Precondition::Absent)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "If-None-Match: only * (create, never overwrite) is supported on changes",
            )),
        };
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Some(Precondition::Exists));
    }
    parse_etags(text)
        .map(|revs| Some(Precondition::Match(revs)))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "If-Match {text:?}: expected * or ETags such as \"12\", as reads return them"
                ),
            )
        })
}

fn parse_etags(text: &str) -> Option<Vec<u64>> {
    text.split(',')
        .map(|t| {
            let t = t.trim().trim_start_matches("W/");
            t.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
        })
        .collect()
}

fn check_precondition(
    kind: Kind,
    name: &str,
    p: &Precondition,
    base: &Snapshot,
) -> Result<(), ApiError> {
    let current = base.get(kind, name).map(|o| o.mod_revision);
    let ok = match (p, current) {
        (Precondition::Match(revs), Some(rev)) => revs.contains(&rev),
        (Precondition::Match(_) | Precondition::Exists, None) => false,
        (Precondition::Exists, Some(_)) => true,
        (Precondition::Absent, current) => current.is_none(),
    };
    if ok {
        return Ok(());
    }
    let now = current.map_or("none (it does not exist)".to_string(), revision_etag);
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        format!(
            "{}/{name}: the precondition does not hold: its current ETag is {now}; another change came first, read it again",
            kind.plural()
        ),
    ))
}

/// The answer to a change served by this replica.
#[derive(Debug)]
pub struct Done {
    pub revision: u64,
    pub version: String,
    pub created: bool,
}

/// Check, commit and wait until served.
pub async fn apply(s: &AppState, parts: Vec<Part>) -> Result<Done, ApiError> {
    let api = s.api.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this Tether has no API source",
        )
    })?;
    if let Some(problem) = api.store().health().borrow().clone() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{problem}; changes are refused until it is back (the last good configuration keeps serving)"),
        ));
    }
    let ops: Vec<Op> = parts.iter().map(|p| p.op.clone()).collect();
    // Every change made before this one, through any replica, is seen before it is checked.
    let latest = api.store().latest().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; nothing was changed"),
        )
    })?;
    if api.wait_for(latest, APPLY_DEADLINE).await.is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this replica has not caught up with revision {latest} of the store within {APPLY_DEADLINE:?}; nothing was changed"),
        ));
    }
    for attempt in 0..ATTEMPTS {
        let base = api
            .applied()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} has not been read yet; try again shortly",
                        api.store().describe()
                    ),
                )
            })?
            .snapshot;
        let created = check(s, api, &parts, &base).inspect_err(|e| {
            if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::CONFLICT {
                let messages: Vec<String> = if e.errors.is_empty() {
                    vec![e.message.clone()]
                } else {
                    e.errors
                        .iter()
                        .map(|(f, m)| f.as_ref().map_or(m.clone(), |f| format!("{f}: {m}")))
                        .collect()
                };
                s.control.note_refused(api.store().provider(), &messages);
            }
        })?;
        let commit = api.store().commit(&base, &ops).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}; nothing was changed"),
            )
        })?;
        let revision = match commit {
            Commit::Done(r) => r,
            Commit::Conflict => {
                // Another change came first: wait until this replica serves a newer state.
                tracing::debug!(
                    attempt,
                    "admin: the store moved on; checking the change again"
                );
                let _ = api.wait_for(base.revision + 1, APPLY_DEADLINE).await;
                continue;
            }
        };
        let applied = api.wait_for(revision, APPLY_DEADLINE).await.ok_or_else(|| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("stored at revision {revision}, but not served by this replica within {APPLY_DEADLINE:?}"),
            )
        })?;
        return match applied.result {
            Ok(version) => Ok(Done {
                revision,
                version,
                created,
            }),
            Err(errors) => Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "stored at revision {revision}, but the merged configuration refused it: {}",
                    errors.join("; ")
                ),
                field: None,
                errors: errors.into_iter().map(|e| (None, e)).collect(),
            }),
        };
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "other changes kept coming first; nothing was changed, try again",
    ))
}

/// Every check made before writing; `Ok(created)`: whether a single put creates its object.
fn check(s: &AppState, api: &ApiHandle, parts: &[Part], base: &Snapshot) -> Result<bool, ApiError> {
    let provider = api.store().provider();
    for p in parts {
        let (kind, name) = p.op.target();
        if let Some(pre) = &p.precondition {
            check_precondition(kind, name, pre, base)?;
        }
        if let Op::Put {
            kind: Kind::Certificate,
            name,
            body,
        } = &p.op
        {
            crate::certificates::check(s, name, body)?;
        }
        let declares = match kind {
            Kind::Route => Some(Declares::Route),
            Kind::Service | Kind::TcpService => Some(Declares::Service),
            Kind::TcpRouter => Some(Declares::TcpRouter),
            Kind::Certificate | Kind::Middleware => None,
        };
        if let Some(owner) = declares.and_then(|d| s.control.owner(d, name, provider)) {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "{}.{name}: already declared by the {owner} source; the API can only change what it declared",
                    kind.table()
                ),
                field: Some(format!("{}.{name}", kind.table())),
                errors: Vec::new(),
            });
        }
        if let Op::Delete {
            kind: Kind::Middleware,
            name,
        } = &p.op
        {
            let qualified =
                tether_model::middleware::qualify(name, tether_model::api_doc::PROVIDER);
            let users = routes_using(s, &qualified, parts);
            if !users.is_empty() {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    message: format!(
                        "middlewares.{name}: routes {} still use {qualified}; change them first",
                        users.join(", ")
                    ),
                    field: Some(format!("middlewares.{name}")),
                    errors: Vec::new(),
                });
            }
        }
        if let Op::Delete { .. } = p.op {
            if base.get(kind, name).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "{}/{name}: no such object was created through the API",
                        kind.plural()
                    ),
                ));
            }
        }
    }
    let next = Op::apply_all(
        &base.objects,
        &parts.iter().map(|p| p.op.clone()).collect::<Vec<_>>(),
    );
    let update = api.update_for(&next).map_err(|errors| {
        ApiError::invalid(
            errors
                .into_iter()
                .map(|e| (Some(e.field), e.message))
                .collect(),
        )
    })?;
    s.control.check(update).map_err(|errors| {
        ApiError::invalid(
            errors
                .into_iter()
                .map(|e| match e.split_once(": ") {
                    Some((f, m)) => (Some(f.to_string()), m.to_string()),
                    None => (None, e),
                })
                .collect(),
        )
    })?;
    let created = matches!(parts, [p] if matches!(p.op, Op::Put { .. }) && {
        let (kind, name) = p.op.target();
        base.get(kind, name).is_none()
    });
    Ok(created)
}

fn answer(done: Done) -> Response {
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let etag = revision_etag(done.revision);
    let mut resp = (
        status,
        Json(json!({ "revision": done.revision, "version": done.version, "etag": etag })),
    )
        .into_response();
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

pub(crate) fn body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: not JSON: {e}")))
}

pub(crate) async fn put(
    s: AppState,
    kind: Kind,
    name: String,
    headers: HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let part = Part {
        op: Op::Put {
            kind,
            name,
            body: body(bytes)?,
        },
        precondition: precondition(&headers)?,
    };
    apply(&s, vec![part]).await.map(answer)
}

pub(crate) async fn delete(
    s: AppState,
    kind: Kind,
    name: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let part = Part {
        op: Op::Delete { kind, name },
        precondition: precondition(&headers)?,
    };
    apply(&s, vec![part]).await.map(answer)
}

/// `PUT /api/routes/NAME`
pub async fn put_route(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    put(s, Kind::Route, name, headers, &bytes).await
}

/// `PUT /api/services/NAME`
pub async fn put_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    put(s, Kind::Service, name, headers, &bytes).await
}

/// `DELETE /api/routes/NAME`
pub async fn delete_route(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(s, Kind::Route, name, headers).await
}

/// `DELETE /api/services/NAME`
pub async fn delete_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(s, Kind::Service, name, headers).await
}

/// `PUT /api/tcp/routers/NAME`
pub async fn put_tcp_router(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    put(s, Kind::TcpRouter, name, headers, &bytes).await
}

/// `PUT /api/tcp/services/NAME`
pub async fn put_tcp_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    put(s, Kind::TcpService, name, headers, &bytes).await
}

/// `DELETE /api/tcp/routers/NAME`
pub async fn delete_tcp_router(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(s, Kind::TcpRouter, name, headers).await
}

/// `DELETE /api/tcp/services/NAME`
pub async fn delete_tcp_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(s, Kind::TcpService, name, headers).await
}

/// `PUT /api/middlewares/NAME`
pub async fn put_middleware(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    put(s, Kind::Middleware, name, headers, &bytes).await
}

/// `DELETE /api/middlewares/NAME`
pub async fn delete_middleware(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete(s, Kind::Middleware, name, headers).await
}

/// The routes (of any source) that name middleware `qualified`, unless the same change deletes
/// them too.
fn routes_using(s: &AppState, qualified: &str, parts: &[Part]) -> Vec<String> {
    // Replaced or deleted by the same change: what a replaced route names is checked with the
    // rest of the change.
    let deleted = |route: &str| {
        parts.iter().any(|p| match &p.op {
            Op::Delete {
                kind: Kind::Route,
                name,
            }
            | Op::Put {
                kind: Kind::Route,
                name,
                ..
            } => name == route,
            _ => false,
        })
    };
    let mut users: Vec<String> = s
        .control
        .declarations()
        .values()
        .flat_map(|u| u.routes.iter())
        .filter(|r| r.middlewares.iter().any(|m| m == qualified) && !deleted(&r.name))
        .map(|r| r.name.clone())
        .collect();
    users.sort();
    users.dedup();
    users
}

/// One entry of `POST /api/changes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeEntry {
    op: String,
    kind: String,
    name: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    if_match: Option<String>,
}

/// `POST /api/changes`: `{"changes": [{"op": "put", "kind": "routes", "name": "web", "body": {...}}, ...]}`
pub async fn post_changes(
    State(s): State<AppState>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Changes {
        changes: Vec<ChangeEntry>,
    }
    let changes: Changes = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("body: expected {{\"changes\": [{{\"op\": \"put\" or \"delete\", \"kind\": \"routes\", \"services\", \"middlewares\", \"certificates\", \"tcp/routers\" or \"tcp/services\", \"name\": ..., \"body\": {{...}}}}]}}: {e}"))
    })?;
    if changes.changes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "changes: empty list",
        ));
    }
    let mut parts = Vec::new();
    for (i, c) in changes.changes.into_iter().enumerate() {
        let at = |f: &str| format!("changes[{i}].{f}");
        let kind = Kind::from_plural(&c.kind).ok_or_else(|| {
            ApiError::invalid(vec![(
                Some(at("kind")),
                format!("{:?}: expected \"routes\", \"services\", \"middlewares\", \"certificates\", \"tcp/routers\" or \"tcp/services\"", c.kind),
            )])
        })?;
        let op = match (c.op.as_str(), c.body) {
            ("put", Some(body)) => Op::Put {
                kind,
                name: c.name,
                body,
            },
            ("put", None) => {
                return Err(ApiError::invalid(vec![(
                    Some(at("body")),
                    "missing: a put needs the object".into(),
                )]))
            }
            ("delete", None) => Op::Delete { kind, name: c.name },
            ("delete", Some(_)) => {
                return Err(ApiError::invalid(vec![(
                    Some(at("body")),
                    "a delete takes no body".into(),
                )]))
            }
            (other, _) => {
                return Err(ApiError::invalid(vec![(
                    Some(at("op")),
                    format!("{other:?}: expected \"put\" or \"delete\""),
                )]))
            }
        };
        let precondition = match c.if_match.as_deref().map(str::trim) {
            None => None,
            Some("*") => Some(Precondition::Exists),
            Some(t) => Some(Precondition::Match(parse_etags(t).ok_or_else(|| {
                ApiError::invalid(vec![(
                    Some(at("if_match")),
                    format!("{t:?}: expected * or an ETag such as \"12\""),
                )])
            })?)),
        };
        if parts.iter().any(|p: &Part| p.op.target() == op.target()) {
            return Err(ApiError::invalid(vec![(
                Some(at("name")),
                "the same object twice in one change".into(),
            )]));
        }
        parts.push(Part { op, precondition });
    }
    let mut done = apply(&s, parts).await?;
    done.created = false;
    Ok(answer(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse_as_reads_return_them() {
        assert_eq!(parse_etags("\"12\""), Some(vec![12]));
        assert_eq!(parse_etags("W/\"3\", \"4\""), Some(vec![3, 4]));
        assert_eq!(parse_etags("12"), None);
    }
}

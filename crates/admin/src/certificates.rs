//! Certificates: `GET /api/certificates` (every certificate served, from every source, never
//! its key, and the state of each one ACME keeps), and `GET`/`PUT`/`DELETE /api/certificates/NAME` for those kept in the API's store
//! (etcd's, when one is configured: every replica then serves the same certificate).
//!
//! A `PUT` body is `{"cert": PEM, "key": PEM, "default": false}`, or the PEM text itself (the
//! chain and the key in one, as HAProxy's `crt` file), sent as `application/x-pem-file` or any
//! body starting with `-----BEGIN`. The certificate is checked as a file's is (it parses, the key
//! is its key, it has not expired) before anything is stored; the answer comes once this replica
//! serves it.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use serde_json::{json, Value};
use tether_model::api_doc;
use tether_providers::api::{Kind, Op};
use tether_proxy::front::tls::certs::{self, Loaded};

use crate::changes::{apply, body, precondition, Part};
use crate::render::revision_etag;
use crate::{ApiError, AppState};

/// Would this stored document serve? 400 naming `certificates.NAME` if not.
pub(crate) fn check(s: &AppState, name: &str, body: &Value) -> Result<(), ApiError> {
    if s.certificates.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this Tether has no TLS entrypoint to serve a certificate on: add `tls = true` to an entrypoint",
        ));
    }
    let decl = api_doc::certificate(name, body)
        .map_err(|e| ApiError::invalid(vec![(Some(e.field), e.message)]))?;
    certs::load_declared(&decl).map_err(|e| {
        let field = format!("certificates.{name}");
        let message = e.to_string();
        // The messages name the document (`certificates/NAME: ...`): said once.
        let message = message
            .strip_prefix(&format!("{}: ", decl.origin))
            .map_or(message.clone(), str::to_string);
        ApiError::invalid(vec![(Some(field), message)])
    })?;
    Ok(())
}

fn describe(l: &Loaded, etag: Option<String>) -> Value {
    let days = l
        .not_after
        .duration_since(std::time::SystemTime::now())
        .map_or(0, |d| d.as_secs() / 86_400);
    let mut v = json!({
        "name": l.name,
        "source": l.provider,
        "origin": l.source,
        "names": l.names,
        "serial": l.serial,
        "not_after": humantime::format_rfc3339_seconds(l.not_after).to_string(),
        "expires_in_days": days,
        "default": l.default,
    });
    if let Some(e) = etag {
        v["etag"] = json!(e);
    }
    v
}

/// The served certificates, with the ETags of those the API store holds.
fn served(s: &AppState) -> Vec<Value> {
    let Some(store) = &s.certificates else {
        return Vec::new();
    };
    let provider = s.api.as_ref().map(|a| a.store().provider());
    let snapshot = s.api.as_ref().and_then(|a| a.applied()).map(|a| a.snapshot);
    store
        .loaded()
        .iter()
        .map(|l| {
            let etag = (Some(l.provider.as_str()) == provider)
                .then(|| snapshot.as_ref()?.get(Kind::Certificate, &l.name))
                .flatten()
                .map(|o| revision_etag(o.mod_revision));
            describe(l, etag)
        })
        .collect()
}

/// `GET /api/certificates`: every certificate served; those ACME keeps carry an `acme` object
/// (resolver, state, next renewal, last error with the CA's problem document), and those ACME
/// has not issued yet (ordering, failed, waiting) are listed too, with no serial.
pub async fn list(State(s): State<AppState>) -> Json<Value> {
    let mut all = served(&s);
    if let Some(acme) = s.control.acme() {
        for st in acme.certificates() {
            let state = serde_json::to_value(&st).unwrap_or(Value::Null);
            match all
                .iter_mut()
                .find(|c| c["source"] == certs::ACME_SOURCE && c["name"] == st.id.as_str())
            {
                Some(c) => c["acme"] = state,
                None => all.push(json!({
                    "name": st.id,
                    "source": certs::ACME_SOURCE,
                    "names": st.names,
                    "acme": state,
                })),
            }
        }
    }
    Json(Value::Array(all))
}

/// `GET /api/certificates/NAME`: one kept in the API's store.
pub async fn get(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let provider = s.api.as_ref().map(|a| a.store().provider());
    let Some(body) = served(&s)
        .into_iter()
        .find(|c| c["name"] == name.as_str() && c["source"].as_str() == provider)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no certificate named {name:?} was given to the API (GET /api/certificates lists every one served)"),
        ));
    };
    let etag = body["etag"].as_str().unwrap_or_default().to_string();
    let mut resp = Json(body).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// The document a `PUT` body gives: JSON, or the PEM text itself.
fn document(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let pem_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t.eq_ignore_ascii_case("application/x-pem-file") || t.eq_ignore_ascii_case("text/plain")
        });
    let text = std::str::from_utf8(bytes).ok();
    match text {
        Some(t) if pem_type || t.trim_start().starts_with("-----BEGIN") => Ok(json!({ "cert": t })),
        _ if pem_type => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body: not PEM text (UTF-8)",
        )),
        _ => body(bytes),
    }
}

/// `PUT /api/certificates/NAME`
pub async fn put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let part = Part {
        op: Op::Put {
            kind: Kind::Certificate,
            name: name.clone(),
            body: document(&headers, &bytes)?,
        },
        precondition: precondition(&headers)?,
    };
    let done = apply(&s, vec![part]).await?;
    let provider = s.api.as_ref().map(|a| a.store().provider());
    let served = s.certificates.as_ref().and_then(|c| {
        c.loaded()
            .into_iter()
            .find(|l| l.name == name && Some(l.provider.as_str()) == provider)
    });
    let etag = revision_etag(done.revision);
    let mut body = served.map_or_else(|| json!({}), |l| describe(&l, None));
    body["revision"] = json!(done.revision);
    body["version"] = json!(done.version);
    body["etag"] = json!(etag);
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// `DELETE /api/certificates/NAME`
pub async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::changes::delete(s, Kind::Certificate, name, headers).await
}

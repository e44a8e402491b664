//! Who may do what. Every change needs the admin token, sent as `Authorization: Bearer TOKEN` or
//! as the password of HTTP basic auth (a browser's prompt). Reads need it too when the listener is
//! bound beyond loopback. Without a configured token the listener is read-only and refuses to bind
//! beyond loopback. Tokens are compared in constant time.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{header, HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// The admin listener's access rules.
#[derive(Debug)]
pub struct Auth {
    token: Option<String>,
    /// Reads need the token too (the listener is bound beyond loopback).
    guard_reads: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the admin listener {0} is not on loopback, and no admin token is configured: set --admin-token-file FILE (a Docker secret, say) or TETHER_ADMIN_TOKEN, or listen on 127.0.0.1")]
    NoTokenBeyondLoopback(SocketAddr),
    #[error("the admin token is empty")]
    EmptyToken,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Change,
}

impl Auth {
    /// The rules for a listener on `addr`.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Result<Auth, AuthError> {
        let loopback = addr.ip().is_loopback();
        match &token {
            Some(t) if t.is_empty() => return Err(AuthError::EmptyToken),
            None if !loopback => return Err(AuthError::NoTokenBeyondLoopback(addr)),
            _ => {}
        }
        Ok(Auth {
            token,
            guard_reads: !loopback,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// May a request with these headers do what it needs?
    pub fn check(&self, headers: &HeaderMap, need: Need) -> Result<(), ApiError> {
        if need == Need::Read && !self.guard_reads {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(unauthorized(
                "no admin token configured: this listener is read-only; start Tether with --admin-token-file FILE or TETHER_ADMIN_TOKEN to allow changes",
            ));
        };
        match presented(headers) {
            Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
            Some(_) => Err(unauthorized("wrong admin token")),
            None => Err(unauthorized(
                "missing admin token: send Authorization: Bearer TOKEN (or HTTP basic auth with the token as password)",
            )),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
}

/// Does this `Authorization` value present `token` (bearer, or basic auth's password)?
/// Compared in constant time.
pub(crate) fn presents(authorization: Option<&[u8]>, token: &str) -> bool {
    let mut h = HeaderMap::new();
    if let Some(v) = authorization.and_then(|v| http::HeaderValue::from_bytes(v).ok()) {
        h.insert(header::AUTHORIZATION, v);
    }
    presented(&h).is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// The token a request presents: a bearer token, or the password of basic auth.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

/// Middleware for `/api/*`: reads need [`Need::Read`], everything else [`Need::Change`].
pub(crate) async fn require(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let need = if matches!(*request.method(), Method::GET | Method::HEAD) {
        Need::Read
    } else {
        Need::Change
    };
    match state.auth.check(request.headers(), need) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn changes_need_the_token_as_bearer_or_basic_password() {
        let a = Auth::new("127.0.0.1:1".parse().unwrap(), Some("s3cret".into())).unwrap();
        assert!(a.check(&HeaderMap::new(), Need::Read).is_ok());
        let e = a.check(&HeaderMap::new(), Need::Change).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.message.contains("Authorization: Bearer"), "{}", e.message);
        assert!(a.check(&headers("Bearer s3cret"), Need::Change).is_ok());
        assert!(a.check(&headers("Bearer s3cre"), Need::Change).is_err());
        // "admin:s3cret"
        assert!(a
            .check(&headers("Basic YWRtaW46czNjcmV0"), Need::Change)
            .is_ok());
    }

    #[test]
    fn without_a_token_loopback_is_read_only_and_nothing_else_starts() {
        let a = Auth::new("127.0.0.1:1".parse().unwrap(), None).unwrap();
        assert!(a.check(&HeaderMap::new(), Need::Read).is_ok());
        let e = a.check(&headers("Bearer x"), Need::Change).unwrap_err();
        assert!(e.message.contains("no admin token configured"));
        assert!(matches!(
            Auth::new("0.0.0.0:1".parse().unwrap(), None),
            Err(AuthError::NoTokenBeyondLoopback(_))
        ));
    }

    #[test]
    fn beyond_loopback_reads_need_the_token_too() {
        let a = Auth::new("0.0.0.0:1".parse().unwrap(), Some("t".into())).unwrap();
        assert!(a.check(&HeaderMap::new(), Need::Read).is_err());
        assert!(a.check(&headers("Bearer t"), Need::Read).is_ok());
    }
}

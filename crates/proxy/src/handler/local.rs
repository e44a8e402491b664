//! Phase 2, local answers: requests Tether answers itself before routing: the key authorisation
//! of a pending ACME HTTP-01 token (on every entrypoint, since the CA may reach any replica
//! through a routing mesh), and the stats page on a traffic entrypoint.

use http::StatusCode;

use crate::answer::{error, Answer};
use crate::headers::ReadFields as _;
use crate::request::RequestHead;
use crate::stats;
use crate::upstream::body::ProxyBody;

/// The stats page, when `head` asks for it on an entrypoint it is mounted on.
pub(super) fn stats_page(m: &stats::StatsMount, ep: usize, head: &RequestHead) -> Option<Answer> {
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

/// The key authorisation of a pending HTTP-01 token that `head` asks for; any other path, among
/// them another ACME client's tokens, goes on to routing.
pub(super) fn acme_challenge(c: &crate::acme::Challenges, head: &RequestHead) -> Option<Answer> {
    if !matches!(*head.method(), http::Method::GET | http::Method::HEAD) {
        return None;
    }
    let key_authorization = c.http_answer(head.path())?;
    tracing::info!(path = %head.path(), "ACME: HTTP-01 challenge answered");
    let mut r = http::Response::new(ProxyBody::full(bytes::Bytes::from(key_authorization)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    Some(r.into())
}

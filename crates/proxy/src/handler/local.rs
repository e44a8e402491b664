//! Phase 2, local answers: requests Tether answers itself before routing (the stats page on a
//! traffic entrypoint; ACME challenges will join it).

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

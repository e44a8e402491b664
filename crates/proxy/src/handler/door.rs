//! What a request must be before it is routed, on both HTTP/1.1 paths and h2: one `Host`
//! (RFC 9112 §3.2), an h2 `host` that agrees with `:authority` (RFC 9113 §8.3.1), a target within
//! `limits.uri`, and a path in normal form ([`crate::route::path`]), written back into the
//! target that is forwarded, so routing and the server see the same path.

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, StatusCode, Uri, Version};

use crate::headers;
use crate::request::RequestHead;
use crate::route::path::PathError;
use crate::ProxyConfig;

/// The request, normalised, or the status and reason it is refused with.
pub(super) fn admit(
    head: RequestHead,
    cfg: &ProxyConfig,
) -> Result<RequestHead, (StatusCode, &'static str)> {
    if let RequestHead::Parts(p) = &head {
        // Tether's own server refuses two Host fields while it scans the head.
        if p.headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Err((StatusCode::BAD_REQUEST, crate::request::TWO_HOSTS));
        }
        // (HTTP/1.1's absolute form overrides Host instead, RFC 9112 §3.2.2.)
        if p.version == Version::HTTP_2 {
            if let (Some(a), Some(h)) =
                (p.uri.authority(), headers::first(&p.headers, &header::HOST))
            {
                let named = |b: &[u8]| crate::route::host::parse(b).map(|h| h.into_owned());
                if named(a.as_str().as_bytes()) != named(h.as_bytes()) {
                    return Err((StatusCode::BAD_REQUEST, "host and :authority differ"));
                }
            }
        }
    }
    let target = match &head {
        RequestHead::Received(r) => r.target.as_str().len(),
        RequestHead::Parts(p) => p.uri.path_and_query().map_or(0, |t| t.as_str().len()),
    };
    if target > cfg.limits.uri {
        return Err((
            StatusCode::URI_TOO_LONG,
            "the request target is over limits.uri",
        ));
    }
    normalized(head, cfg.merge_slashes).map_err(|e| (StatusCode::BAD_REQUEST, e.message()))
}

/// The request with its path in normal form ([`crate::route::path`]); untouched when it is already.
fn normalized(mut head: RequestHead, merge_slashes: bool) -> Result<RequestHead, PathError> {
    let path = head.path();
    if !path.starts_with('/') {
        return Ok(head); // `*` (OPTIONS), or no path at all
    }
    let Some(path) = crate::route::path::normalize(path, merge_slashes)? else {
        return Ok(head);
    };
    let with_query = |query: Option<&str>| match query {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    match &mut head {
        RequestHead::Received(r) => {
            let target = with_query(r.target.query());
            r.target = PathAndQuery::from_maybe_shared(Bytes::from(target))
                .map_err(|_| PathError::BadEscape)?;
        }
        RequestHead::Parts(p) => {
            let target = with_query(p.uri.query());
            let mut uri = p.uri.clone().into_parts();
            uri.path_and_query = Some(target.parse().map_err(|_| PathError::BadEscape)?);
            p.uri = Uri::from_parts(uri).map_err(|_| PathError::BadEscape)?;
        }
    }
    Ok(head)
}

//! Phase 1, admit. What a request must be before it is routed, on both HTTP/1.1 paths and h2: one `Host`
//! (RFC 9112 §3.2), an h2 `host` that agrees with `:authority` (RFC 9113 §8.3.1), a target within
//! `limits.uri`, and a path in normal form ([`crate::route::path`]), written back into the
//! target that is forwarded, so routing and the server see the same path.
//!
//! And who the client is ([`client`]), computed once: the address that `ip_allow`, `ClientIP`,
//! hashing on the client and the access log all read.

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{header, StatusCode, Uri, Version};

use crate::headers::{self, Peer, ReadFields};
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

/// The client's address: the peer's, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is not one (the first hop a trusted proxy did not add). A
/// malformed entry ends the walk at the peer: a client cannot pass an address through a proxy
/// that Tether does not trust.
#[inline]
pub(super) fn client(
    peer: &Peer,
    head: &RequestHead,
    trusted: &[tether_model::file_config::Cidr],
) -> std::net::IpAddr {
    if !peer.trusted {
        return peer.ip;
    }
    forwarded_client(peer, head, trusted)
}

/// [`client`] for a trusted peer: the walk through `X-Forwarded-For`.
#[inline(never)]
fn forwarded_client(
    peer: &Peer,
    head: &RequestHead,
    trusted: &[tether_model::file_config::Cidr],
) -> std::net::IpAddr {
    let mut client = peer.ip;
    let values: Vec<&[u8]> = head.values("x-forwarded-for").collect();
    for v in values.iter().rev() {
        let Ok(v) = std::str::from_utf8(v) else {
            return client;
        };
        for entry in v.rsplit(',') {
            let entry = entry.trim();
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !headers::is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_entry(e: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return Some(ip.to_canonical());
    }
    e.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::file_config::Cidr;

    fn head(xff: &[&str]) -> RequestHead {
        let mut b = http::Request::builder().uri("/");
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        RequestHead::Parts(Box::new(b.body(()).unwrap().into_parts().0))
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy = Peer::new("10.0.0.2:1000".parse().unwrap(), &trusted);
        let stranger = Peer::new("203.0.113.9:1000".parse().unwrap(), &trusted);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // A stranger's own field is never believed.
        assert_eq!(
            client(&stranger, &head(&["1.1.1.1"]), &trusted),
            ip("203.0.113.9")
        );
        // Through trusted proxies, the rightmost address they did not add.
        assert_eq!(
            client(
                &proxy,
                &head(&["6.6.6.6, 198.51.100.7, 10.0.0.9"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&proxy, &head(&["6.6.6.6", "198.51.100.7:443"]), &trusted),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at what is known.
        assert_eq!(
            client(&proxy, &head(&["nonsense, 10.0.0.9"]), &trusted),
            ip("10.0.0.9")
        );
        assert_eq!(client(&proxy, &head(&[]), &trusted), ip("10.0.0.2"));
    }
}

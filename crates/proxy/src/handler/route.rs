//! Phase 3, route: the host the request names, and the route it takes on its entrypoint.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use tether_model::rule::RequestView;

use crate::headers;
use crate::request::RequestHead;
use crate::route::router::RouteEntry;
use crate::route::table::RoutingTable;

/// Where the request names its host: the URI's authority (HTTP/2, absolute-form) or the `Host`
/// header. A cheap handle (a reference count), so the host can be borrowed from it while the
/// request's headers are rewritten.
pub(super) enum HostSource {
    Authority(http::uri::Authority),
    Header(HeaderValue),
    Received(bytes::Bytes),
}

impl HostSource {
    pub(super) fn of(head: &RequestHead) -> Option<HostSource> {
        match head {
            RequestHead::Parts(parts) => match parts.uri.authority() {
                Some(a) => Some(HostSource::Authority(a.clone())),
                None => headers::first(&parts.headers, &header::HOST)
                    .cloned()
                    .map(HostSource::Header),
            },
            RequestHead::Received(r) => r.host_bytes().map(HostSource::Received),
        }
    }

    /// The host, lower case and without port; `None` if malformed.
    pub(super) fn host(&self) -> Option<Cow<'_, str>> {
        match self {
            HostSource::Authority(a) => crate::route::host::parse(a.as_str().as_bytes()),
            HostSource::Header(v) => crate::route::host::parse(v.as_bytes()),
            HostSource::Received(b) => crate::route::host::parse(b),
        }
    }
}

/// The route `head` takes on entrypoint `ep`.
pub(super) fn lookup<'t>(
    table: &'t RoutingTable,
    ep: usize,
    head: &RequestHead,
    host: &str,
    client: std::net::IpAddr,
) -> Option<&'t RouteEntry> {
    table.routers.get(ep).and_then(|r| {
        r.find(&RequestView {
            host,
            path: head.path(),
            method: head.method(),
            headers: head,
            client,
        })
    })
}

//! A request's head as the handler sees it: `http` parts with a header map (requests hyper
//! parsed: h2c, and HTTP/1.1 that [`crate::front`] hands over), or the head Tether's own HTTP/1.1
//! server received, kept as it came ([`Received`]): positions in its bytes, its fields sorted by
//! what Tether does with them while they were parsed. A received head is never turned into a
//! header map; routing, affinity and forwarding read it in place ([`ReadFields`]), and the
//! request encoder copies its fields through ([`crate::upstream::exchange::Outgoing::received`]).

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Version};
use tether_model::rule::HeaderLookup;

use crate::headers::{Either, ReadFields};
use crate::http1::fields::{self, Fields, Mask, Span};

/// A request head, however it arrived. Boxed: a request's future moves its head several times.
#[derive(Debug)]
pub enum RequestHead {
    Parts(Box<http::request::Parts>),
    Received(Box<Received>),
}

impl RequestHead {
    pub fn method(&self) -> &Method {
        match self {
            RequestHead::Parts(p) => &p.method,
            RequestHead::Received(r) => &r.method,
        }
    }

    /// The request target as sent (origin-form path and query, or an absolute URI).
    pub fn target(&self) -> &str {
        match self {
            RequestHead::Parts(p) => p.uri.path_and_query().map_or("/", |p| p.as_str()),
            RequestHead::Received(r) => r.target.as_str(),
        }
    }

    pub fn version(&self) -> Version {
        match self {
            RequestHead::Parts(p) => p.version,
            RequestHead::Received(r) => r.version,
        }
    }

    /// The request target's path (no query).
    pub fn path(&self) -> &str {
        match self {
            RequestHead::Parts(p) => p.uri.path(),
            RequestHead::Received(r) => r.target.path(),
        }
    }
}

impl ReadFields for RequestHead {
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        match self {
            RequestHead::Parts(p) => Either::A(ReadFields::values(&p.headers, name)),
            RequestHead::Received(r) => Either::B(r.values(name)),
        }
    }
}

impl HeaderLookup for RequestHead {
    fn has_value(&self, name: &str, value: &[u8]) -> bool {
        self.values(name).any(|v| v == value)
    }
}

pub use crate::http1::request::{kind, Kind, TWO_HOSTS};

/// A request head as Tether's own HTTP/1.1 server received it, and its body if read whole.
#[derive(Debug)]
pub struct Received {
    /// Head and body.
    pub message: Bytes,
    pub head_len: usize,
    pub method: Method,
    /// Origin-form; validated as `http` validates it, sharing `message`.
    pub target: PathAndQuery,
    pub version: Version,
    /// Hop-by-hop fields (and those `Connection` names) are marked dropped.
    pub fields: Fields,
    /// The `X-Forwarded-For` and `Forwarded` fields.
    pub forwarded_for: Mask,
    /// The other [`Kind::Forwarding`] fields.
    pub forwarding: Mask,
    /// The `Cookie` fields.
    pub cookies: Mask,
    /// Index of the first `Host` field.
    pub host: Option<u8>,
    /// The value of `Content-Length`, if one was sent.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`: the body is not in `message` but follows, decoded as it
    /// arrives.
    pub chunked: bool,
}

impl Received {
    /// The head's bytes.
    pub fn head(&self) -> &[u8] {
        &self.message[..self.head_len]
    }

    /// The value of the first `Host` field.
    pub fn host_value(&self) -> Option<&[u8]> {
        let i = usize::from(self.host?);
        self.fields.iter(self.head()).nth(i).map(|(_, v)| v)
    }

    /// The first `Host` value as shared bytes (a reference count, no copy).
    pub fn host_bytes(&self) -> Option<Bytes> {
        let v = self.host_value()?;
        let span: Span = fields::span(&self.message, v);
        Some(self.message.slice(fields::range(span)))
    }
}

impl ReadFields for Received {
    /// The fields sorted while the head was scanned (Cookie, X-Forwarded-For) are picked by their
    /// mask, without a name compared; any other name is looked for.
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        let sorted = match kind(name.as_bytes()) {
            Kind::Cookie => Some(self.cookies),
            Kind::ForwardedFor => Some(self.forwarded_for),
            _ => None,
        };
        let all = self.fields.iter(self.head()).enumerate();
        match sorted {
            // The forwarded-for mask holds `Forwarded` too, a name of another length.
            Some(mask) => Either::A(
                all.filter(move |(i, (n, _))| mask.contains(*i) && n.len() == name.len())
                    .map(|(_, (_, v))| v),
            ),
            None => Either::B(
                all.filter(move |(_, (n, _))| n.eq_ignore_ascii_case(name.as_bytes()))
                    .map(|(_, (_, v))| v),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_name_is_known_in_any_case() {
        for (name, k) in [
            ("Host", Kind::Host),
            ("COOKIE", Kind::Cookie),
            ("te", Kind::HopByHop),
            ("Trailer", Kind::HopByHop),
            ("Keep-Alive", Kind::HopByHop),
            ("Proxy-Connection", Kind::HopByHop),
            ("Proxy-Authenticate", Kind::HopByHop),
            ("Proxy-Authorization", Kind::HopByHop),
            ("Connection", Kind::Connection),
            ("Content-Length", Kind::ContentLength),
            ("X-Forwarded-For", Kind::ForwardedFor),
            ("Forwarded", Kind::ForwardedFor),
            ("X-Real-IP", Kind::Forwarding),
            ("X-Forwarded-Host", Kind::Forwarding),
            ("x-forwarded-proto", Kind::Forwarding),
            ("Transfer-Encoding", Kind::TransferEncoding),
            ("Expect", Kind::NotHere),
            ("Upgrade", Kind::NotHere),
            ("Accept", Kind::Other),
            ("x-forwarded-port", Kind::Other),
            ("hosts", Kind::Other),
        ] {
            assert_eq!(kind(name.as_bytes()), k, "{name}");
        }
    }
}

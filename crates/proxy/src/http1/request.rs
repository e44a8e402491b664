//! Request heads as clients send them, scanned with `httparse` in the connection's buffer: where
//! each field lies, the fields Tether acts on sorted by what it does with them, and whether Tether's
//! own HTTP/1.1 server takes the request or hands it to hyper (or refuses it). Part of the HTTP/1
//! codec: it knows nothing of routing.

use std::mem::MaybeUninit;

use http::{StatusCode, Version};
use tether_model::file_config::Limits;

use super::fields::{self, Fields, Known, Mask, Span};

/// Largest request body read whole with its head; a larger one is streamed by hyper (a chunked
/// one is streamed by `front`).
pub const MAX_WHOLE_BODY: usize = 64 * 1024;
/// Most header fields in a request served by Tether's own server (hyper takes `limits.headers`).
pub const MAX_HEADERS: usize = 64;

/// The answer to a request with more than one `Host` field (RFC 9112 §3.2).
pub const TWO_HOSTS: &str = "more than one Host field";

/// What Tether does with a received request field, known from its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Other,
    Host,
    Cookie,
    ContentLength,
    /// `Connection`: hop-by-hop, and its options name more.
    Connection,
    /// Hop-by-hop (RFC 9110 §7.6.1), never passed on.
    HopByHop,
    /// `X-Forwarded-For`, `Forwarded`: a trusted proxy's value is extended, anyone else's
    /// replaced.
    ForwardedFor,
    /// `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host`: passed on only from a trusted proxy.
    Forwarding,
    /// `Transfer-Encoding`: `chunked` alone, once, in HTTP/1.1, is decoded by `front`; any
    /// other coding goes to hyper.
    TransferEncoding,
    /// `Expect`, `Upgrade`: such a request is not served by `front`.
    NotHere,
}

/// The kind of request field `name` (any case).
pub fn kind(name: &[u8]) -> Kind {
    match fields::known(name) {
        Known::Host => Kind::Host,
        Known::Cookie => Kind::Cookie,
        Known::ContentLength => Kind::ContentLength,
        Known::Connection => Kind::Connection,
        Known::HopByHop => Kind::HopByHop,
        Known::ForwardedFor => Kind::ForwardedFor,
        Known::Forwarding => Kind::Forwarding,
        Known::TransferEncoding => Kind::TransferEncoding,
        Known::Expect | Known::Upgrade => Kind::NotHere,
        Known::Date | Known::CacheControl | Known::Other => Kind::Other,
    }
}

/// A request this server does not take (see the module documentation).
#[derive(Debug)]
pub enum NotHere {
    /// hyper's to serve.
    Hyper,
    /// Nobody's: refused with this status.
    Refuse(StatusCode, &'static str),
}

pub const TOO_LARGE: StatusCode = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
pub const HEAD_TOO_LARGE: &str = "the request head is over limits.head";

/// A request head found complete in the buffer, as positions in it.
pub struct Scan {
    pub head_len: usize,
    pub body_len: usize,
    pub method: Span,
    pub target: Span,
    pub version: Version,
    pub keep_alive: bool,
    pub is_head: bool,
    pub sorted: Sorted,
}

/// The fields Tether acts on, found while the head was scanned.
#[derive(Default)]
pub struct Sorted {
    pub hop_by_hop: Mask,
    pub forwarded_for: Mask,
    pub forwarding: Mask,
    pub cookies: Mask,
    pub host: Option<u8>,
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`: the body follows the head in chunks.
    pub chunked: bool,
}

/// Look for a complete request head at the front of `buf` (`None`: not all there yet) and decide
/// whether it is served here; where its header fields lie goes to `fields`.
///
/// Its fields are valid for the `http` types once `httparse` has taken them (as hyper relies on
/// too): names are tokens, values hold no control characters but tab.
pub fn scan(buf: &[u8], fields: &mut Fields, limits: &Limits) -> Result<Option<Scan>, NotHere> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(NotHere::Hyper),
    };
    let (Some(method), Some(target), Some(v)) = (req.method, req.path, req.version) else {
        return Err(NotHere::Hyper);
    };
    if !target.starts_with('/') || method == "CONNECT" {
        return Err(NotHere::Hyper);
    }
    if req.headers.len() > limits.headers {
        return Err(NotHere::Refuse(TOO_LARGE, "too many header fields"));
    }
    let version = if v == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut sorted = Sorted::default();
    let (mut close, mut keep) = (false, false);
    for (i, h) in req.headers.iter().enumerate() {
        let bit = Mask::of(i);
        match kind(h.name.as_bytes()) {
            Kind::Other => {}
            Kind::Host => {
                if sorted.host.is_some() {
                    // RFC 9112 §3.2: a server that routes on the first and one that reads the
                    // last would act for different hosts.
                    return Err(NotHere::Refuse(StatusCode::BAD_REQUEST, TWO_HOSTS));
                }
                sorted.host = Some(i as u8);
            }
            Kind::Cookie => sorted.cookies |= bit,
            Kind::ContentLength => {
                match (sorted.content_length, super::response::digits(h.value)) {
                    (None, Some(l)) if l <= MAX_WHOLE_BODY as u64 => {
                        sorted.content_length = Some(l)
                    }
                    _ => return Err(NotHere::Hyper),
                }
            }
            Kind::Connection => {
                sorted.hop_by_hop |= bit;
                for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    let is = |o: &[u8]| t.eq_ignore_ascii_case(o);
                    close |= is(b"close");
                    keep |= is(b"keep-alive");
                    let named_dropped = matches!(kind(t), Kind::HopByHop);
                    if !(is(b"close") || is(b"keep-alive") || t.is_empty() || named_dropped) {
                        // An upgrade, or options naming other fields (rare): hyper's way.
                        return Err(NotHere::Hyper);
                    }
                }
            }
            Kind::HopByHop => sorted.hop_by_hop |= bit,
            Kind::ForwardedFor => sorted.forwarded_for |= bit,
            Kind::Forwarding => sorted.forwarding |= bit,
            Kind::TransferEncoding => {
                let chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                if sorted.chunked || !chunked || version != Version::HTTP_11 {
                    return Err(NotHere::Hyper);
                }
                sorted.chunked = true;
                sorted.hop_by_hop |= bit;
            }
            Kind::NotHere => return Err(NotHere::Hyper),
        }
    }
    if sorted.chunked && sorted.content_length.is_some() {
        // Both framings (CL.TE): hyper's answer, as for every other ambiguous body.
        return Err(NotHere::Hyper);
    }
    fields.record(buf, req.headers);
    Ok(Some(Scan {
        head_len,
        body_len: sorted.content_length.unwrap_or(0) as usize,
        method: fields::span(buf, method.as_bytes()),
        target: fields::span(buf, target.as_bytes()),
        version,
        // RFC 9112 §9.3: HTTP/1.1 persists unless closed; HTTP/1.0 only when asked to.
        keep_alive: !close && (version == Version::HTTP_11 || keep),
        is_head: method == "HEAD",
        sorted,
    }))
}

//! Response heads as servers send them: parsed with `httparse` into shared slices of the read
//! buffer, their framing (length, chunked, until close) and connection read off the fields, the
//! hop-by-hop fields marked dropped. Part of the HTTP/1 codec: it knows nothing of routing.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::{response, StatusCode, Version};

use super::chunked;
use super::fields::{self, Fields, Known, Mask, Refused};

/// Largest response head accepted from a server (bytes).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in one response head.
const MAX_HEADERS: usize = fields::MAX_FIELDS;

/// A response head that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Parse(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("invalid response: {0}")]
    Invalid(&'static str),
}

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
    /// Everything until the server closes the connection (responses only).
    UntilClose,
}

/// A response head as the server sent it, and how to read what follows.
#[derive(Debug)]
pub struct Head {
    /// Status (and an unusual reason phrase); no header fields: those are in `fields`.
    pub parts: response::Parts,
    pub fields: ServerFields,
    pub framing: Framing,
    /// The connection may carry another request once the body has been read.
    pub keep_alive: bool,
}

/// A server's response header fields as it sent them, the hop-by-hop ones marked dropped: Tether's
/// own HTTP/1.1 server writes them through ([`ServerFields::write`]); anything else takes them as
/// a header map ([`ServerFields::to_map`]).
#[derive(Debug)]
pub struct ServerFields {
    head: Bytes,
    fields: Fields,
    /// The Content-Length passed on, if any.
    pub content_length: Option<u64>,
    pub has_date: bool,
    pub has_cache_control: bool,
}

impl ServerFields {
    /// Leave out every field whose name `drop` picks (a response header rule replaces it).
    pub fn drop_where(&mut self, drop: impl Fn(&[u8]) -> bool) {
        let mut mask = Mask::NONE;
        for (i, (name, _)) in self.fields.iter(&self.head).enumerate() {
            if drop(name) {
                mask |= Mask::of(i);
            }
        }
        self.fields.drop_fields(mask);
        if drop(b"content-length") {
            self.content_length = None;
        }
        if drop(b"date") {
            self.has_date = false;
        }
        if drop(b"cache-control") {
            self.has_cache_control = false;
        }
    }

    /// The values of the fields named `name` (lower case) that are passed on.
    pub fn values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + 's {
        self.fields
            .kept_iter(&self.head)
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Append the fields passed on to a head being written.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.fields.write(&self.head, out);
    }

    /// The fields passed on, as a header map.
    pub fn to_map(&self) -> Result<HeaderMap, HeadError> {
        self.fields.to_map(&self.head).map_err(|r| match r {
            Refused::Name => HeadError::Invalid("header name"),
            Refused::Value => HeadError::Invalid("header value"),
        })
    }
}

/// Parse a response head from the front of `buf`, consuming it; `None` if incomplete.
pub fn parse_head(buf: &mut BytesMut, is_head: bool) -> Result<Option<Head>, HeadError> {
    let mut fields = Fields::new();
    let (len, code, version, reason) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Parse(e)),
        };
        let reason = res
            .reason
            .filter(|r| !r.is_empty())
            .map(|r| fields::span(buf, r.as_bytes()));
        let version = if res.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        fields.record(buf, res.headers);
        (len, res.code.unwrap_or(0), version, reason)
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid("status code"))?;
    let said = inspect(&head, &mut fields)?;
    let mut keep_alive = if version == Version::HTTP_10 {
        said.keep_alive
    } else {
        !said.close
    };
    let framing = if is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if let Some(chunked) = said.chunked {
        if chunked {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::UntilClose
        }
    } else if let Some(n) = said.length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    let mut parts = response::Response::new(()).into_parts().0;
    parts.status = status;
    // Tether answers its clients in its own HTTP version, whatever the server spoke.
    parts.version = Version::HTTP_11;
    if let Some(r) = reason.map(fields::range) {
        if status.canonical_reason().map(str::as_bytes) != Some(&head[r.clone()]) {
            if let Ok(p) = hyper::ext::ReasonPhrase::try_from(head.slice(r)) {
                parts.extensions.insert(p);
            }
        }
    }
    Ok(Some(Head {
        parts,
        fields: ServerFields {
            head,
            fields,
            content_length: said.passed_length,
            has_date: said.has_date,
            has_cache_control: said.has_cache_control,
        },
        framing,
        keep_alive,
    }))
}

/// What a response's header fields say about its framing and its connection.
#[derive(Debug, Default)]
struct Said {
    /// Content-Length (several fields, or a list, must all agree: RFC 9110 §8.6).
    length: Option<u64>,
    /// Transfer-Encoding given: is its last coding `chunked`?
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
    /// The Content-Length passed on to the client (none if Transfer-Encoding overrides it).
    passed_length: Option<u64>,
    has_date: bool,
    has_cache_control: bool,
}

/// The non-empty elements of a comma-separated field value (RFC 9110 §5.6.1).
fn list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Read the fields that frame the response and mark the ones that must not reach the client
/// dropped: hop-by-hop fields, those the `Connection` header names, and a Content-Length that
/// Transfer-Encoding overrides (RFC 9112 §6.3).
fn inspect(head: &[u8], fields: &mut Fields) -> Result<Said, HeadError> {
    let mut said = Said::default();
    let (mut dropped, mut lengths) = (Mask::NONE, Mask::NONE);
    let mut named: Vec<&[u8]> = Vec::new();
    for (i, (name, value)) in fields.iter(head).enumerate() {
        match fields::known(name) {
            Known::ContentLength => {
                lengths |= Mask::of(i);
                for t in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    let n = digits(t).ok_or(HeadError::Invalid("Content-Length"))?;
                    if said.length.is_some_and(|l| l != n) {
                        return Err(HeadError::Invalid("Content-Length"));
                    }
                    said.length = Some(n);
                }
            }
            Known::TransferEncoding => {
                dropped |= Mask::of(i);
                match list(value).last() {
                    Some(last) => said.chunked = Some(last.eq_ignore_ascii_case(b"chunked")),
                    None => said.chunked = Some(said.chunked.unwrap_or(false)),
                }
            }
            Known::Connection => {
                dropped |= Mask::of(i);
                for t in list(value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        said.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        said.keep_alive = true;
                    } else {
                        named.push(t);
                    }
                }
            }
            Known::Date => said.has_date = true,
            Known::CacheControl => said.has_cache_control = true,
            Known::HopByHop | Known::Upgrade => dropped |= Mask::of(i),
            _ => {}
        }
    }
    if said.chunked.is_some() {
        dropped |= lengths;
    }
    if !named.is_empty() {
        for (i, (name, _)) in fields.iter(head).enumerate() {
            if named.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                dropped |= Mask::of(i);
                said.has_date &= !name.eq_ignore_ascii_case(b"date");
                said.has_cache_control &= !name.eq_ignore_ascii_case(b"cache-control");
            }
        }
    }
    if lengths.leaves(dropped) {
        said.passed_length = said.length;
    }
    fields.drop_fields(dropped);
    Ok(said)
}

/// A non-empty run of ASCII digits as a number (no sign, no spaces, no overflow).
pub fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// For the fuzz target and its corpus: parse a response head, then decode what follows as a
/// chunked body, as the client side would. Panics on a broken invariant.
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = parse_head(&mut buf, false) {
        assert!(buf.len() < data.len(), "a head consumes bytes");
        let _ = head.fields.to_map();
    }
    let mut buf = BytesMut::from(data);
    let mut decoder = chunked::Decoder::default();
    let mut out = 0usize;
    while let Ok(chunked::Step::Data(d)) = decoder.step(&mut buf) {
        assert!(!d.is_empty());
        out += d.len();
    }
    assert!(out <= data.len(), "decoding never yields more than came in");
}

//! `compress`: the request phase picks the encoding (the client's `Accept-Encoding` q-values
//! among the middleware's `encodings`, ties to the middleware's order; none for `HEAD`) and
//! leaves it in the request's meter; the response phase ([`respond`]) decides on the response's
//! own fields whether to compress, edits them, and wraps the body ([`Compressing`]), which
//! compresses frame by frame as the server's body comes: never held whole. When the server
//! pauses, what came so far is flushed, so a slow stream reaches the client as it comes.
//!
//! Counted for each route and middleware: compressed responses by status (in
//! `tether_middleware_responses_total`) and the bytes saved.

mod encoder;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::{Body, Frame};
use tether_model::middleware::{Compress as Decl, Encoding};

use super::{AnswerCounts, Flow, Request};
use crate::headers::ReadFields as _;
use crate::http1::response::ServerFields;
use crate::upstream::body::ProxyBody;
use crate::upstream::exchange::WireError;

pub use encoder::Encoder;

/// A route's compress middleware.
#[derive(Debug)]
pub struct Compress {
    cfg: Arc<Config>,
}

#[derive(Debug)]
pub struct Config {
    decl: Decl,
    counts: Arc<AnswerCounts>,
}

/// What the request phase chose: compress the response in `encoding`, if it qualifies.
#[derive(Debug, Clone)]
pub struct Chosen {
    cfg: Arc<Config>,
    encoding: Encoding,
}

impl Compress {
    pub fn new(decl: &Decl, counts: Arc<AnswerCounts>) -> Compress {
        Compress {
            cfg: Arc::new(Config {
                decl: decl.clone(),
                counts,
            }),
        }
    }

    pub fn request(&self, r: &mut Request<'_, '_>) -> Flow {
        if *r.head.method() == Method::HEAD {
            return Flow::Next;
        }
        let accepted = r.head.values("accept-encoding");
        if let Some(encoding) = negotiate(&self.cfg.decl.encodings, accepted) {
            *r.encode = Some(Chosen {
                cfg: self.cfg.clone(),
                encoding,
            });
        }
        Flow::Next
    }
}

/// The encoding among `ours` (in order of preference) that the `Accept-Encoding` values rate
/// highest, ties to `ours`' order; `None` when the client takes none of them (or sent none).
pub fn negotiate<'v>(
    ours: &[Encoding],
    values: impl Iterator<Item = &'v [u8]>,
) -> Option<Encoding> {
    // q in thousandths, per encoding of ours; `*` for the others.
    let mut q: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let index = |e: Encoding| Encoding::ALL.iter().position(|x| *x == e).unwrap_or(0);
    for v in values {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            let mut weight = 1000u16;
            for p in parts {
                if let Some(x) = p
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                {
                    weight = qvalue(x).unwrap_or(0);
                }
            }
            if token == "*" {
                star = Some(weight);
            } else if let Some(e) = Encoding::parse(token) {
                let slot = &mut q[index(e)];
                *slot = Some(slot.map_or(weight, |w| w.max(weight)));
            } else if token.eq_ignore_ascii_case("x-gzip") {
                let slot = &mut q[index(Encoding::Gzip)];
                *slot = Some(slot.map_or(weight, |w| w.max(weight)));
            }
        }
    }
    let mut best: Option<(Encoding, u16)> = None;
    for &e in ours {
        let w = q[index(e)].or(star).unwrap_or(0);
        if w > 0 && best.is_none_or(|(_, b)| w > b) {
            best = Some((e, w));
        }
    }
    best.map(|(e, _)| e)
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_n: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_n),
        "1" if frac_n == 0 => Some(1000),
        _ => None,
    }
}

/// A response's fields, as the server sent them (`server`) and as Tether set them (`headers`).
struct Fields<'a> {
    headers: &'a mut HeaderMap,
    server: Option<&'a mut ServerFields>,
}

impl Fields<'_> {
    fn first<'s>(&'s self, name: &'s header::HeaderName) -> Option<&'s [u8]> {
        if let Some(v) = self.headers.get(name) {
            return Some(v.as_bytes());
        }
        self.server
            .as_deref()
            .and_then(|s| s.values(name.as_str().as_bytes()).next())
    }

    fn all(&self, name: &header::HeaderName) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .server
            .as_deref()
            .map(|s| {
                s.values(name.as_str().as_bytes())
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default();
        out.extend(
            self.headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes().to_vec()),
        );
        out
    }

    fn remove(&mut self, name: &header::HeaderName) {
        self.headers.remove(name);
        if let Some(s) = self.server.as_deref_mut() {
            let n = name.as_str().as_bytes();
            s.drop_where(|f| f.eq_ignore_ascii_case(n));
        }
    }
}

/// Why a response is left as it is, or `None` when it is compressed.
fn skipped(d: &Decl, status: StatusCode, f: &Fields<'_>) -> Option<&'static str> {
    if !status.is_success()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
    {
        return Some("status");
    }
    if f.first(&header::CONTENT_ENCODING)
        .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        return Some("already encoded");
    }
    if f.first(&header::CONTENT_RANGE).is_some() {
        return Some("partial");
    }
    if f.all(&header::CACHE_CONTROL).iter().any(|v| {
        String::from_utf8_lossy(v)
            .to_ascii_lowercase()
            .contains("no-transform")
    }) {
        return Some("no-transform");
    }
    let Some(ct) = f.first(&header::CONTENT_TYPE) else {
        return Some("no type");
    };
    let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if !d.compresses_type(media) {
        return Some("type");
    }
    if !d.compress_with_cookies && f.first(&header::SET_COOKIE).is_some() {
        return Some("sets a cookie");
    }
    if let Some(len) = f
        .first(&header::CONTENT_LENGTH)
        .and_then(crate::http1::response::digits)
    {
        if len < d.min_size {
            return Some("small");
        }
    }
    None
}

/// The response phase: compress the response in `chosen`'s encoding if it qualifies, editing
/// its fields (`Content-Encoding`, `Vary`, no `Content-Length`, a strong `ETag` weakened).
/// `server`'s own fields may be edited too; the pin fields are Tether's and stay.
pub fn respond(
    chosen: Chosen,
    status: StatusCode,
    headers: &mut HeaderMap,
    server: Option<&mut ServerFields>,
    body: ProxyBody,
) -> ProxyBody {
    let mut f = Fields { headers, server };
    let d = &chosen.cfg.decl;
    // The fields a response arrived with cannot have `Content-Length` from Tether's map and
    // the server at once; the server's is read through `server`.
    let server_length = f.server.as_deref().and_then(|s| s.content_length);
    if server_length.is_some_and(|n| n < d.min_size) {
        return body;
    }
    if skipped(d, status, &f).is_some() {
        return body;
    }
    let level = d.level(chosen.encoding);
    let Ok(encoder) = Encoder::new(chosen.encoding, level) else {
        return body;
    };
    f.remove(&header::CONTENT_LENGTH);
    f.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(chosen.encoding.token()),
    );
    // Vary: the server's, plus Accept-Encoding.
    let vary = f.all(&header::VARY);
    let listed = vary.iter().any(|v| {
        String::from_utf8_lossy(v)
            .split(',')
            .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
    });
    if !listed {
        let mut joined: Vec<u8> = Vec::new();
        for v in &vary {
            joined.extend_from_slice(v.trim_ascii());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(b"Accept-Encoding");
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            f.remove(&header::VARY);
            f.headers.insert(header::VARY, v);
        }
    }
    // A strong ETag names these exact bytes, which the client no longer gets.
    if let Some(tag) = f.first(&header::ETAG).map(<[u8]>::to_vec) {
        if !tag.starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.trim_ascii());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                f.remove(&header::ETAG);
                f.headers.insert(header::ETAG, v);
            }
        }
    }
    chosen.cfg.counts.count(status.as_u16());
    ProxyBody::compressed(Compressing {
        inner: body,
        encoder: Some(encoder),
        unflushed: false,
        bytes_in: 0,
        bytes_out: 0,
        counts: chosen.cfg.counts.clone(),
    })
}

/// A body compressed as it is read.
pub struct Compressing {
    inner: ProxyBody,
    /// `None` once finished.
    encoder: Option<Encoder>,
    /// Data written to the encoder since the last flush.
    unflushed: bool,
    bytes_in: u64,
    bytes_out: u64,
    counts: Arc<AnswerCounts>,
}

impl Compressing {
    fn out(&mut self, b: Bytes) -> Option<Frame<Bytes>> {
        self.bytes_out += b.len() as u64;
        (!b.is_empty()).then(|| Frame::data(b))
    }

    fn io(e: std::io::Error) -> WireError {
        WireError::Io(e)
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        loop {
            let Some(enc) = self.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on (an HTTP/1.1 server seldom sends them).
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.bytes_in += data.len() as u64;
                    let out = enc.write(&data).map_err(Self::io)?;
                    self.unflushed = true;
                    if let Some(f) = self.out(out) {
                        return Poll::Ready(Some(Ok(f)));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    let enc = self.encoder.take().expect("present");
                    let out = enc.finish().map_err(Self::io)?;
                    let frame = self.out(out);
                    let saved = self.bytes_in.saturating_sub(self.bytes_out);
                    self.counts.saved(saved);
                    return Poll::Ready(frame.map(Ok));
                }
                Poll::Pending => {
                    if !self.unflushed {
                        return Poll::Pending;
                    }
                    // The server pauses: what came so far goes out, decodable.
                    self.unflushed = false;
                    let out = enc.flush().map_err(Self::io)?;
                    return match self.out(out) {
                        Some(f) => Poll::Ready(Some(Ok(f))),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(ours: &[Encoding], accept: &str) -> Option<Encoding> {
        negotiate(ours, std::iter::once(accept.as_bytes()))
    }

    #[test]
    fn the_clients_q_values_choose_and_ties_follow_tethers_order() {
        let all = Encoding::ALL;
        assert_eq!(pick(&all, "gzip, deflate, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(pick(&all, "gzip, br"), Some(Encoding::Br));
        assert_eq!(pick(&all, "gzip;q=1.0, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick(&all, "br;q=0, gzip"), Some(Encoding::Gzip));
        assert_eq!(pick(&all, "*"), Some(Encoding::Zstd));
        assert_eq!(pick(&all, "*;q=0.1, gzip;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick(&all, "identity"), None);
        assert_eq!(pick(&all, "gzip;q=0"), None);
        assert_eq!(pick(&all, "gzip;q=2"), None, "an invalid q-value is 0");
        assert_eq!(pick(&[Encoding::Gzip], "br, zstd"), None);
        assert_eq!(
            pick(&[Encoding::Gzip, Encoding::Br], "br, gzip"),
            Some(Encoding::Gzip)
        );
        assert_eq!(pick(&all, "x-gzip"), Some(Encoding::Gzip));
        assert_eq!(negotiate(&all, std::iter::empty()), None);
    }

    #[test]
    fn q_values_are_read_to_the_thousandth() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("0.0001"), None);
        assert_eq!(qvalue("1.5"), None);
    }
}

//! Tether's own HTTP/1.1 server for the requests nearly all traffic is made of: a head, and a
//! body of known length that arrives with it (or none), or a chunked body. The head is parsed with
//! `httparse` in the connection's buffer, the request goes to the [`handler`] in the connection's
//! own task, and the response is written back in one `write` when its body is at hand (head and
//! body together). An idle connection holds no buffer at all.
//!
//! A chunked body is decoded here, strictly ([`chunked`]: a chunk line of at most 4 KiB, no bare
//! CR, LF or NUL in it), as it arrives, while the handler runs: the pieces go to the request
//! through a [`pipe`], and a malformed body ends the exchange with 400 and the server's
//! connection closed.
//!
//! Anything else is handed, with every byte not answered yet, to hyper's HTTP/1.1 server for the
//! rest of the connection ([`Ended::Handoff`]): a large body of known length, another transfer
//! coding, `Expect`, an upgrade, a request target that is not origin-form, `CONNECT`, more than
//! [`MAX_HEADERS`] header fields, or a head that `httparse` or the `http` types refuse. Malformed
//! input therefore gets exactly the answer hyper gives it (400, 431, …) and never reaches a
//! server.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Version};
use hyper::body::Body;
use tether_balance::state::now_ms;
use tether_model::file_config::Limits;

use crate::answer::{Answer, PinFields};
use crate::front::spare;
use crate::front::stream::Tracked;
use crate::handler::{self, Shared};
use crate::headers::Peer;
use crate::http1::chunked;
use crate::http1::fields::{self, Fields};
use crate::http1::request::{scan, NotHere, Scan, Sorted, HEAD_TOO_LARGE, TOO_LARGE};
pub use crate::http1::request::{MAX_HEADERS, MAX_WHOLE_BODY};
use crate::idle::Activity;
use crate::request::{Received, RequestHead};
use crate::upstream::body::{pipe, BodyCut, ClientBody, ProxyBody};

/// Bytes made room for before each read.
const READ_CHUNK: usize = spare::READ_CHUNK;
/// Response bytes gathered before they are written out.
const WRITE_BATCH: usize = 64 * 1024;

/// How a connection left this server.
#[derive(Debug)]
pub enum Ended {
    /// Closed (by the client, an error, `Connection: close` or shutdown).
    Closed,
    /// A request this server does not take: these bytes (that request and all after it) and the
    /// rest of the connection go to hyper.
    Handoff(Bytes),
}

/// One client connection's context.
pub struct Front<'a> {
    pub shared: &'a Shared,
    pub ep: usize,
    pub peer: &'a Peer,
    pub activity: &'a Arc<Activity>,
}

impl Front<'_> {
    /// Serve requests from `io`, starting with the bytes in `buf`.
    pub async fn serve(&self, io: &mut Tracked, mut buf: BytesMut) -> Ended {
        loop {
            let taken = loop {
                if !buf.is_empty() {
                    match take(&mut buf, &self.shared.cfg.limits) {
                        Ok(Some(t)) => break t,
                        Ok(None) => {}
                        Err(Out::Handoff(rest)) => return Ended::Handoff(rest),
                        Err(Out::Refuse(status, detail)) => {
                            // Answered here, and the connection closed: what follows the bad
                            // head cannot be framed.
                            let resp = handler::error(status, detail).into();
                            let mut reply = encode(resp, false, Version::HTTP_11, false);
                            let _ = send(io, &mut reply).await;
                            spare::put_back(buf);
                            return Ended::Closed;
                        }
                    }
                } else if self.activity.is_stopping() {
                    spare::put_back(buf);
                    return Ended::Closed;
                }
                if !read_more(io, &mut buf).await {
                    spare::put_back(buf);
                    return Ended::Closed;
                }
            };
            let busy = self.activity.begin();
            let chunked = taken.request.chunked;
            let (sender, body) = if chunked {
                let (tx, body) = pipe();
                (Some(tx), body)
            } else {
                let r = &taken.request;
                (None, ClientBody::Whole(r.message.slice(r.head_len..)))
            };
            // Boxed: the request's future (several KiB) exists only while a request does, not in
            // the state every idle connection keeps.
            let handling = Box::pin(handler::handle(
                self.shared,
                self.ep,
                self.peer,
                RequestHead::Received(taken.request),
                body,
                Some(self.activity),
            ));
            let (resp, framed) = match sender {
                None => (handling.await, true),
                Some(tx) => Box::pin(beside(handling, pump(io, &mut buf, tx))).await,
            };
            // After a body not read to its end, the next request cannot be found.
            let keep_alive = framed && taken.keep_alive && !self.activity.is_stopping();
            // The reply lives here and the writing future only borrows it: an async fn keeps
            // its arguments for its whole life, beside the copies it works on.
            let mut reply = encode(resp, taken.is_head, taken.version, keep_alive);
            let kept = send(io, &mut reply).await;
            drop(reply);
            drop(busy);
            if !kept {
                spare::put_back(buf);
                return Ended::Closed;
            }
            if buf.is_empty() {
                // Nothing pipelined: the connection idles without a buffer.
                spare::put_back(std::mem::take(&mut buf));
            }
            // Fair to the worker's other connections: each request spends a unit of the task's
            // budget (tokio's, 128 a turn, which its reads and writes spend too), and a spent
            // budget gives the worker back. Without it, requests Tether answers itself, pipelined
            // and written at once, never suspend the task: one client held its worker for
            // 100 ms and more.
            tokio::task::consume_budget().await;
        }
    }
}

/// Run `handling` to its answer while `pumping` reads the request's body into it; the answer, and
/// whether the body was read to its end (the connection still framed). A server may answer before
/// the body is all sent: the rest is then not read.
async fn beside(
    handling: impl std::future::Future<Output = Answer>,
    pumping: impl std::future::Future<Output = bool>,
) -> (Answer, bool) {
    tokio::pin!(handling, pumping);
    let mut framed = None;
    loop {
        tokio::select! {
            biased;
            done = &mut pumping, if framed.is_none() => framed = Some(done),
            resp = &mut handling => return (resp, framed == Some(true)),
        }
    }
}

/// Decode a chunked body from the connection into `tx`, piece by piece as it is read; true once
/// it has been read to its end (what follows it stays in `buf`). The pace the body must keep is
/// the request's to enforce, on the receiving end.
async fn pump(
    io: &mut Tracked,
    buf: &mut BytesMut,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, BodyCut>>,
) -> bool {
    let mut decoder = chunked::Decoder::default();
    loop {
        let cut = match decoder.step(buf) {
            Ok(chunked::Step::Data(piece)) => {
                if tx.send(Ok(piece)).await.is_err() {
                    return false; // the request is over without the rest
                }
                continue;
            }
            Ok(chunked::Step::End) => return true,
            Ok(chunked::Step::NeedMore) if read_more(io, buf).await => continue,
            Ok(chunked::Step::NeedMore) => BodyCut::Gone,
            Err(e) => BodyCut::Malformed(e),
        };
        let _ = tx.send(Err(cut)).await;
        return false;
    }
}

/// A request taken off the connection's buffer, and what its response needs to know.
struct Taken {
    request: Box<Received>,
    keep_alive: bool,
    is_head: bool,
    version: Version,
}

/// Why a request at the front of the buffer is not served here.
enum Out {
    /// Every byte of the buffer, for hyper.
    Handoff(Bytes),
    /// Refused with this status: it never reaches a server.
    Refuse(StatusCode, &'static str),
}

/// Take the request at the front of `buf` if it is all there (`None`: read more).
fn take(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Taken>, Out> {
    let mut fields = Fields::new();
    let s = match scan(buf, &mut fields, limits) {
        // However the head arrived (in one read into a large buffer, or in many), its size is
        // checked: the limit never depends on timing.
        Ok(Some(s)) if s.head_len > limits.head => {
            return Err(Out::Refuse(TOO_LARGE, HEAD_TOO_LARGE))
        }
        Ok(Some(s)) => s,
        Ok(None) if buf.len() < limits.head => return Ok(None),
        Ok(None) => return Err(Out::Refuse(TOO_LARGE, HEAD_TOO_LARGE)),
        Err(NotHere::Hyper) => return Err(Out::Handoff(buf.split().freeze())),
        Err(NotHere::Refuse(status, detail)) => return Err(Out::Refuse(status, detail)),
    };
    // A chunked body is not taken with the head: it is decoded as it comes.
    let whole = s.head_len + s.body_len;
    if buf.len() < whole {
        return Ok(None);
    }
    let message = buf.split_to(whole).freeze();
    let request = match s.received(message, fields) {
        Ok(r) => r,
        Err(message) => {
            let mut rest = BytesMut::from(&message[..]);
            rest.extend_from_slice(buf);
            buf.clear();
            return Err(Out::Handoff(rest.freeze()));
        }
    };
    Ok(Some(Taken {
        request,
        keep_alive: s.keep_alive,
        is_head: s.is_head,
        version: s.version,
    }))
}

/// Read more of the request into `buf`; false at the end of the stream or on an error.
async fn read_more(io: &mut Tracked, buf: &mut BytesMut) -> bool {
    if buf.is_empty() && buf.capacity() == 0 {
        if io.readable().await.is_err() {
            return false;
        }
        *buf = spare::take();
    }
    buf.reserve(READ_CHUNK);
    matches!(
        poll_fn(|cx| tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf)).await,
        Ok(n) if n > 0
    )
}

impl Scan {
    /// The request as received (`message`: its head and body); `Err` gives `message` back if the
    /// `http` types refuse its method or target, as hyper would.
    fn received(&self, message: Bytes, mut fields: Fields) -> Result<Box<Received>, Bytes> {
        let Ok(method) = Method::from_bytes(&message[fields::range(self.method)]) else {
            return Err(message);
        };
        let target = message.slice(fields::range(self.target));
        let Ok(target) = PathAndQuery::from_maybe_shared(target) else {
            return Err(message);
        };
        fields.drop_fields(self.sorted.hop_by_hop);
        let Sorted {
            forwarded_for,
            forwarding,
            cookies,
            host,
            content_length,
            chunked,
            ..
        } = self.sorted;
        Ok(Box::new(Received {
            message,
            head_len: self.head_len,
            method,
            target,
            version: self.version,
            fields,
            forwarded_for,
            forwarding,
            cookies,
            host,
            content_length,
            chunked,
        }))
    }
}

/// A response on its way to the client: its head encoded, its body to follow.
struct Reply {
    /// Bytes gathered and not written yet (the head first).
    out: Vec<u8>,
    body: ProxyBody,
    framing: Framing,
    keep_alive: bool,
}

/// Write `resp` to the client; true if the connection may carry another request.
#[cfg(test)]
async fn respond(
    io: &mut Tracked,
    resp: Answer,
    is_head: bool,
    version: Version,
    keep_alive: bool,
) -> bool {
    let mut reply = encode(resp, is_head, version, keep_alive);
    send(io, &mut reply).await
}

/// Encode `resp`'s head for the client (the server's fields as they came, then Tether's).
fn encode(resp: Answer, is_head: bool, version: Version, mut keep_alive: bool) -> Reply {
    let has_date = resp.has_date();
    let declared = resp.content_length();
    let Answer {
        parts,
        server,
        pin,
        body,
    } = resp;
    let status = parts.status;
    let bodiless = is_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    if let Some(server) = &server {
        server.write(&mut out);
    }
    for (name, value) in &parts.headers {
        fields::put(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in pin.iter().flat_map(PinFields::fields) {
        fields::put(&mut out, name.as_bytes(), value);
    }
    if !has_date {
        http_date(|date| fields::put(&mut out, b"date", date));
    }
    let framing = if bodiless {
        Framing::None
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        let _ = write!(out, "content-length: {n}\r\n");
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Reply {
        out,
        body,
        framing,
        keep_alive,
    }
}

/// What [`gather`] left for its caller to do.
enum Step {
    /// Write what is gathered, then gather more.
    Flush,
    /// The body is all in `out`.
    End,
    /// The server broke off: write what came, then close.
    Broken,
}

/// Take what the body has at hand into `reply.out` without waiting; `Pending` only when nothing
/// is gathered to write meanwhile. Frames never live across an await this way.
fn gather(reply: &mut Reply, sent: &mut u64, cx: &mut std::task::Context<'_>) -> Poll<Step> {
    loop {
        if reply.body.is_end_stream() {
            return Poll::Ready(Step::End);
        }
        if reply.out.len() >= WRITE_BATCH {
            return Poll::Ready(Step::Flush);
        }
        match Pin::new(&mut reply.body).poll_frame(cx) {
            Poll::Pending if reply.out.is_empty() => return Poll::Pending,
            Poll::Pending => return Poll::Ready(Step::Flush),
            Poll::Ready(None) => return Poll::Ready(Step::End),
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body cut off");
                return Poll::Ready(Step::Broken);
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() {
                        *sent += data.len() as u64;
                        if reply.framing == Framing::Chunked {
                            chunked::put_chunk(&mut reply.out, &data);
                        } else {
                            reply.out.extend_from_slice(&data);
                        }
                    }
                }
            }
        }
    }
}

/// Write the reply's head and its body; true if the connection may carry another request.
async fn send(io: &mut Tracked, reply: &mut Reply) -> bool {
    if reply.framing == Framing::None {
        return io.write_whole(&reply.out).await.is_ok() && reply.keep_alive;
    }
    let mut sent = 0u64;
    loop {
        match poll_fn(|cx| gather(reply, &mut sent, cx)).await {
            Step::End => break,
            Step::Broken => {
                let _ = io.write_whole(&reply.out).await;
                return false;
            }
            Step::Flush => {
                if io.write_whole(&reply.out).await.is_err() {
                    return false;
                }
                reply.out.clear();
            }
        }
    }
    if reply.framing == Framing::Chunked {
        reply.out.extend_from_slice(chunked::LAST_CHUNK);
    }
    if io.write_whole(&reply.out).await.is_err() {
        return false;
    }
    match reply.framing {
        Framing::Length(n) => reply.keep_alive && sent == n,
        Framing::UntilClose => false,
        _ => reply.keep_alive,
    }
}

/// How a response body is delimited for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Hand the current time as an HTTP date to `with`, formatted once a second per thread. Between
/// formats only the coarse monotonic clock is read ([`now_ms`]): the text stands until the wall
/// clock's next second, as that clock counts it (a coarse tick late at most).
fn http_date(with: impl FnOnce(&[u8])) {
    thread_local! {
        /// The date's text and the [`now_ms`] at which the wall clock passes to the next second.
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    CACHED.with_borrow_mut(|(until_ms, text)| {
        let mono = now_ms();
        if mono >= *until_ms || text.is_empty() {
            let now = SystemTime::now();
            let into_second = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_millis()));
            *until_ms = mono + (1000 - into_second);
            *text = httpdate::fmt_http_date(now);
        }
        with(text.as_bytes());
    });
}

/// For the fuzz target and its corpus: take every request from `data` as this server would,
/// with the default limits, and check what must hold of any input. Panics on a broken invariant.
#[doc(hidden)]
pub fn fuzz_take(data: &[u8]) {
    let limits = Limits::default();
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        let before = buf.len();
        match take(&mut buf, &limits) {
            Ok(Some(t)) => {
                assert!(buf.len() < before, "a request taken consumes bytes");
                assert!(t.request.head_len <= limits.head);
                assert!(t.request.head_len <= t.request.message.len());
                assert!(t.request.target.as_str().starts_with('/'));
                if t.request.chunked {
                    // Its body follows, decoded as the connection would.
                    let mut decoder = chunked::Decoder::default();
                    loop {
                        match decoder.step(&mut buf) {
                            Ok(chunked::Step::Data(d)) => assert!(!d.is_empty()),
                            Ok(chunked::Step::End) => break,
                            Ok(chunked::Step::NeedMore) | Err(_) => return,
                        }
                    }
                }
            }
            Ok(None) => {
                assert!(buf.len() < limits.head, "more is read only below the limit");
                return;
            }
            Err(Out::Handoff(rest)) => {
                assert_eq!(rest.len(), before, "a handoff keeps every byte");
                return;
            }
            Err(Out::Refuse(status, _)) => {
                assert!(status.is_client_error());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! HTTP/1.1 to servers, driven inside the request's own task: the request head is encoded once
//! (and written again unchanged if it must go to another connection), the response head is parsed
//! with `httparse`, and the response body is read by [`BodyReader`] as the client takes it.
//!
//! hyper's client runs every connection as a task of its own and hands each request to it over a
//! channel, the response back over another and the body over a third; proxying a small request
//! that way cost more CPU than everything else Tether does for it. Here the exchange is a plain
//! function of the request's future, and a pooled connection costs no system call to check: its
//! socket is only read if epoll reported it readable while it sat idle (the server closed it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{request, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::body::{BodyCut, ClientBody};
use super::pace::{Pace, Slow};
use super::stream::Stream;
use crate::edit::RequestEdits;
use crate::headers::{CookieEdit, Forwarding};
use crate::http1::chunked::{self, ChunkedError};
use crate::http1::fields;
pub use crate::http1::io::write_whole;
use crate::http1::response::{parse_head, HeadError, MAX_HEAD};
pub use crate::http1::response::{Framing, Head, ServerFields};
use crate::request::Received;

/// Bytes made room for before each read.
const READ_CHUNK: usize = 8 * 1024;

/// Why an exchange with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection ended before any byte of a response: the server may not have seen the
    /// request at all (typically a kept-alive connection it had just closed).
    #[error("the server closed the connection without answering")]
    Closed,
    /// TCP found the connection dead before any byte of a response (unacknowledged data or
    /// keepalive probes: `TCP_USER_TIMEOUT`): the server's host does not answer, so its other
    /// connections are no better.
    #[error("the server's host stopped answering (TCP found the connection dead)")]
    Dead,
    /// The request head could not be written: the server has seen nothing it could act on.
    #[error("sending the request: {0}")]
    Unsent(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("malformed chunked response body: {0}")]
    Chunked(#[from] ChunkedError),
    #[error("reading the client's request body: {0}")]
    ClientBody(hyper::Error),
    #[error("{0}")]
    ClientBodyCut(#[from] BodyCut),
    #[error("the client's request body does not match its Content-Length")]
    BodyLength,
    #[error("{0}")]
    SlowBody(#[from] Slow),
    #[error("the request body is over its limit")]
    BodyTooLarge,
}

impl WireError {
    /// The client's fault, not the server's: the status to answer it with. The exchange ends at
    /// once and the connection to the server is closed.
    pub fn client_status(&self) -> Option<StatusCode> {
        match self {
            WireError::ClientBody(_) | WireError::ClientBodyCut(_) | WireError::BodyLength => {
                Some(StatusCode::BAD_REQUEST)
            }
            WireError::SlowBody(_) => Some(StatusCode::REQUEST_TIMEOUT),
            WireError::BodyTooLarge => Some(StatusCode::PAYLOAD_TOO_LARGE),
            _ => None,
        }
    }
}

/// An open connection to a server, with what has been read from it and not used yet.
#[derive(Debug)]
pub struct Conn {
    io: Stream,
    buf: BytesMut,
}

impl Conn {
    pub fn new(io: impl Into<Stream>) -> Conn {
        Conn {
            io: io.into(),
            buf: BytesMut::new(),
        }
    }

    /// Can this idle connection carry another request? A server that closed it (or, wrongly, sent
    /// something unasked) made its socket readable; a quiet one is used without a system call.
    pub fn is_alive(&mut self) -> bool {
        self.buf.is_empty() && self.io.is_alive()
    }

    /// The raw stream, for a connection handed over whole (not pooled).
    pub fn into_stream(self) -> Stream {
        self.io
    }
}

/// A request ready for any server: its head encoded once, its body not read yet.
#[derive(Debug)]
pub struct Outgoing {
    head: Vec<u8>,
    framing: Framing,
    body: Option<ClientBody>,
    is_head: bool,
    idempotent: bool,
    /// The pace a streamed body must keep (boxed: most requests have none).
    pace: Option<Box<Pace>>,
    /// Largest body allowed (for a streamed body, checked as it is sent).
    max_body: Option<u64>,
}

impl Outgoing {
    /// Encode `parts` (already rewritten for the server: origin-form, hop-by-hop headers gone,
    /// its middlewares' edits applied). A body of known length keeps its Content-Length; any
    /// other body goes chunked.
    pub fn new(parts: &request::Parts, forwarding: &Forwarding, body: ClientBody) -> Outgoing {
        let framing = match crate::headers::first(&parts.headers, &header::CONTENT_LENGTH) {
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                // Unreachable in practice: hyper refuses such requests before they get here.
                None => Framing::Chunked,
            },
            None if body.is_end_stream() => Framing::Empty,
            None => Framing::Chunked,
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = crate::headers::first(&parts.headers, &header::HOST);
        let mut head = request_line(&parts.method, target, host.is_some(), 256);
        let kept = parts.headers.iter().filter(|(name, _)| {
            !(forwarding.drops(name)
                || (framing == Framing::Chunked && *name == header::CONTENT_LENGTH))
        });
        for (name, value) in kept {
            fields::put(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
        forwarding.write(&mut head, host.map(HeaderValue::as_bytes));
        if framing == Framing::Chunked {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Outgoing::ended(head, framing, body, &parts.method)
    }

    /// The request whose head `head` holds (all but the blank line that ends it).
    fn ended(mut head: Vec<u8>, framing: Framing, body: ClientBody, m: &Method) -> Outgoing {
        head.extend_from_slice(b"\r\n");
        Outgoing {
            head,
            framing,
            body: (framing != Framing::Empty).then_some(body),
            is_head: m == Method::HEAD,
            // RFC 9110 §9.2.2; only ever replayed without a body.
            idempotent: matches!(
                *m,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            ),
            pace: None,
            max_body: None,
        }
    }

    /// Allow at most `max` body bytes: `false` when the declared length is over it already;
    /// a body of unknown length is cut with 413 when it goes over.
    pub fn limit_body(&mut self, max: u64) -> bool {
        match self.framing {
            Framing::Length(n) if n > max => false,
            Framing::Chunked => {
                self.max_body = Some(max);
                true
            }
            _ => true,
        }
    }

    /// A streamed body must keep this pace (a body read whole with its head has arrived already).
    pub fn pace(&mut self, timeouts: &tether_model::file_config::Timeouts) {
        if matches!(
            self.body,
            Some(ClientBody::Streamed(_) | ClientBody::Piped(_))
        ) {
            self.pace = Some(Box::new(Pace::new(timeouts)));
        }
    }

    /// Encode a request as Tether's own HTTP/1.1 server received it: its request line and fields
    /// are copied as they came, less the hop-by-hop ones, the client's forwarding fields that
    /// `forwarding` leaves out, and its Cookie fields when `cookie` edits them. Its body (none, a
    /// Content-Length's worth read whole, or a chunked body as it is decoded) follows; a chunked
    /// body is chunked afresh, its extensions and trailers left out.
    pub fn received(
        req: &Received,
        forwarding: &Forwarding,
        cookie: &CookieEdit,
        edits: &RequestEdits<'_>,
        body: ClientBody,
    ) -> Outgoing {
        let framing = match req.content_length {
            _ if req.chunked => Framing::Chunked,
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        };
        let head_bytes = req.head();
        let host = req.host_value();
        let room = head_bytes.len() + 128;
        let mut left_out = req.forwarded_for;
        if !forwarding.is_trusted() {
            left_out |= req.forwarding;
        }
        if *cookie != CookieEdit::Keep {
            left_out |= req.cookies;
        }
        let mut head = if edits.is_empty() {
            request_line(&req.method, req.target.as_str(), host.is_some(), room)
        } else {
            // Its middlewares' edits: a new path, and fields dropped (then added, below).
            left_out |= edits.mask(&req.fields, head_bytes);
            let target = edits.target(req.target.as_str());
            let target = target.as_deref().unwrap_or(req.target.as_str());
            let has_host = host.is_some() || edits.replaces_host();
            request_line(&req.method, target, has_host, room)
        };
        req.fields.write_without(head_bytes, left_out, &mut head);
        if !edits.is_empty() {
            edits.write(&mut head);
        }
        if let CookieEdit::Replace(v) = cookie {
            fields::put(&mut head, b"cookie", v.as_bytes());
        }
        forwarding.write(&mut head, host);
        if framing == Framing::Chunked {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Outgoing::ended(head, framing, body, &req.method)
    }

    /// The encoded head.
    #[cfg(test)]
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// Its body back, unread, for a request that must be routed afresh (nothing of it was sent:
    /// [`Outgoing::is_intact`]); empty for a bodiless one.
    pub fn take_body(&mut self) -> ClientBody {
        self.body
            .take()
            .unwrap_or_else(|| ClientBody::Whole(bytes::Bytes::new()))
    }

    /// May it go (again) on another connection? True while its body has not been read: it has
    /// none, or no attempt got as far as sending it.
    pub fn is_intact(&self) -> bool {
        self.framing == Framing::Empty || self.body.is_some()
    }

    /// May it be sent again after a server closed the connection without answering? Only a
    /// bodiless request of an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), as
    /// NGINX does; never a POST or PATCH.
    pub fn is_replayable(&self) -> bool {
        self.idempotent && self.framing == Framing::Empty
    }
}

/// A request head begun: its request line, and an empty Host when it has none (RFC 9112 §3.2: a
/// request with no authority carries an empty Host); room for `room` bytes.
fn request_line(method: &Method, target: &str, has_host: bool, room: usize) -> Vec<u8> {
    let mut head = Vec::with_capacity(room);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !has_host {
        head.extend_from_slice(b"host: \r\n");
    }
    head
}

/// Send `req` on `conn` and read the response head. A server that answers before taking the
/// whole request body gets its answer relayed, and the connection is not reused.
pub async fn exchange(conn: &mut Conn, req: &mut Outgoing) -> Result<Head, WireError> {
    let Conn { io, buf } = conn;
    io.write_whole(&req.head).await.map_err(WireError::Unsent)?;
    match req.body.take() {
        None => read_head(io, buf, req.is_head).await,
        // Boxed: the two futures side by side would take room in every request's future.
        Some(body) => {
            let pace = req.pace.take();
            Box::pin(exchange_with_body(
                io,
                buf,
                body,
                pace,
                req.max_body,
                req.framing,
                req.is_head,
            ))
            .await
        }
    }
}

/// [`exchange`] for a request with a body: it is written while the response head is awaited.
async fn exchange_with_body(
    io: &mut Stream,
    buf: &mut BytesMut,
    body: ClientBody,
    pace: Option<Box<Pace>>,
    limit: Option<u64>,
    framing: Framing,
    is_head: bool,
) -> Result<Head, WireError> {
    match io {
        // The plain case splits the socket for free; TLS shares one state for both ways.
        Stream::Plain(tcp) => {
            let (r, w) = tcp.split();
            write_while_reading(r, w, buf, body, pace, limit, framing, is_head).await
        }
        Stream::Tls(tls) => {
            let (r, w) = tokio::io::split(&mut **tls);
            write_while_reading(r, w, buf, body, pace, limit, framing, is_head).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_while_reading<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut r: R,
    mut w: W,
    buf: &mut BytesMut,
    mut body: ClientBody,
    pace: Option<Box<Pace>>,
    limit: Option<u64>,
    framing: Framing,
    is_head: bool,
) -> Result<Head, WireError> {
    let write = write_body(&mut w, &mut body, pace, limit, framing);
    let read = read_head(&mut r, buf, is_head);
    tokio::pin!(write, read);
    let mut sent: Option<Result<(), WireError>> = None;
    loop {
        tokio::select! {
            biased;
            head = &mut read => {
                return match (head, sent) {
                    (Ok(mut h), sent) => {
                        h.keep_alive &= matches!(sent, Some(Ok(())));
                        Ok(h)
                    }
                    (Err(WireError::Closed), Some(Err(e))) => Err(e),
                    // Written or not, a dead host is what the request met.
                    (Err(WireError::Dead), _) => Err(WireError::Dead),
                    (Err(e), _) => Err(e),
                };
            }
            done = &mut write, if sent.is_none() => match done {
                // A malformed, short or slow body: the server waits for the rest in vain, so
                // the exchange ends here (its connection is dropped, never pooled).
                Err(e) if e.client_status().is_some() => return Err(e),
                done => sent = Some(done),
            },
        }
    }
}

async fn write_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    body: &mut ClientBody,
    pace: Option<Box<Pace>>,
    limit: Option<u64>,
    framing: Framing,
) -> Result<(), WireError> {
    let body = match body {
        ClientBody::Whole(data) => {
            match framing {
                Framing::Length(n) if data.len() as u64 != n => return Err(WireError::BodyLength),
                Framing::Chunked => {
                    let mut chunked = Vec::with_capacity(data.len() + 16);
                    chunked::put_chunk(&mut chunked, data);
                    chunked.extend_from_slice(chunked::LAST_CHUNK);
                    w.write_all(&chunked).await?;
                }
                _ => w.write_all(data).await?,
            }
            // TLS holds what the socket did not take yet; for TCP this is nothing.
            w.flush().await?;
            return Ok(());
        }
        ClientBody::Streamed(_) | ClientBody::Piped(_) => body,
    };
    let mut sent = 0u64;
    let mut pace = pace;
    loop {
        let piece = match pace.as_deref_mut() {
            Some(p) => p.next(next_piece(body)).await?,
            None => next_piece(body).await,
        };
        let Some(data) = piece? else { break };
        if let Some(p) = pace.as_deref_mut() {
            p.got(data.len());
        }
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if limit.is_some_and(|max| sent > max) {
            return Err(WireError::BodyTooLarge);
        }
        match framing {
            Framing::Length(n) if sent > n => return Err(WireError::BodyLength),
            Framing::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                let mut chunk =
                    bytes::Buf::chain(bytes::Buf::chain(size.as_bytes(), data), &b"\r\n"[..]);
                w.write_all_buf(&mut chunk).await?;
            }
            _ => w.write_all(&data).await?,
        }
        // Each piece reaches the server before the next is awaited (a no-op for TCP).
        w.flush().await?;
    }
    match framing {
        Framing::Chunked => w.write_all(chunked::LAST_CHUNK).await?,
        Framing::Length(n) if sent != n => return Err(WireError::BodyLength),
        _ => {}
    }
    w.flush().await?;
    Ok(())
}

/// The next piece of a streamed body's data (trailers are not forwarded); `None` at its end.
async fn next_piece(body: &mut ClientBody) -> Result<Option<Bytes>, WireError> {
    use http_body_util::BodyExt;
    match body {
        ClientBody::Whole(data) => Ok((!data.is_empty()).then(|| std::mem::take(data))),
        ClientBody::Piped(rx) => Ok(rx.recv().await.transpose()?),
        ClientBody::Streamed(b) => loop {
            let Some(frame) = b.frame().await else {
                return Ok(None);
            };
            if let Ok(data) = frame.map_err(WireError::ClientBody)?.into_data() {
                return Ok(Some(data));
            }
        },
    }
}

/// Read into `buf` once; `Ok(0)` at the end of the stream.
async fn read_some<R: AsyncRead + Unpin>(r: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    std::future::poll_fn(|cx| tokio_util::io::poll_read_buf(Pin::new(&mut *r), cx, buf)).await
}

async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    is_head: bool,
) -> Result<Head, WireError> {
    let mut received = !buf.is_empty();
    loop {
        if !buf.is_empty() {
            if let Some(head) = parse_head(buf, is_head)? {
                let s = head.parts.status;
                if s.is_informational() && s != StatusCode::SWITCHING_PROTOCOLS {
                    continue; // 100 Continue, 103 Early Hints: the final answer follows
                }
                if s == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(HeadError::Invalid("101 Switching Protocols unasked").into());
                }
                return Ok(head);
            }
            if buf.len() >= MAX_HEAD {
                return Err(HeadError::TooLarge.into());
            }
        }
        match read_some(r, buf).await {
            Ok(0) if received => return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(0) => return Err(WireError::Closed),
            Ok(_) => received = true,
            // A reset before any answer is a close without a word, as far as retries go.
            Err(e) if !received && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(WireError::Closed)
            }
            // A connection TCP found dead: the host is gone (keepalive or unacknowledged data).
            Err(e) if !received && e.kind() == io::ErrorKind::TimedOut => {
                return Err(WireError::Dead)
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads a response body off its connection as the client takes it, never more than is there.
#[derive(Debug)]
pub struct BodyReader {
    conn: Conn,
    state: Reading,
    keep_alive: bool,
}

#[derive(Debug)]
enum Reading {
    Length(u64),
    Chunked(chunked::Decoder),
    UntilClose,
    Done,
}

impl BodyReader {
    /// A reader for the body `head` announces, or the connection back when there is none.
    pub fn new(conn: Conn, framing: Framing, keep_alive: bool) -> Result<BodyReader, Conn> {
        let state = match framing {
            Framing::Empty => return Err(conn),
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(chunked::Decoder::default()),
            Framing::UntilClose => Reading::UntilClose,
        };
        Ok(BodyReader {
            conn,
            state,
            keep_alive,
        })
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, Reading::Done)
    }

    /// Bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            Reading::Length(n) => Some(n),
            Reading::Done => Some(0),
            _ => None,
        }
    }

    /// The connection once the body has been read whole, if it may carry another request
    /// (kept alive, and nothing unasked followed the body).
    pub fn into_idle(self) -> Option<Conn> {
        (self.keep_alive && self.is_done() && self.conn.buf.is_empty()).then_some(self.conn)
    }

    /// The next piece of the body; `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, WireError>>> {
        loop {
            let buf = &mut self.conn.buf;
            match &mut self.state {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(left) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(*left) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = Reading::Done;
                    }
                    return Poll::Ready(Some(Ok(buf.split_to(n).freeze())));
                }
                Reading::Chunked(d) if !buf.is_empty() => match d.step(buf) {
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    Ok(chunked::Step::Data(b)) => return Poll::Ready(Some(Ok(b))),
                    Ok(chunked::Step::End) => {
                        self.state = Reading::Done;
                        return Poll::Ready(None);
                    }
                    Ok(chunked::Step::NeedMore) => {}
                },
                Reading::UntilClose if !buf.is_empty() => {
                    return Poll::Ready(Some(Ok(buf.split().freeze())));
                }
                _ => {}
            }
            buf.reserve(READ_CHUNK);
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut self.conn.io), cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Ok(n)) => n,
            };
            if n == 0 {
                if matches!(self.state, Reading::UntilClose) {
                    self.state = Reading::Done;
                    return Poll::Ready(None);
                }
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "server closed mid-body");
                return Poll::Ready(Some(Err(e.into())));
            }
        }
    }
}

#[cfg(test)]
mod tests;

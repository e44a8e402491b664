//! Bodies on both sides. Response bodies are streamed from the server frame by frame (never
//! buffered whole), or a short body Tether writes itself; a streamed body returns its connection
//! to the pool once read to the end and releases the server's in-flight count when dropped.
//! Request bodies ([`ClientBody`]) are hyper's stream, a small body Tether's own HTTP/1.1
//! server ([`crate::front`]) read whole with the head, or a chunked body that server decodes as
//! it arrives and hands over through a [`pipe`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tether_balance::state::InFlight;
use tokio::sync::mpsc;

use crate::http1::chunked::ChunkedError;
use crate::upstream::exchange::{BodyReader, WireError};
use crate::upstream::meter::Meter;
use crate::upstream::registry::Backend;

/// Something to hold until the response is done (e.g. the connection's activity marker).
pub type Guard = Box<dyn Send + Sync + 'static>;

/// The body of every response Tether sends.
pub struct ProxyBody {
    kind: Kind,
    guard: Option<Guard>,
    /// Counts the request when the body is done ([`crate::stats`]); `None` for bodies not sent
    /// to a client (tests).
    pub meter: Option<Box<Meter>>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Streamed),
    /// Boxed: rare, and it holds a body of its own.
    Compressed(Box<crate::middleware::compress::Compressing>),
}

struct Streamed {
    reader: Option<BodyReader>,
    backend: Arc<Backend>,
    _in_flight: InFlight,
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        ProxyBody {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            guard: None,
            meter: None,
        }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(None),
            guard: None,
            meter: None,
        }
    }

    /// Stream the body `reader` reads; give its connection back to `backend`'s pool at the end.
    pub fn upstream(reader: BodyReader, backend: Arc<Backend>, in_flight: InFlight) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream(Streamed {
                reader: Some(reader),
                backend,
                _in_flight: in_flight,
            }),
            guard: None,
            meter: None,
        }
    }

    /// An empty body that holds the server's in-flight count until the response is sent.
    pub fn finished(in_flight: InFlight, backend: Arc<Backend>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream(Streamed {
                reader: None,
                backend,
                _in_flight: in_flight,
            }),
            guard: None,
            meter: None,
        }
    }

    /// `c`'s compressed body (the meter, if any, stays with the outer body).
    pub fn compressed(c: crate::middleware::compress::Compressing) -> ProxyBody {
        ProxyBody {
            kind: Kind::Compressed(Box::new(c)),
            guard: None,
            meter: None,
        }
    }

    /// Keep `g` alive until this body is dropped.
    pub fn attach(&mut self, g: Guard) {
        self.guard = Some(g);
    }
}

impl Streamed {
    /// Give the connection back if its body has been read whole.
    fn release(&mut self) {
        if self.reader.as_ref().is_some_and(BodyReader::is_done) {
            if let Some(conn) = self.reader.take().and_then(BodyReader::into_idle) {
                self.backend.pool.release(conn);
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        let r = match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(s) => {
                let Some(reader) = s.reader.as_mut() else {
                    return Poll::Ready(None);
                };
                let r = reader.poll_data(cx);
                // Released as soon as the last byte is in hand, before the client has it: the
                // next request may already want the connection.
                s.release();
                r.map(|o| o.map(|d| d.map(Frame::data)))
            }
            Kind::Compressed(c) => c.poll_frame(cx),
        };
        if let (Some(m), Poll::Ready(Some(Ok(f)))) = (&mut this.meter, &r) {
            if let Some(d) = f.data_ref() {
                m.bytes_out += d.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(s) => s.reader.as_ref().is_none_or(BodyReader::is_done),
            Kind::Compressed(c) => c.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(s) => match s.reader.as_ref().map_or(Some(0), BodyReader::remaining) {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::Compressed(_) => SizeHint::default(),
        }
    }
}

/// A client's request body.
#[derive(Debug)]
pub enum ClientBody {
    /// Streamed by hyper (HTTP/2, and HTTP/1.1 requests Tether's own server hands over).
    Streamed(Incoming),
    /// Read whole with the request head (empty for a bodiless request).
    Whole(Bytes),
    /// Decoded by Tether's own server as it arrives (a chunked body).
    Piped(mpsc::Receiver<Result<Bytes, BodyCut>>),
}

impl ClientBody {
    /// Known to carry no (more) data.
    pub fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Streamed(b) => b.is_end_stream(),
            ClientBody::Whole(b) => b.is_empty(),
            ClientBody::Piped(_) => false,
        }
    }
}

/// Why a piped body ended before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyCut {
    #[error("malformed chunked request body: {0}")]
    Malformed(#[from] ChunkedError),
    #[error("the client closed the connection inside the request body")]
    Gone,
}

/// How many pieces of a piped body wait for the server at most: the client is read no further
/// ahead of what the server takes (a piece is at most one read, 16 KiB or so).
const PIPE_DEPTH: usize = 4;

/// A piped body: the sending end for the connection that reads it, the body for the request.
/// The body ends (`None`) when the sender is dropped after the last piece.
pub fn pipe() -> (mpsc::Sender<Result<Bytes, BodyCut>>, ClientBody) {
    let (tx, rx) = mpsc::channel(PIPE_DEPTH);
    (tx, ClientBody::Piped(rx))
}

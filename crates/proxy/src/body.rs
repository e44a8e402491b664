//! Response bodies: streamed from the server frame by frame (never buffered whole), or a short
//! body Tether writes itself. A streamed body returns its connection to the pool once read to the
//! end and releases the server's in-flight count when dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tether_balance::state::InFlight;

use crate::pool::Sender;
use crate::registry::Backend;

/// Something to hold until the response is done (e.g. the connection's activity marker).
pub type Guard = Box<dyn Send + Sync + 'static>;

/// The body of every response Tether sends.
pub struct ProxyBody {
    kind: Kind,
    guard: Option<Guard>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Streamed),
}

struct Streamed {
    inner: Incoming,
    release: Option<(Sender, Arc<Backend>)>,
    _in_flight: InFlight,
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        ProxyBody {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            guard: None,
        }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(None),
            guard: None,
        }
    }

    /// Stream `inner`; give `sender` back to `backend`'s pool when it ends.
    pub fn upstream(
        inner: Incoming,
        sender: Sender,
        backend: Arc<Backend>,
        in_flight: InFlight,
    ) -> ProxyBody {
        ProxyBody {
            kind: Kind::Upstream(Streamed {
                inner,
                release: Some((sender, backend)),
                _in_flight: in_flight,
            }),
            guard: None,
        }
    }

    /// Keep `g` alive until this body is dropped.
    pub fn attach(&mut self, g: Guard) {
        self.guard = Some(g);
    }
}

impl Streamed {
    fn release(&mut self) {
        if let Some((s, b)) = self.release.take() {
            b.pool.release(s);
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // Bodies hyper never polls (HEAD, 204, 304) are complete already: keep their connection.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(s) => {
                let r = Pin::new(&mut s.inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => s.release(),
                    Poll::Ready(Some(Ok(_))) if s.inner.is_end_stream() => s.release(),
                    _ => {}
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(s) => s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(s) => s.inner.size_hint(),
        }
    }
}

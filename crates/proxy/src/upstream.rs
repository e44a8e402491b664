//! Sending one request to one backend: checkout, send, and tell apart the failures that leave the
//! request unsent (safe to try elsewhere) from those that do not.
//!
//! A server may close a kept-alive connection just as a request goes out on it (a container that
//! is stopping closes its idle connections). Bodiless GET, HEAD and OPTIONS requests are then sent
//! again, as NGINX and HAProxy do for idempotent requests; others fail with 502.

use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::{Body, Incoming};

use crate::pool::{ConnectError, Sender};
use crate::registry::Backend;

/// The body of a request going upstream: the client's, streamed, or none for a bodiless request
/// sent again after a server closed a kept-alive connection under it.
pub type UpBody = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

/// Why the exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: nothing was sent, the request comes back in [`Failure::request`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server took longer than the response timeout to answer.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The exchange broke after the request was handed over.
    #[error("exchange failed: {0}")]
    Exchange(hyper::Error),
}

/// A failed send, with the request if it was never sent.
#[derive(Debug)]
pub struct Failure {
    pub error: UpstreamError,
    pub request: Option<Request<UpBody>>,
}

/// The head of a request that may be sent again if a server drops it before answering: bodiless
/// GET, HEAD and OPTIONS. `None` for anything else.
pub fn replayable(req: &Request<UpBody>) -> Option<Request<()>> {
    let m = req.method();
    if !(m == Method::GET || m == Method::HEAD || m == Method::OPTIONS)
        || !req.body().is_end_stream()
    {
        return None;
    }
    let mut head = Request::new(());
    *head.method_mut() = m.clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    Some(head)
}

/// A fresh copy of a replayable request.
fn replay(head: &Request<()>) -> Request<UpBody> {
    let mut r = Request::new(UpBody::Right(http_body_util::Empty::new()));
    *r.method_mut() = head.method().clone();
    *r.uri_mut() = head.uri().clone();
    *r.version_mut() = head.version();
    *r.headers_mut() = head.headers().clone();
    r
}

/// Attempts on stale pooled connections before giving up on a backend.
const STALE_RETRIES: usize = 3;

/// Send `req` to `backend`; on success returns the response head and the connection to release
/// once the body has been read. `head` (from [`replayable`]) allows sending it again.
pub async fn send(
    backend: &Backend,
    mut req: Request<UpBody>,
    head: Option<&Request<()>>,
    connect: Duration,
    respond: Duration,
) -> Result<(Response<Incoming>, Sender), Failure> {
    let mut last = None;
    for _ in 0..STALE_RETRIES {
        let mut sender = match backend.pool.checkout(connect).await {
            Ok(s) => s,
            Err(e) => {
                return Err(Failure {
                    error: e.into(),
                    request: Some(req),
                })
            }
        };
        match tokio::time::timeout(respond, sender.try_send_request(req)).await {
            Err(_) => {
                return Err(Failure {
                    error: UpstreamError::Timeout(respond),
                    request: None,
                })
            }
            Ok(Ok(resp)) => return Ok((resp, sender)),
            Ok(Err(mut e)) => match e.take_message() {
                // The connection died before our request went out: try a fresh one.
                Some(r) => {
                    req = r;
                    last = Some(e.into_error());
                }
                // Sent, but the server closed the connection without answering.
                None => match head {
                    Some(h) => {
                        req = replay(h);
                        last = Some(e.into_error());
                    }
                    None => {
                        return Err(Failure {
                            error: UpstreamError::Exchange(e.into_error()),
                            request: None,
                        })
                    }
                },
            },
        }
    }
    let error = last.map_or(UpstreamError::Timeout(respond), UpstreamError::Exchange);
    Err(Failure {
        error,
        request: Some(req),
    })
}

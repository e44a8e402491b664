//! Sending one request to one backend: checkout, send, and tell apart the failures that leave the
//! request unsent (safe to try elsewhere) from those that do not.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::pool::{ConnectError, Sender};
use crate::registry::Backend;

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
    pub request: Option<Request<Incoming>>,
}

/// Attempts on stale pooled connections before giving up on a backend.
const STALE_RETRIES: usize = 3;

/// Send `req` to `backend`; on success returns the response head and the connection to release
/// once the body has been read.
pub async fn send(
    backend: &Backend,
    mut req: Request<Incoming>,
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
                None => {
                    return Err(Failure {
                        error: UpstreamError::Exchange(e.into_error()),
                        request: None,
                    })
                }
            },
        }
    }
    let error = last.map_or(UpstreamError::Timeout(respond), UpstreamError::Exchange);
    Err(Failure {
        error,
        request: Some(req),
    })
}

//! Sending one request to one backend: checkout, exchange, and tell apart the failures that leave
//! the request unsent (safe to try elsewhere) from those that do not.
//!
//! A server may close a kept-alive connection just as a request goes out on it (a container that
//! is stopping closes its idle connections). A request whose head could not be written goes again
//! on another connection; one the server dropped without a word is sent again only if it is a
//! bodiless request of an idempotent method, as NGINX does; others fail with 502.

use std::time::Duration;

use crate::idle::Activity;
use crate::upstream::exchange::{self, Conn, Head, Outgoing, WireError};
use crate::upstream::pool::{ConnectError, Dial};
use crate::upstream::registry::Backend;

/// Why the exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: nothing was sent.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server took longer than the response timeout to answer.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The exchange broke after the request was handed over, or the answer was malformed.
    #[error("exchange failed: {0}")]
    Exchange(#[from] WireError),
    /// The protocol-upgrade handshake failed.
    #[error("upgrade handshake failed: {0}")]
    Upgrade(hyper::Error),
}

/// A failed send.
#[derive(Debug)]
pub struct Failure {
    pub error: UpstreamError,
    /// The request is intact and no server acted on it: it may go to another server.
    pub retryable: bool,
}

/// Who keeps the response timeout of an exchange.
#[derive(Debug, Clone, Copy)]
pub enum Deadline<'a> {
    /// A timer of the exchange's own.
    Timer(Duration),
    /// The watchdog of the client connection, which carries one request at a time.
    Watched(&'a Activity, Duration),
}

impl Deadline<'_> {
    fn limit(&self) -> Duration {
        match *self {
            Deadline::Timer(d) | Deadline::Watched(_, d) => d,
        }
    }
}

/// Attempts on stale pooled connections before giving up on a backend.
const STALE_RETRIES: usize = 3;

/// Send `req` to `backend`; on success returns the response head and the connection its body is
/// to be read from.
pub async fn send(
    backend: &Backend,
    req: &mut Outgoing,
    dial: Dial,
    respond: Deadline<'_>,
) -> Result<(Head, Conn), Failure> {
    let mut last = None;
    for _ in 0..STALE_RETRIES {
        let mut conn = match backend.pool.checkout(dial).await {
            Ok(c) => c,
            Err(e) => {
                return Err(Failure {
                    error: e.into(),
                    retryable: req.is_intact(),
                })
            }
        };
        // Each exchange future is built where it is awaited: one kept in a local would take room
        // of its own in this future's state, beside the awaited one.
        let answered = match respond {
            // Boxed: only hyper's requests keep a timer of their own, and it would take room in
            // every request's future.
            Deadline::Timer(d) => {
                Box::pin(tokio::time::timeout(d, exchange::exchange(&mut conn, req)))
                    .await
                    .ok()
            }
            Deadline::Watched(a, d) => {
                a.respond_within(d, exchange::exchange(&mut conn, req))
                    .await
            }
        };
        match answered {
            None => {
                return Err(Failure {
                    error: UpstreamError::Timeout(respond.limit()),
                    retryable: false,
                })
            }
            Some(Ok(head)) => return Ok((head, conn)),
            // The host is gone: its other connections (idle in the pool, unknown to be dead
            // yet) would only make the request wait again; the caller takes the server out and
            // tries another.
            Some(Err(WireError::Dead)) => {
                return Err(Failure {
                    error: UpstreamError::Exchange(WireError::Dead),
                    retryable: req.is_replayable(),
                })
            }
            Some(Err(e)) => {
                let again = match e {
                    WireError::Unsent(_) => true,
                    WireError::Closed => req.is_replayable(),
                    _ => false,
                };
                if !again {
                    return Err(Failure {
                        error: e.into(),
                        retryable: false,
                    });
                }
                last = Some(e);
            }
        }
    }
    Err(Failure {
        error: last.map_or(
            UpstreamError::Timeout(respond.limit()),
            UpstreamError::Exchange,
        ),
        retryable: req.is_intact(),
    })
}

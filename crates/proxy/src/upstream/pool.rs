//! Upstream HTTP/1.1 connections, kept alive and reused per backend. A connection goes back to the
//! pool when its response body has been read to the end (see [`crate::upstream::body`]); one that the server
//! closed while it was idle is noticed and dropped at checkout (see [`Conn::is_alive`]).

use std::sync::Mutex;
use std::time::Duration;

use tether_balance::state::now_ms;
use tether_model::ServerAddr;
use tokio::net::TcpStream;

use crate::upstream::exchange::Conn;
use crate::upstream::stream::Stream;
use crate::upstream::tls::Connector;
use crate::worker::PerWorker;

/// Idle connections kept per backend; more are closed when released.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused (servers close theirs too).
const IDLE_EXPIRY: Duration = Duration::from_secs(30);

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {0} timed out")]
    Timeout(ServerAddr),
    #[error("connecting to {addr}: {source}")]
    Io {
        addr: ServerAddr,
        source: std::io::Error,
    },
    #[error("TLS to {addr}: {source}")]
    Tls {
        addr: ServerAddr,
        source: std::io::Error,
    },
    /// Another connection to the server failed while this one was being made.
    #[error("connecting to {0}: given up, another connection to it just failed")]
    GaveUp(ServerAddr),
}

/// How a new connection to a server is made.
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    /// The TCP connect and TLS handshake together (`timeouts.connect`, `--connect-timeout`).
    pub timeout: Duration,
    /// TCP keepalive's idle time (`timeouts.server_keepalive`): a server whose host died is
    /// noticed after it plus three probes a third of it apart, not at the response timeout.
    pub keepalive: Option<Duration>,
}

impl Dial {
    pub fn of(t: &tether_model::file_config::Timeouts) -> Dial {
        Dial {
            timeout: t.connect,
            keepalive: (!t.server_keepalive.is_zero()).then_some(t.server_keepalive),
        }
    }
}

#[derive(Debug)]
pub struct Pool {
    addr: ServerAddr,
    /// TLS to the server (`https://`).
    tls: Option<Connector>,
    /// Idle connections, and when each was released (see [`now_ms`]), one slot per worker
    /// ([`crate::worker`]): a connection is polled only by the runtime that opened it. Each slot
    /// is locked by its worker alone, but for [`Pool::idle_count`].
    idle: PerWorker<Mutex<Vec<(Conn, u64)>>>,
    /// Woken when a connection to this server failed: the connects still pending give up at
    /// once, so a dead server costs one connect timeout, not one per request.
    failed: tokio::sync::Notify,
    /// A task is trying to connect to it again ([`crate::upstream::revive`]).
    pub(crate) reviving: std::sync::atomic::AtomicBool,
    /// When a connection to it last failed ([`now_ms`]): idle connections released before are
    /// closed when taken, never reused (every worker's, each when it next takes one).
    failed_at: std::sync::atomic::AtomicU64,
}

impl Pool {
    pub fn new(addr: ServerAddr, tls: Option<Connector>) -> Pool {
        Pool {
            addr,
            tls,
            idle: PerWorker::default(),
            failed: tokio::sync::Notify::new(),
            reviving: std::sync::atomic::AtomicBool::new(false),
            failed_at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A connection: a pooled one if any is alive, else a new one.
    pub async fn checkout(&self, dial: Dial) -> Result<Conn, ConnectError> {
        if let Some(c) = self.pop() {
            return Ok(c);
        }
        // Boxed: connecting is the rare case, and its future would take room in every
        // request's.
        Ok(Conn::new(Box::pin(self.open(dial)).await?))
    }

    /// A connection to this server failed (refused, or timed out): the connects still pending
    /// give up too, and their requests go elsewhere.
    pub fn failed(&self) {
        self.failed_at
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        self.failed.notify_waiters();
    }

    /// This thread's slot; `None` for a worker started after the pool was made.
    #[inline]
    fn slot(&self) -> Option<&Mutex<Vec<(Conn, u64)>>> {
        self.idle.mine()
    }

    fn pop(&self) -> Option<Conn> {
        let mut idle = self.slot()?.lock().expect("pool poisoned");
        let now = now_ms();
        let failed_at = self.failed_at.load(std::sync::atomic::Ordering::Relaxed);
        while let Some((mut c, since)) = idle.pop() {
            if since > failed_at
                && now.saturating_sub(since) < IDLE_EXPIRY.as_millis() as u64
                && c.is_alive()
            {
                return Some(c);
            }
        }
        None
    }

    /// Return a connection whose exchange completed.
    pub fn release(&self, c: Conn) {
        let Some(slot) = self.slot() else { return };
        let mut idle = slot.lock().expect("pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push((c, now_ms()));
        }
    }

    /// Number of idle connections (for status displays and tests).
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|s| s.lock().expect("pool poisoned").len())
            .sum()
    }

    /// Open a new connection (Nagle off, TCP keepalive as `dial` says), with its TLS handshake
    /// for an `https://` server, all within `dial.timeout`; given up at once when another
    /// connection to this server failed meanwhile ([`Pool::failed`]).
    pub async fn open(&self, dial: Dial) -> Result<Stream, ConnectError> {
        let addr = &self.addr;
        let connecting = async {
            let tcp = match addr {
                ServerAddr::Socket(sa) => TcpStream::connect(sa).await,
                ServerAddr::Host(h, p) => TcpStream::connect((h.as_str(), *p)).await,
            }
            .map_err(|source| ConnectError::Io {
                addr: addr.clone(),
                source,
            })?;
            let _ = tcp.set_nodelay(true);
            if let Some(idle) = dial.keepalive {
                keepalive(&tcp, idle);
            }
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some(c) => c
                    .connect(tcp)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(|source| ConnectError::Tls {
                        addr: addr.clone(),
                        source,
                    }),
            }
        };
        let gave_up = self.failed.notified();
        tokio::select! {
            r = tokio::time::timeout(dial.timeout, connecting) => match r {
                Err(_) => Err(ConnectError::Timeout(addr.clone())),
                Ok(r) => r,
            },
            () = gave_up => Err(ConnectError::GaveUp(addr.clone())),
        }
    }
}

/// Probe an idle connection after `idle`, then every third of it, three times; and give up on
/// data the server has not acknowledged for twice `idle` (`TCP_USER_TIMEOUT`: a request written
/// to a host that died is retransmitted for many minutes otherwise, since keepalive probes
/// only idle connections). A live server acknowledges within milliseconds, however slow its
/// answer.
fn keepalive(tcp: &TcpStream, idle: Duration) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval((idle / 3).max(Duration::from_secs(1)));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
    let probes = probes.with_retries(3);
    let sock = socket2::SockRef::from(tcp);
    if let Err(e) = sock.set_tcp_keepalive(&probes) {
        tracing::debug!(error = %e, "server connection: cannot set TCP keepalive");
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(idle * 2)) {
        tracing::debug!(error = %e, "server connection: cannot set TCP_USER_TIMEOUT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live connection to a listener of this test.
    async fn conn(l: &tokio::net::TcpListener) -> (Conn, TcpStream) {
        let addr = l.local_addr().unwrap();
        let (c, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Conn::new(Stream::Plain(c.unwrap())), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn idle_connections_are_not_reused_once_a_connection_to_their_server_failed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(ServerAddr::Socket(l.local_addr().unwrap()), None);
        let (a, _a) = conn(&l).await;
        pool.release(a);
        assert_eq!(pool.idle_count(), 1);
        assert!(pool.pop().is_some(), "a live idle connection is reused");
        let (b, _b) = conn(&l).await;
        pool.release(b);
        // Another connection to the server failed (its host stopped answering, say): this one
        // is no better, whichever worker's slot holds it.
        pool.failed();
        assert!(pool.pop().is_none());
        assert_eq!(pool.idle_count(), 0, "closed when taken");
        // One released after the failure (the server answered again) is reused.
        let failed_at = pool.failed_at.load(std::sync::atomic::Ordering::Relaxed);
        clock_passes(|| now_ms() > failed_at).await;
        let (c, _c) = conn(&l).await;
        pool.release(c);
        assert!(pool.pop().is_some());
    }

    /// Wait, at most 2 s, for the coarse clock to pass the failure's millisecond.
    async fn clock_passes(cond: impl Fn() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(2);
        while !cond() {
            assert!(std::time::Instant::now() < end, "the clock did not advance");
            tokio::task::yield_now().await;
        }
    }
}

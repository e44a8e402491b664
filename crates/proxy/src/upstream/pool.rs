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
}

#[derive(Debug)]
pub struct Pool {
    addr: ServerAddr,
    /// TLS to the server (`https://`).
    tls: Option<Connector>,
    /// Idle connections, and when each was released (see [`now_ms`]).
    idle: Mutex<Vec<(Conn, u64)>>,
}

impl Pool {
    pub fn new(addr: ServerAddr, tls: Option<Connector>) -> Pool {
        Pool {
            addr,
            tls,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection: a pooled one if any is alive, else a new one.
    pub async fn checkout(&self, connect_timeout: Duration) -> Result<Conn, ConnectError> {
        if let Some(c) = self.pop() {
            return Ok(c);
        }
        // Boxed: connecting is the rare case, and its future would take room in every
        // request's.
        Ok(Conn::new(Box::pin(self.open(connect_timeout)).await?))
    }

    fn pop(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().expect("pool poisoned");
        let now = now_ms();
        while let Some((mut c, since)) = idle.pop() {
            if now.saturating_sub(since) < IDLE_EXPIRY.as_millis() as u64 && c.is_alive() {
                return Some(c);
            }
        }
        None
    }

    /// Return a connection whose exchange completed.
    pub fn release(&self, c: Conn) {
        let mut idle = self.idle.lock().expect("pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push((c, now_ms()));
        }
    }

    /// Number of idle connections (for status displays and tests).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool poisoned").len()
    }

    /// Open a new connection (Nagle off), with its TLS handshake for an `https://` server, all
    /// within `timeout`.
    pub async fn open(&self, timeout: Duration) -> Result<Stream, ConnectError> {
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
        match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(ConnectError::Timeout(addr.clone())),
            Ok(r) => r,
        }
    }
}

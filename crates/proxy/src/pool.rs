//! Upstream HTTP/1.1 connections, kept alive and reused per backend. A connection goes back to the
//! pool when its response body has been read to the end (see [`crate::body`]); one that the server
//! closed is noticed and dropped at checkout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tether_model::ServerAddr;
use tokio::net::TcpStream;

/// A request sender on one upstream connection.
pub type Sender = http1::SendRequest<crate::upstream::UpBody>;

/// Idle connections kept per backend; more are closed when released.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused (servers close theirs too).
const IDLE_EXPIRY: Duration = Duration::from_secs(30);
/// How long a pooled connection may take to report ready before it is given up.
const READY_WAIT: Duration = Duration::from_millis(500);

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
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: ServerAddr,
        source: hyper::Error,
    },
}

#[derive(Debug)]
pub struct Pool {
    addr: ServerAddr,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Pool {
    pub fn new(addr: ServerAddr) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A ready connection: a pooled one if any is alive, else a new one.
    pub async fn checkout(&self, connect_timeout: Duration) -> Result<Sender, ConnectError> {
        while let Some(mut s) = self.pop() {
            if s.is_ready() {
                return Ok(s);
            }
            // Its last response just ended; the connection task needs a moment to catch up.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, s.ready()).await {
                return Ok(s);
            }
        }
        self.connect(connect_timeout, false).await
    }

    fn pop(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("pool poisoned");
        while let Some((s, since)) = idle.pop() {
            if !s.is_closed() && since.elapsed() < IDLE_EXPIRY {
                return Some(s);
            }
        }
        None
    }

    /// Return a connection whose exchange completed.
    pub fn release(&self, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push((s, Instant::now()));
        }
    }

    /// Number of idle connections (for status displays and tests).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool poisoned").len()
    }

    /// Open a new connection. `upgrades` keeps the socket usable after a `101 Switching Protocols`
    /// (such connections are never pooled).
    pub async fn connect(&self, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
        let addr = &self.addr;
        let connecting = async {
            match addr {
                ServerAddr::Socket(sa) => TcpStream::connect(sa).await,
                ServerAddr::Host(h, p) => TcpStream::connect((h.as_str(), *p)).await,
            }
        };
        let stream = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(ConnectError::Timeout(addr.clone())),
            Ok(Err(e)) => {
                return Err(ConnectError::Io {
                    addr: addr.clone(),
                    source: e,
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnectError::Handshake {
                addr: addr.clone(),
                source: e,
            })?;
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        Ok(sender)
    }
}

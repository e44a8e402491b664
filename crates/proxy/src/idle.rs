//! Client connection timeouts. A connection is in one of three phases: reading a request head
//! (from accept, or from the first byte after an idle spell), busy (requests in flight), or idle
//! (keep-alive, nothing in flight). A watchdog closes it when reading a head takes longer than the
//! request-header timeout (slowloris) or idling lasts longer than the idle timeout. The client
//! stream ([`Tracked`]) reports its reads to the watchdog, replays the bytes read to tell the
//! protocol, and turns Nagle off before its second write.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const READING: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

use tether_balance::state::now_ms;

/// Shared by a connection's IO, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    phase: AtomicU8,
    since_ms: AtomicU64,
    in_flight: AtomicU32,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            phase: AtomicU8::new(READING),
            since_ms: AtomicU64::new(now_ms()),
            in_flight: AtomicU32::new(0),
        })
    }

    fn on_read(&self) {
        if self.phase.load(Relaxed) == IDLE {
            self.since_ms.store(now_ms(), Relaxed);
            self.phase.store(READING, Relaxed);
        }
    }

    /// A request head arrived; the returned guard marks it done when dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        self.phase.store(BUSY, Relaxed);
        Busy(self.clone())
    }

    /// Nothing in flight and no request begun since (keep-alive idle).
    pub fn is_idle(&self) -> bool {
        self.phase.load(Relaxed) == IDLE
    }

    /// Resolves when the connection has overstayed its phase's limit.
    pub async fn expired(&self, header: Duration, idle: Duration) {
        loop {
            let limit = match self.phase.load(Relaxed) {
                READING => header,
                IDLE => idle,
                _ => {
                    tokio::time::sleep(header.min(idle)).await;
                    continue;
                }
            };
            let since = self.since_ms.load(Relaxed);
            let deadline = since + limit.as_millis() as u64;
            let now = now_ms();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(deadline - now)).await;
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.0.since_ms.store(now_ms(), Relaxed);
            self.0.phase.store(IDLE, Relaxed);
        }
    }
}

/// A client stream that reports reads to its [`Activity`], and turns Nagle's algorithm off before
/// its second write (as NGINX does on keep-alive): a first answer written whole never waits for
/// an ACK, so a connection that carries one exchange saves the system call.
pub struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// Bytes already read (to tell the protocol) that the next reads hand out first.
    replayed: Bytes,
    /// Writes so far, counted up to 2 (by then Nagle is off).
    writes: u8,
}

impl Tracked {
    pub fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Tracked {
            inner,
            activity,
            replayed: Bytes::new(),
            writes: 0,
        }
    }

    /// Have the next reads return `first` before anything more from the socket.
    pub fn replay(&mut self, first: Bytes) {
        self.replayed = first;
    }

    /// Resolves when a read would find something (replayed bytes, data, or the end).
    pub async fn readable(&self) -> io::Result<()> {
        if self.replayed.is_empty() {
            self.inner.readable().await?;
        }
        Ok(())
    }

    fn before_write(&mut self) {
        if self.writes < 2 {
            if self.writes == 1 {
                let _ = self.inner.set_nodelay(true);
            }
            self.writes += 1;
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replayed.is_empty() {
            let n = self.replayed.len().min(buf.remaining());
            buf.put_slice(&self.replayed[..n]);
            self.replayed.advance(n);
            if self.replayed.is_empty() {
                self.replayed = Bytes::new(); // let the first read's buffer go
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn replayed_bytes_come_before_the_socket() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut t = Tracked::new(server, Activity::new());
        t.replay(Bytes::from_static(b"hello"));
        let mut got = Vec::new();
        t.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
    }
}

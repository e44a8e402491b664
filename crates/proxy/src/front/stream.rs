//! The client's stream. [`ClientStream`] is plain TCP or TLS; everything above it asks readiness
//! of the stream, never of the socket, since under TLS decrypted bytes can wait in the TLS buffer
//! while the socket is quiet. [`Tracked`] wraps it for a connection:
//! reads are reported to the connection's [`Activity`], bytes already read to tell the protocol
//! are replayed first, and Nagle's algorithm goes off before the second write.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::idle::Activity;

/// A client connection's transport.
#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    /// Boxed: the TLS session is large, and most connections of a server are of one kind.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Ready when a read would find something (or the end): asked of the stream, so that a TLS
    /// stream can answer from what it has decrypted already.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientStream::Plain(s) => s.poll_read_ready(cx),
            ClientStream::Tls(s) => {
                let (tcp, session) = s.get_ref();
                if session.wants_read() {
                    tcp.poll_read_ready(cx)
                } else {
                    // Decrypted bytes wait in the session: a read finds them.
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    fn set_nodelay(&self, on: bool) {
        match self {
            ClientStream::Plain(s) => {
                let _ = s.set_nodelay(on);
            }
            ClientStream::Tls(s) => {
                let _ = s.get_ref().0.set_nodelay(on);
            }
        }
    }

    async fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => crate::http1::io::write_whole(s, bytes).await,
            ClientStream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

impl From<TcpStream> for ClientStream {
    fn from(s: TcpStream) -> Self {
        ClientStream::Plain(s)
    }
}

/// A client stream that reports reads to its [`Activity`], and turns Nagle's algorithm off before
/// its second write (as NGINX does on keep-alive): a first answer written whole never waits for
/// an ACK, so a connection that carries one exchange saves the system call.
#[derive(Debug)]
pub struct Tracked {
    inner: ClientStream,
    activity: Arc<Activity>,
    /// Bytes already read (to tell the protocol) that the next reads hand out first.
    replayed: Bytes,
    /// Writes so far, counted up to 2 (by then Nagle is off).
    writes: u8,
}

impl Tracked {
    pub fn new(inner: impl Into<ClientStream>, activity: Arc<Activity>) -> Self {
        Tracked {
            inner: inner.into(),
            activity,
            replayed: Bytes::new(),
            writes: 0,
        }
    }

    /// Have the next reads return `first` before anything more from the socket.
    pub fn replay(&mut self, first: Bytes) {
        self.replayed = first;
    }

    /// Resolves when a read would find something (replayed bytes, data, or the end). Waits in
    /// the stream's single reader slot, as a read does (the connection's task is its only
    /// reader), rather than in the list `TcpStream::readable` keeps for any number of waiters.
    pub async fn readable(&self) -> io::Result<()> {
        if self.replayed.is_empty() {
            poll_fn(|cx| self.inner.poll_read_ready(cx)).await?;
        }
        Ok(())
    }

    /// End a TLS session with its `close_notify` alert (a client reading to the end takes a
    /// close without one for a truncation attack), waiting at most a second for the socket to
    /// take it. A plain stream needs nothing: dropping it closes it.
    pub async fn close(&mut self) {
        if let ClientStream::Tls(s) = &mut self.inner {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), s.shutdown()).await;
        }
    }

    /// Write all of `bytes` (see [`crate::http1::io::write_whole`]).
    pub async fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.before_write();
        self.inner.write_whole(bytes).await
    }

    fn before_write(&mut self) {
        if self.writes < 2 {
            if self.writes == 1 {
                self.inner.set_nodelay(true);
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
        let r = match &mut self.inner {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
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
        match &mut self.inner {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.before_write();
        match &mut self.inner {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
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

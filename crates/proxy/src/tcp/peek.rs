//! Looking at a new connection's first bytes without taking them (`MSG_PEEK`), until they say
//! enough: a TLS ClientHello ([`crate::tcp::hello`]) or a PROXY protocol header
//! ([`crate::proxy_protocol`]). Whoever reads the connection next reads them again.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Why peeking stopped before the bytes said enough.
#[derive(Debug, thiserror::Error)]
pub enum PeekFailed {
    #[error("the client closed before sending enough")]
    Closed,
    #[error("not enough within {0:?}")]
    Timeout(Duration),
    #[error("more than {0} bytes without an answer")]
    TooLong(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Peek at `stream` until `decide`, given every byte so far (at most `max`), says `Some`, within
/// `timeout`.
pub async fn until<T>(
    stream: &TcpStream,
    max: usize,
    timeout: Duration,
    decide: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, PeekFailed> {
    match tokio::time::timeout(timeout, looking(stream, max, decide)).await {
        Ok(r) => r,
        Err(_) => Err(PeekFailed::Timeout(timeout)),
    }
}

async fn looking<T>(
    stream: &TcpStream,
    max: usize,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, PeekFailed> {
    let mut buf = vec![0u8; max];
    let mut seen = 0;
    loop {
        stream.readable().await?;
        // Peek without blocking; when it finds nothing new, readiness is cleared (the
        // `WouldBlock`) so that the next `readable` waits for more bytes, instead of waking at
        // once for the ones already peeked. Bytes that came between the peek and the clearing
        // are found by the peek that follows it.
        let got = stream.try_io(Interest::READABLE, || {
            let n = now(stream, &mut buf)?;
            if n == seen && n != 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match got {
            Ok(0) => return Err(PeekFailed::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match now(stream, &mut buf) {
                // Readiness is clear now: one more look, then wait.
                Ok(n) if n > seen => n,
                Ok(0) => return Err(PeekFailed::Closed),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        seen = n;
        if let Some(t) = decide(&buf[..n]) {
            return Ok(t);
        }
        if n == max {
            return Err(PeekFailed::TooLong(max));
        }
    }
}

/// `recv(MSG_PEEK | MSG_DONTWAIT)`: what has come so far, left on the socket.
fn now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use rustix::net::RecvFlags;
    rustix::net::recv(stream, buf, RecvFlags::PEEK | RecvFlags::DONTWAIT)
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

//! Telling HTTP/1.1 from h2c (HTTP/2 with prior knowledge) on a new client connection with a single
//! read; the connection's stream ([`crate::front::stream::Tracked::replay`]) then hands the bytes that read
//! took to whichever protocol gets the connection.
//!
//! hyper-util's automatic builder reads exactly the 24 bytes of the HTTP/2 preface first, so that
//! every HTTP/1.1 connection cost a second `recv` for the rest of its first request.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes taken by the first read: a whole ordinary request head fits.
const FIRST_READ: usize = crate::front::spare::READ_CHUNK;

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2,
}

/// Read the first bytes of `io`; `None` if it closed before saying anything.
pub async fn sniff<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Option<(Protocol, BytesMut)>> {
    let mut buf = crate::front::spare::take();
    buf.reserve(FIRST_READ);
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some((Protocol::Http1, buf)));
        }
        if buf.len() >= H2_PREFACE.len() {
            return Ok(Some((Protocol::H2, buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sniffed(parts: &[&'static [u8]]) -> Option<(Protocol, Vec<u8>)> {
        let mut b = tokio_test_stream(parts);
        let (p, first) = sniff(&mut b).await.unwrap()?;
        let mut out = first.to_vec();
        b.read_to_end(&mut out).await.unwrap();
        Some((p, out))
    }

    /// A reader that hands out `parts` one read at a time.
    fn tokio_test_stream(parts: &[&'static [u8]]) -> impl AsyncRead + Unpin {
        let mut chain: Box<dyn AsyncRead + Unpin> = Box::new(tokio::io::empty());
        for p in parts.iter().rev() {
            chain = Box::new(AsyncReadExt::chain(*p, chain));
        }
        chain
    }

    #[tokio::test]
    async fn http1_is_told_at_once_and_replayed_whole() {
        let req: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniffed(&[req]).await, Some((Protocol::Http1, req.to_vec())));
        // A first byte that is not 'P' is enough.
        let (p, all) = sniffed(&[b"G", b"ET / HTTP/1.1\r\n\r\n"]).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn the_h2_preface_is_recognised_even_in_pieces() {
        let (p, all) = sniffed(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\nframes"])
            .await
            .unwrap();
        assert_eq!(p, Protocol::H2);
        assert_eq!(all, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes");
        // A method that merely starts like the preface is HTTP/1.1.
        let (p, _) = sniffed(&[b"PRI", b"NT / HTTP/1.1\r\n\r\n"]).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert_eq!(sniffed(&[]).await, None);
    }
}

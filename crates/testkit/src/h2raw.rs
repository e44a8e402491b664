//! HTTP/2 frames written by hand, for abuse no well-behaved client commits (RFC 9113 §4, §6):
//! rapid resets, CONTINUATION floods, conflicting `:authority` and `host`. Header blocks use
//! only HPACK's static table and literals without indexing, so no encoder state is needed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A literal field without indexing, its name literal too (RFC 7541 §6.2.2).
pub fn literal(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 127 && value.len() < 127, "short literals only");
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// `GET /path` with `:authority`, from the static table (`:method GET`, `:scheme http`).
pub fn get(authority: &str, path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    // :path (static index 4) and :authority (index 1), literal values without indexing.
    b.push(0x04);
    b.push(path.len() as u8);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01);
    b.push(authority.len() as u8);
    b.extend_from_slice(authority.as_bytes());
    b
}

/// A connection that has sent the preface and an empty SETTINGS frame.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    hello(TcpStream::connect(addr).await.expect("connect")).await
}

/// Send the preface and an empty SETTINGS frame on `s` (a TLS stream whose ALPN chose h2, say).
pub async fn hello<S: AsyncWrite + Unpin>(mut s: S) -> S {
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.expect("write");
    s
}

/// The frames read until the peer closes or is quiet for `quiet`: (type, flags, stream, payload).
pub async fn read_frames<S: AsyncRead + Unpin>(
    s: &mut S,
    quiet: Duration,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(quiet, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while buf.len() >= i + 9 {
        let len =
            (usize::from(buf[i]) << 16) | (usize::from(buf[i + 1]) << 8) | usize::from(buf[i + 2]);
        if buf.len() < i + 9 + len {
            break;
        }
        let stream =
            u32::from_be_bytes([buf[i + 5], buf[i + 6], buf[i + 7], buf[i + 8]]) & 0x7fff_ffff;
        out.push((
            buf[i + 3],
            buf[i + 4],
            stream,
            buf[i + 9..i + 9 + len].to_vec(),
        ));
        i += 9 + len;
    }
    out
}

/// The error code of the first GOAWAY among `frames`.
pub fn goaway(frames: &[(u8, u8, u32, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == GOAWAY && f.3.len() >= 8)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

/// The `:status` of each response HEADERS frame, by stream (static-table statuses only).
pub fn statuses(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<(u32, u16)> {
    frames
        .iter()
        .filter(|f| f.0 == HEADERS && !f.3.is_empty())
        .map(|f| {
            let status = match f.3[0] & 0x7f {
                8 => 200,
                9 => 204,
                10 => 206,
                11 => 304,
                12 => 400,
                13 => 404,
                14 => 500,
                _ => 0,
            };
            (f.2, status)
        })
        .collect()
}

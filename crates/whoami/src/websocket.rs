//! A WebSocket echo (RFC 6455) at `/ws`, enough for the proxy's upgrade tests and for users
//! checking that WebSockets pass through: text and binary frames are echoed, pings answered.

use std::convert::Infallible;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{text, Body};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest frame payload echoed.
const MAX_PAYLOAD: u64 = 1 << 20;

pub(crate) fn accept(mut req: Request<Incoming>) -> Response<Body> {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .cloned()
        .filter(|_| is_ws)
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade\n".into(),
        );
    };
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    let accept = STANDARD.encode(sha.digest().bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = on_upgrade.await {
            let _ = echo(TokioIo::new(io)).await;
        }
    });
    let mut r = Response::new(
        Empty::<Bytes>::new()
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("base64 is ASCII"),
    );
    r
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            len = u64::from(io.read_u16().await?);
        } else if len == 127 {
            len = io.read_u64().await?;
        }
        if len > MAX_PAYLOAD || !masked {
            return Ok(()); // clients must mask; oversized frames end the echo
        }
        let mut mask = [0u8; 4];
        io.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let reply_op = match opcode {
            0x1 | 0x2 => opcode,
            0x9 => 0xA,
            0x8 => {
                write_frame(&mut io, 0x8, &payload).await?;
                return Ok(());
            }
            _ => continue,
        };
        write_frame(&mut io, reply_op, &payload).await?;
    }
}

async fn write_frame<S: tokio::io::AsyncWrite + Unpin>(
    io: &mut S,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

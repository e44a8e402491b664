//! Protocol upgrades (WebSocket): the handshake goes to the server on a dedicated connection; on
//! `101 Switching Protocols` both sides are joined by the byte pipe TCP routers use
//! ([`crate::tcp::pipe`]: half-closes passed on, closed after `timeouts.tunnel` idle).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::upstream::body::ProxyBody;
use crate::upstream::registry::Backend;
use crate::upstream::send::UpstreamError;

/// Forward an upgrade request and, if the server agrees, splice the two connections.
pub async fn forward(
    backend: Arc<Backend>,
    mut req: Request<Incoming>,
    dial: crate::upstream::pool::Dial,
    respond: Duration,
    pipe: crate::tcp::pipe::PipeConfig,
) -> Result<Response<ProxyBody>, UpstreamError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let stream = backend.pool.open(dial).await?;
    let (mut sender, conn) = http1::Builder::new()
        .handshake::<_, Incoming>(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Upgrade)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let in_flight = backend.state.start_request();
    let mut resp = match tokio::time::timeout(respond, sender.send_request(req)).await {
        Err(_) => return Err(UpstreamError::Timeout(respond)),
        Ok(Err(e)) => return Err(UpstreamError::Upgrade(e)),
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The server declined: relay its answer; this connection is not reused.
        let (parts, body) = resp.into_parts();
        let mut body_out = ProxyBody::empty();
        if !hyper::body::Body::is_end_stream(&body) {
            let b = http_body_util::BodyExt::collect(body)
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            body_out = ProxyBody::full(b);
        }
        return Ok(Response::from_parts(parts, body_out));
    }
    let server_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (Ok(client), Ok(server)) = (client_upgrade.await, server_upgrade.await) else {
            return;
        };
        let (mut c, mut s) = (TokioIo::new(client), TokioIo::new(server));
        let piped =
            crate::tcp::pipe::pipe(&mut c, &mut s, pipe, std::future::pending(), |_, _| {}).await;
        tracing::debug!(
            up = piped.up,
            down = piped.down,
            end = piped.end.as_str(),
            "upgraded connection ended"
        );
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, ProxyBody::empty()))
}

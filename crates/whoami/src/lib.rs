//! `tether whoami`: the backend the demo, the tests and the Docker images use. It plays both
//! jwilder/whoami and the first seed's express app:
//!
//! - any path answers with the server's name, host name, a per-session visit counter and the
//!   request's method, path and headers (`?format=json` for JSON);
//! - sessions live server-side under the application cookie `connect.sid`, as express-session does:
//!   a new session gets `Set-Cookie: connect.sid=...`, a known one counts up;
//! - `GET /health` answers `ok` (or 503 after `GET /health?set=down`, until `?set=up`): the
//!   target of `tether probe`, the image's HEALTHCHECK; `GET /ws` is a WebSocket echo;
//! - `?sleep=250ms` delays the answer, `?status=503` sets the status, `?chunks=N&interval=100ms`
//!   streams N chunks; a request body is read as a stream and its length reported.

mod session;
mod websocket;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use session::SESSION_COOKIE;

type Body = BoxBody<Bytes, Infallible>;

/// Counters a test can read to see what reached this server.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// A whoami server's identity.
#[derive(Debug, Clone)]
pub struct Whoami {
    pub name: String,
    pub hostname: String,
    /// Added to every answer (a slow replica, for least-requests demos and tests).
    pub delay: Duration,
    /// Sessions kept as files in this directory, shared by the replicas that mount it, instead of
    /// in memory.
    pub sessions: Option<std::path::PathBuf>,
}

impl Whoami {
    pub fn new(name: impl Into<String>) -> Whoami {
        Whoami {
            name: name.into(),
            hostname: hostname(),
            delay: Duration::ZERO,
            sessions: None,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

struct Shared {
    id: Whoami,
    stats: Arc<Stats>,
    sessions: session::Store,
    /// What `/health` reports.
    healthy: AtomicBool,
}

/// How long connections may finish their requests once a graceful stop began.
const GRACE: Duration = Duration::from_secs(10);

/// Serve until the future is dropped; dropping it closes every connection too.
pub async fn serve(listener: TcpListener, id: Whoami, stats: Arc<Stats>) {
    serve_until(listener, id, stats, std::future::pending()).await
}

/// Serve until `stop` completes, then stop gracefully (as an application should on SIGTERM): accept
/// nothing more, close idle connections, let requests in progress finish (up to 10 s).
pub async fn serve_until(
    listener: TcpListener,
    id: Whoami,
    stats: Arc<Stats>,
    stop: impl Future<Output = ()>,
) {
    let sessions = session::Store::new(id.sessions.clone());
    let shared = Arc::new(Shared {
        id,
        stats,
        sessions,
        healthy: AtomicBool::new(true),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.stats.connections.fetch_add(1, Relaxed);
                let _ = stream.set_nodelay(true);
                let svc_shared = shared.clone();
                let svc = hyper::service::service_fn(move |req| handle(svc_shared.clone(), req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let conn = graceful.watch(conn);
                conns.spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drop(listener);
    tracing::info!(name = %shared.id.name, "whoami stopping: finishing requests in progress");
    let _ = tokio::time::timeout(GRACE, graceful.shutdown()).await;
}

/// Bind and serve on `addr` (used by `tether whoami`).
/// Stops gracefully when `stop` completes.
pub async fn run(
    addr: SocketAddr,
    id: Whoami,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(name = %id.name, addr = %listener.local_addr()?, "whoami listening");
    serve_until(listener, id, Arc::default(), stop).await;
    Ok(())
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn duration(q: &HashMap<String, String>, key: &str) -> Duration {
    let v = q.get(key).map(String::as_str).unwrap_or("0");
    let (n, ms) = match v.strip_suffix("ms") {
        Some(n) => (n, true),
        None => (v.strip_suffix('s').unwrap_or(v), false),
    };
    let n: u64 = n.parse().unwrap_or(0).min(600_000);
    if ms {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    shared.stats.requests.fetch_add(1, Relaxed);
    if req.uri().path() == "/health" {
        match query(&req).get("set").map(String::as_str) {
            Some("down") => shared.healthy.store(false, Relaxed),
            Some("up") => shared.healthy.store(true, Relaxed),
            _ => {}
        }
        return Ok(if shared.healthy.load(Relaxed) {
            text(StatusCode::OK, "ok\n".into())
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "down\n".into())
        });
    }
    if req.uri().path() == "/ws" {
        return Ok(websocket::accept(req));
    }
    let q = query(&req);
    let delay = duration(&q, "sleep") + shared.id.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (session_id, visits, new_session) = shared.sessions.visit(req.headers());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let version = req.version();
    let headers = req.headers().clone();
    // Read the body as it arrives, counting bytes, never holding it whole.
    let mut body = req.into_body();
    let mut body_len = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            body_len += d.len() as u64;
        }
    }
    let status = q
        .get("status")
        .and_then(|s| s.parse().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let id = &shared.id;
    let mut resp = if let Some(n) = q.get("chunks").and_then(|n| n.parse::<u32>().ok()) {
        chunks(
            status,
            n.min(10_000),
            duration(&q, "interval"),
            id.name.clone(),
        )
    } else if q.get("format").map(String::as_str) == Some("json") {
        let hdrs: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect();
        let v = serde_json::json!({
            "name": id.name, "hostname": id.hostname, "visits": visits, "session": session_id,
            "method": method.as_str(), "uri": uri.to_string(), "headers": hdrs, "body_length": body_len,
        });
        let mut r = text(status, format!("{v}\n"));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let mut s = format!(
            "I'm {} on {} non unique visits {}\nName: {}\nHostname: {}\nVisits: {}\nBody-Length: {}\n{} {} {:?}\n",
            id.name, id.hostname, visits, id.name, id.hostname, visits, body_len, method, uri, version
        );
        for (k, v) in &headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        text(status, s)
    };
    resp.headers_mut().insert(
        "x-whoami-name",
        HeaderValue::from_str(&id.name).unwrap_or(HeaderValue::from_static("invalid")),
    );
    if new_session {
        let cookie = format!("{SESSION_COOKIE}={session_id}; Path=/; HttpOnly");
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("session ids are ASCII"),
        );
    }
    Ok(resp)
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn chunks(status: StatusCode, n: u32, interval: Duration, name: String) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for i in 0..n {
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            let chunk = Frame::data(Bytes::from(format!("chunk {i} from {name}\n")));
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed(ChannelBody(rx)));
    *r.status_mut() = status;
    r
}

/// A response body fed by a channel: each message is one frame, sent as soon as it is produced.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx)
    }
}

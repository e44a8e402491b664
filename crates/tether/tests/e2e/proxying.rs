//! Proxying: WebSocket, h2c, forwarded headers, hop-by-hop headers, streaming, errors, limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_testkit::{wait_until, Backend, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{one_service, Proxy, KEY, WEB};

#[tokio::test]
async fn websocket_echo_passes_through() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", p.addr()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for msg in ["hello", "through", "tether"] {
        ws.send(Message::text(msg)).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();
}

/// An h2c (prior knowledge) client connection.
pub(crate) async fn h2c(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn h2c_prior_knowledge_requests_are_served() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let mut send = h2c(p.addr()).await;
    for _ in 0..3 {
        let req = Request::get("http://example.com/h2?format=json")
            .body(Full::<Bytes>::default())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["headers"]["host"], "example.com",
            "the h2 authority becomes the Host header"
        );
        assert_eq!(v["uri"], "/h2?format=json");
    }
}

/// At shutdown (SIGTERM, or the old process of an upgrade) an h2 connection whose first
/// request has not come yet gets its GOAWAY only once that request has begun, or after 500 ms:
/// a client that queued its request as the connection opened would otherwise read the GOAWAY
/// first and refuse the request itself (hyper's client returns it as an error). The request is
/// answered and the GOAWAY follows, without error.
#[tokio::test]
async fn at_shutdown_an_h2_connections_first_request_is_answered_before_any_goaway() {
    use tether_testkit::h2raw::{self, frame, END_HEADERS, END_STREAM, HEADERS, SETTINGS};
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let addr = p.addr();
    let mut s = h2raw::connect(addr).await;
    let settings = frames_until(&mut s, Duration::from_secs(5), |f| {
        f.iter().any(|f| f.0 == SETTINGS && f.1 == 0)
    })
    .await;
    assert!(
        settings.iter().any(|f| f.0 == SETTINGS),
        "the server's SETTINGS: {settings:?}"
    );

    let stop = Instant::now();
    let stopping = tokio::spawn(p.instance.shutdown());
    tether_testkit::wait_for(
        "new connections refused",
        Duration::from_secs(5),
        || async { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    // What the server sends in the next 300 ms, before the request: no GOAWAY, unless this
    // machine was too slow to get here within the 500 ms (then the wait held, and that is all
    // this run can tell).
    let early = frames_until(&mut s, Duration::from_millis(300), |f| {
        h2raw::goaway(f).is_some()
    })
    .await;
    if h2raw::goaway(&early).is_some() {
        let waited = stop.elapsed();
        assert!(
            waited >= Duration::from_millis(450),
            "a GOAWAY {waited:?} after shutdown began, before any request: {early:?}"
        );
        return;
    }

    s.write_all(&frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &h2raw::get("a", "/"),
    ))
    .await
    .unwrap();
    let frames = frames_until(&mut s, Duration::from_secs(10), |f| {
        !h2raw::statuses(f).is_empty() && h2raw::goaway(f).is_some()
    })
    .await;
    assert_eq!(
        h2raw::statuses(&frames),
        vec![(1, 200)],
        "the request is answered: {frames:?}"
    );
    assert_eq!(
        h2raw::goaway(&frames),
        Some(0),
        "then GOAWAY, NO_ERROR: {frames:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown ends within the drain")
        .unwrap();
}

/// The frames read from `s` until `done` holds for them, the peer closes, or `limit` passes.
async fn frames_until(
    s: &mut TcpStream,
    limit: Duration,
    done: impl Fn(&[(u8, u8, u32, Vec<u8>)]) -> bool,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let frames = tether_testkit::h2raw::read_frames(&mut &buf[..], Duration::ZERO).await;
        if done(&frames) {
            return frames;
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return frames,
        }
    }
}

#[tokio::test]
async fn forwarded_headers_come_from_the_real_peer_and_hop_by_hop_headers_stop_here() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let mut c = p.client();
    let req = Request::get("/?format=json")
        .header("host", "app.example.com")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .header("connection", "x-secret, keep-alive")
        .header("x-secret", "hop")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .body(Full::<Bytes>::default())
        .unwrap();
    let r = c.send(req).await.unwrap();
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "a spoofed X-Forwarded-For is not trusted"
    );
    assert_eq!(h["x-forwarded-host"], "app.example.com");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(
        h["forwarded"], "for=127.0.0.1;proto=http",
        "the client's own Forwarded is replaced by the connection's"
    );
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the server: {h}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_forwarded_for_chain() {
    let a = Backend::spawn("a").await;
    let toml = one_service(&[&a], "").replace(
        KEY,
        &format!("{KEY}[forwarded]\ntrusted_proxies = [\"127.0.0.1\"]\n"),
    );
    let p = Proxy::start(&toml).await;
    let req = Request::get("/?format=json")
        .header("x-forwarded-for", "203.0.113.9")
        .body(Full::<Bytes>::default())
        .unwrap();
    let r = p.client().send(req).await.unwrap();
    assert_eq!(
        r.json()["headers"]["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
}

#[tokio::test]
async fn responses_stream_before_the_server_finishes() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let tcp = TcpStream::connect(p.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    let req = Request::get("/?chunks=3&interval=1500ms")
        .header("host", "x")
        .body(Full::<Bytes>::default())
        .unwrap();
    let mut body = send.send_request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"chunk 0"));
    assert!(
        start.elapsed() < Duration::from_millis(1400),
        "the first chunk waited for the rest: {:?}",
        start.elapsed()
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("chunk 2"));
}

#[tokio::test]
async fn large_request_bodies_are_forwarded_whole() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let body = Bytes::from(vec![b'x'; 8 << 20]);
    let r = p
        .client()
        .send(Request::post("/upload").body(Full::new(body)).unwrap())
        .await
        .unwrap();
    assert!(
        r.body.contains(&format!("Body-Length: {}", 8 << 20)),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn errors_are_404_502_503_and_504_with_short_bodies() {
    let a = Backend::spawn("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed at once
    let toml = format!(
        "{WEB}{KEY}[timeouts]\nupstream_response = \"300ms\"\n\
         [routes.ok]\nrule = \"PathPrefix(`/ok`)\"\nservice = \"ok\"\n\
         [routes.dead]\nrule = \"PathPrefix(`/dead`)\"\nservice = \"dead\"\n\
         [routes.empty]\nrule = \"PathPrefix(`/empty`)\"\nservice = \"empty\"\n\
         [services.ok]\nservers = [{{ url = \"{}\" }}]\n\
         [services.dead]\nservers = [{{ url = \"http://{dead}\" }}]\n\
         [services.empty]\n",
        a.url()
    );
    let p = Proxy::start(&toml).await;
    let mut c = p.client();
    let r = c.get("/nothing-here").await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::NOT_FOUND,
            "404 Not Found: no route matches this request\n"
        )
    );
    let r = c.get("/dead").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("service dead"), "{}", r.body);
    let r = c.get("/empty").await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = c.get("/ok?sleep=2s").await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        c.get("/ok").await.unwrap().status,
        200,
        "the client connection survives the errors"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_server() {
    let a = Backend::spawn("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ url = \"http://{dead}\" }}, {{ url = \"{}\" }}]\n",
        a.url()
    );
    let p = Proxy::start(&toml).await;
    let mut c = Client::without_cookies(p.addr());
    for i in 0..20 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let r = c
            .send(
                Request::builder()
                    .method(method)
                    .uri("/")
                    .body(Full::from("body"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{method} {i}: {}", r.body);
    }
    assert_eq!(a.requests(), 20);
}

async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Pipelined requests are answered in order, on one connection, through both HTTP/1.1 servers:
/// Tether's own takes the ordinary ones and hands the connection to hyper at the chunked body,
/// without losing a byte.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_a_handoff() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let req = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let r = raw(p.addr(), req).await;
    assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 4, "{r}");
    let at = |needle: &str| r.find(needle).unwrap_or_else(|| panic!("{needle} in {r}"));
    assert!(at("GET /1 ") < at("POST /2 ") && at("POST /2 ") < at("POST /3 "));
    assert!(at("POST /3 ") < at("GET /4 "), "{r}");
    assert!(at("Body-Length: 3") < at("Body-Length: 5"), "{r}");
    assert_eq!(a.requests(), 4);
}

/// HTTP/1.0 clients get a delimited answer and keep the connection only when they ask to.
#[tokio::test]
async fn http_1_0_keeps_alive_only_when_asked() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let once = raw(p.addr(), b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(once.starts_with("HTTP/1.1 200"), "{once}");
    assert!(
        once.to_ascii_lowercase().contains("connection: close"),
        "{once}"
    );
    let two = raw(
        p.addr(),
        b"GET /a HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(two.matches("HTTP/1.1 200").count(), 2, "{two}");
    assert!(
        two.to_ascii_lowercase().contains("connection: keep-alive"),
        "{two}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_4xx_and_never_reach_a_server() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let bad = raw(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let no_host = raw(p.addr(), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(100 * 1024)
    );
    let r = raw(p.addr(), huge.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(80)]);
    let smuggle = raw(
        p.addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await;
    assert!(smuggle.starts_with("HTTP/1.1 400"), "{smuggle}");
    let target = raw(p.addr(), b"GET /a<b> HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(target.starts_with("HTTP/1.1 400"), "{target}");
    assert_eq!(a.requests(), 0, "nothing malformed reached the server");
}

/// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): the server gets the chunked body's
/// real length and no second request can be smuggled behind it.
#[tokio::test]
async fn transfer_encoding_wins_over_content_length() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let r = raw(p.addr(), req).await;
    if r.starts_with("HTTP/1.1 200") {
        assert!(r.contains("Body-Length: 5"), "{r}");
        assert!(
            !r.to_ascii_lowercase().contains("content-length: 4\n"),
            "{r}"
        );
    } else {
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    }
    assert!(a.requests() <= 1, "one request in, at most one out");
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let a = Backend::spawn("a").await;
    let toml = one_service(&[&a], "").replace(
        KEY,
        &format!("{KEY}[timeouts]\nrequest_header = \"300ms\"\nidle = \"600ms\"\n"),
    );
    let p = Proxy::start(&toml).await;
    // A client that never finishes its request head is cut off.
    let start = Instant::now();
    let r = raw(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n").await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 408"), "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        start.elapsed()
    );
    // An idle keep-alive connection is closed after the idle timeout, not the header timeout.
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_start = Instant::now();
    let closed = async {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.map(|_| ())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection must be closed");
    let idle = idle_start.elapsed();
    assert!(
        idle >= Duration::from_millis(450),
        "closed after {idle:?}: the idle timeout, not the header timeout, applies"
    );
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let a = Backend::spawn("a").await;
    let p = Proxy::start(&one_service(&[&a], "")).await;
    let mut c = p.client();
    for _ in 0..50 {
        assert_eq!(c.get("/").await.unwrap().status, 200);
    }
    wait_until(Duration::from_secs(2), || async { a.requests() == 50 }).await;
    let conns = a
        .stats
        .connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns <= 2,
        "50 sequential requests opened {conns} upstream connections"
    );
}

/// A server that answers every request on a connection with `response`, whatever it asked.
async fn scripted_server(response: &'static [u8]) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A server's hop-by-hop fields (and those its Connection header names) never reach the client,
/// nor a Content-Length that its Transfer-Encoding overrides; its other fields do, on Tether's own
/// HTTP/1.1 server (written through) and on h2c (through a header map) alike.
#[tokio::test]
async fn a_servers_hop_by_hop_fields_stop_here() {
    let server = scripted_server(
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
Upgrade: h2c\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\nX-Kept: yes\r\n\r\n\
5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let toml = format!(
        "{WEB}{KEY}\n[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n\n\
[services.web]\nservers = [{{ name = \"s\", url = \"http://{server}\" }}]\n"
    );
    let p = Proxy::start(&toml).await;
    let r = raw(
        p.addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.matches("HTTP/1.1 200 OK").count(), 2, "{r}");
    let lower = r.to_ascii_lowercase();
    for gone in ["x-secret", "keep-alive", "upgrade", "content-length: 100"] {
        assert!(!lower.contains(gone), "{gone} reached the client: {r}");
    }
    assert_eq!(lower.matches("x-kept: yes\r\n").count(), 2, "{r}");
    assert_eq!(
        r.matches("\r\n\r\n5\r\nhello\r\n0\r\n\r\n").count(),
        2,
        "{r}"
    );

    let mut send = h2c(p.addr()).await;
    let req = Request::get("http://a/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["x-kept"], "yes");
    for gone in ["x-secret", "keep-alive", "upgrade", "content-length"] {
        assert!(!h.contains_key(gone), "{gone} reached the h2 client: {h:?}");
    }
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
}

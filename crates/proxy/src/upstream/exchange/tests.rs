//! The wire format against real sockets: a scripted server on 127.0.0.1 answers with exactly the
//! bytes each test gives it.

use super::*;
use hyper::body::Incoming;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;

#[test]
fn response_heads_parse_with_shared_values_and_framing() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"[..],
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(h.parts.status, 200);
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.keep_alive);
    let map = h.fields.to_map().unwrap();
    let a: Vec<_> = map.get_all("x-a").iter().collect();
    assert_eq!(a, ["1", "2"]);
    assert_eq!(h.fields.content_length, Some(5));
    assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
}

#[test]
fn hop_by_hop_fields_are_not_passed_on() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
           Upgrade: h2c\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX-Kept: 1\r\n\
           Date: Thu, 26 Nov 2026 00:00:00 GMT\r\n\r\n"[..],
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert!(!h.keep_alive);
    let mut out = Vec::new();
    h.fields.write(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "X-Kept: 1\r\nDate: Thu, 26 Nov 2026 00:00:00 GMT\r\n",
        "Content-Length is dropped too: Transfer-Encoding overrides it"
    );
    assert_eq!(h.fields.content_length, None);
    assert!(h.fields.has_date);
    assert_eq!(h.fields.to_map().unwrap().len(), 2);
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nConnection: date\r\nDate: x\r\nContent-Length: 0\r\n\r\n"[..],
    );
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert!(
        !h.fields.has_date,
        "a field the Connection header names is dropped"
    );
}

#[test]
fn framing_follows_rfc_9112() {
    let cases: [(&[u8], bool, Framing, bool); 9] = [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            false,
            Framing::Chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            false,
            Framing::UntilClose,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n",
            false,
            Framing::UntilClose,
            false,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
            false,
            Framing::Empty,
            true,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            false,
            Framing::Empty,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            true,
            Framing::Empty,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            false,
            Framing::Empty,
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            false,
            Framing::Length(2),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\r\n",
            false,
            Framing::Length(2),
            true,
        ),
    ];
    for (raw, is_head, framing, keep_alive) in cases {
        let h = parse_head(&mut BytesMut::from(raw), is_head)
            .unwrap()
            .unwrap();
        let what = String::from_utf8_lossy(raw);
        assert_eq!(h.framing, framing, "{what}");
        assert_eq!(h.keep_alive, keep_alive, "{what}");
    }
}

#[test]
fn bad_heads_are_errors_and_partial_heads_wait() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"NOTHTTP 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    ] {
        assert!(
            parse_head(&mut BytesMut::from(raw), false).is_err(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    let same = parse_head(
        &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"[..]),
        false,
    );
    assert_eq!(same.unwrap().unwrap().framing, Framing::Length(5));
    let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
    assert!(parse_head(&mut partial, false).unwrap().is_none());
    assert_eq!(partial.len(), 27, "nothing consumed");
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=crate::http1::fields::MAX_FIELDS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(
        parse_head(&mut BytesMut::from(&many[..]), false),
        Err(crate::http1::response::HeadError::TooLarge)
    ));
}

#[test]
fn an_unusual_reason_phrase_is_kept() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n"[..]);
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    let r = h
        .parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .unwrap();
    assert_eq!(r.as_bytes(), b"Fine Thanks");
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..]);
    let h = parse_head(&mut buf, false).unwrap().unwrap();
    assert!(h
        .parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .is_none());
}

/// A server that reads one request head (and `body_len` body bytes), answers `reply`, and sends
/// back what it read.
async fn scripted(
    reply: &'static [u8],
    body_len: usize,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            let n = s.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + body_len || n == 0 {
                    break;
                }
            }
        }
        s.write_all(reply).await.unwrap();
        got
    });
    (addr, task)
}

/// A client request with `body` through a real hyper server connection, as the handler sees it.
async fn outgoing(parts_of: impl FnOnce(&mut request::Parts), body: &'static [u8]) -> Outgoing {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let (parts, body) = req.into_parts();
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send((parts, body));
            }
            async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
            .await;
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    let req = if body.is_empty() {
        b"GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n".to_vec()
    } else {
        let mut r =
            b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        r.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        r.extend_from_slice(body);
        r.extend_from_slice(b"\r\n0\r\n\r\n");
        r
    };
    c.write_all(&req).await.unwrap();
    let (mut parts, body) = rx.await.unwrap();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink).await;
    });
    parts_of(&mut parts);
    crate::headers::strip_hop_by_hop(&mut parts.headers, false);
    let peer = crate::headers::Peer::new("127.0.0.1:5000".parse().unwrap(), &[]);
    let fwd = Forwarding::new(
        &parts.headers,
        &peer,
        crate::headers::ForwardedHost::HostHeader,
    );
    Outgoing::new(
        &parts,
        &fwd,
        crate::upstream::body::ClientBody::Streamed(body),
    )
}

async fn read_all(mut reader: BodyReader) -> (Vec<u8>, Option<Conn>) {
    let mut out = Vec::new();
    while let Some(d) = std::future::poll_fn(|cx| reader.poll_data(cx)).await {
        out.extend_from_slice(&d.unwrap());
    }
    (out, reader.into_idle())
}

#[tokio::test]
async fn a_bodiless_request_goes_in_one_head_and_a_length_body_is_read_whole() {
    let (addr, server) = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0).await;
    let mut req = outgoing(|_| {}, b"").await;
    assert!(req.is_replayable());
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let head = exchange(&mut conn, &mut req).await.unwrap();
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        sent.starts_with("GET /p?q=1 HTTP/1.1\r\nhost: a.test\r\n"),
        "{sent}"
    );
    assert!(
        !sent.contains("content-length") && !sent.contains("transfer-encoding"),
        "{sent}"
    );
    let reader = BodyReader::new(conn, head.framing, head.keep_alive).unwrap();
    let (body, idle) = read_all(reader).await;
    assert_eq!(body, b"hello");
    assert!(
        idle.is_some(),
        "a kept-alive connection goes back to the pool"
    );
}

#[tokio::test]
async fn a_chunked_request_body_is_forwarded_chunked_and_a_chunked_response_decoded() {
    let (addr, server) = scripted(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"b\r\nhello world\r\n0\r\n\r\n".len(),
    )
    .await;
    let mut req = outgoing(|_| {}, b"hello world").await;
    assert!(!req.is_replayable() && req.is_intact());
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let head = exchange(&mut conn, &mut req).await.unwrap();
    assert!(!req.is_intact(), "the body has been sent");
    assert_eq!(head.parts.status, 201);
    let sent = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        sent.contains("transfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"),
        "{sent}"
    );
    let reader = BodyReader::new(conn, head.framing, head.keep_alive).unwrap();
    let (body, idle) = read_all(reader).await;
    assert_eq!(body, b"abcde");
    assert!(idle.is_some());
}

#[tokio::test]
async fn a_body_until_close_ends_with_the_connection_and_is_not_pooled() {
    let (addr, server) = scripted(b"HTTP/1.1 200 OK\r\n\r\nall of it", 0).await;
    let mut req = outgoing(|_| {}, b"").await;
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let head = exchange(&mut conn, &mut req).await.unwrap();
    server.await.unwrap();
    let reader = BodyReader::new(conn, head.framing, head.keep_alive).unwrap();
    let (body, idle) = read_all(reader).await;
    assert_eq!(body, b"all of it");
    assert!(idle.is_none());
}

#[tokio::test]
async fn interim_responses_are_skipped_and_a_cut_body_is_an_error() {
    let (addr, server) = scripted(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        0,
    )
    .await;
    let mut req = outgoing(|_| {}, b"").await;
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let head = exchange(&mut conn, &mut req).await.unwrap();
    assert_eq!(head.parts.status, 200);
    server.await.unwrap();
    let mut reader = BodyReader::new(conn, head.framing, head.keep_alive).unwrap();
    let first = std::future::poll_fn(|cx| reader.poll_data(cx)).await;
    assert_eq!(&first.unwrap().unwrap()[..], b"short");
    let cut = std::future::poll_fn(|cx| reader.poll_data(cx)).await;
    assert!(matches!(cut, Some(Err(WireError::Io(_)))), "{cut:?}");
}

#[tokio::test]
async fn a_server_that_closes_without_a_word_is_told_apart() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
    let (s, _) = l.accept().await.unwrap();
    drop(s);
    let mut req = outgoing(|_| {}, b"").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // epoll reports the close: the idle connection is not handed out again.
    while conn.is_alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "close never noticed"
        );
        tokio::task::yield_now().await;
    }
    match exchange(&mut conn, &mut req).await {
        Err(WireError::Closed | WireError::Unsent(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_bodiless_requests_of_idempotent_methods_may_be_sent_again() {
    for (method, again) in [
        (http::Method::GET, true),
        (http::Method::DELETE, true),
        (http::Method::PUT, true),
        (http::Method::POST, false),
        (http::Method::PATCH, false),
    ] {
        let m = method.clone();
        let req = outgoing(move |p| p.method = m.clone(), b"").await;
        assert_eq!(req.is_replayable(), again, "{method}");
    }
    let put = outgoing(|p| p.method = http::Method::PUT, b"body").await;
    assert!(!put.is_replayable(), "a body is never sent twice");
}

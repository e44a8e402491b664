//! `compress` end to end, for `examples/compression.toml`: the client's preferred encoding,
//! decoded back to the server's exact bytes, with `Vary`, chunked framing and a weakened `ETag`;
//! each case where a response must go as it is; hyper's path (h2c) alike; and the counts.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tether_testkit::recorder::Recorder;
use tether_testkit::Client;

use crate::support::Proxy;

/// About 20 KB of HTML.
fn page() -> String {
    let mut s = String::from("<!doctype html><html><head><title>Shop</title></head><body><ul>\n");
    let mut i = 0;
    while s.len() < 20_000 {
        s.push_str(&format!("<li class=\"item\"><a href=\"/shop/item/{i}\">Item {i}</a> <span>{}.{:02} EUR</span></li>\n", 10 + i % 90, i % 100));
        i += 1;
    }
    s.push_str("</ul></body></html>\n");
    s
}

/// A server answering `body` with `fields`.
async fn serving(fields: &str, body: &str) -> Recorder {
    Recorder::replying(
        format!(
            "HTTP/1.1 200 OK\r\n{fields}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
    .await
}

fn example(rec: &Recorder) -> String {
    include_str!("../../../../examples/compression.toml")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &rec.url())
        .replace(
            "key_file = \"affinity.key.example\"",
            "key = \"test-key-test-key-test-key-test-key\"",
        )
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("encoding {other}"),
    }
    out
}

async fn get(p: &Proxy, accept: Option<&str>) -> tether_testkit::Reply {
    let mut c = Client::new(p.addr());
    let mut req = Request::get("/index.html");
    if let Some(a) = accept {
        req = req.header("accept-encoding", a);
    }
    c.send(req.body(Full::default()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn the_clients_preferred_encoding_is_streamed_and_decodes_to_the_servers_bytes() {
    let html = page();
    let rec = serving(
        "content-type: text/html; charset=utf-8\r\netag: \"v1\"\r\nvary: Cookie\r\n",
        &html,
    )
    .await;
    let p = Proxy::start(&example(&rec)).await;
    for (accept, want) in [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip;q=1, br;q=0.5", "gzip"),
    ] {
        let r = get(&p, Some(accept)).await;
        assert_eq!(r.status, 200);
        let h = &r.headers;
        assert_eq!(h["content-encoding"], want, "{accept}");
        assert!(!h.contains_key("content-length"), "{h:?}");
        assert_eq!(h["transfer-encoding"], "chunked");
        assert_eq!(h["vary"], "Cookie, Accept-Encoding");
        assert_eq!(h["etag"], "W/\"v1\"", "a strong ETag is weakened");
        assert_eq!(decode(want, &r.bytes), html.as_bytes(), "{want}");
        assert!(
            r.bytes.len() < html.len() / 4,
            "{want}: {} bytes",
            r.bytes.len()
        );
    }
    // No Accept-Encoding: as the server sent it.
    let r = get(&p, None).await;
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.headers["content-length"], html.len().to_string());
    assert_eq!(r.headers["etag"], "\"v1\"");
    assert_eq!(r.body, html);
}

#[tokio::test]
async fn responses_that_must_go_as_they_are_are_not_compressed() {
    let html = page();
    for (fields, body, why) in [
        ("content-type: image/png\r\n", html.as_str(), "an image"),
        (
            "content-type: text/html\r\n",
            "<p>short</p>",
            "below min_size",
        ),
        (
            "content-type: text/html\r\nset-cookie: sid=1\r\n",
            html.as_str(),
            "sets a cookie",
        ),
        (
            "content-type: text/html\r\ncontent-encoding: gzip\r\n",
            html.as_str(),
            "already encoded",
        ),
        (
            "content-type: text/html\r\ncache-control: no-transform\r\n",
            html.as_str(),
            "no-transform",
        ),
        ("", html.as_str(), "no content type"),
    ] {
        let rec = serving(fields, body).await;
        let p = Proxy::start(&example(&rec)).await;
        let r = get(&p, Some("gzip, br, zstd")).await;
        assert_eq!(r.status, 200, "{why}");
        let ce = r
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap());
        assert!(
            ce.is_none() || ce == Some("gzip") && why == "already encoded",
            "{why}: {ce:?}"
        );
        assert_eq!(r.body, body, "{why}");
    }
    // A partial response.
    let rec = Recorder::replying(
        format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-type: text/html\r\ncontent-range: bytes 0-1999/20000\r\ncontent-length: 2000\r\n\r\n{}",
            &html[..2000]
        )
        .into_bytes(),
    )
    .await;
    let p = Proxy::start(&example(&rec)).await;
    let r = get(&p, Some("gzip")).await;
    assert_eq!(r.status, 206);
    assert!(!r.headers.contains_key("content-encoding"));
    // An SVG image is text: compressed.
    let rec = serving("content-type: image/svg+xml\r\n", &html).await;
    let p = Proxy::start(&example(&rec)).await;
    assert_eq!(
        get(&p, Some("gzip")).await.headers["content-encoding"],
        "gzip"
    );
}

#[tokio::test]
async fn h2c_responses_are_compressed_alike() {
    let html = page();
    let rec = serving("content-type: text/html\r\n", &html).await;
    let p = Proxy::start(&example(&rec)).await;
    let mut h2 = crate::proxying::h2c(p.addr()).await;
    let req = Request::get("http://shop.test/")
        .header("accept-encoding", "br")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "br");
    assert!(!resp.headers().contains_key("content-length"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(decode("br", &body), html.as_bytes());
}

#[tokio::test]
async fn compressed_responses_and_the_bytes_saved_are_counted() {
    let html = page();
    let rec = serving("content-type: text/html\r\n", &html).await;
    let dir = tether_testkit::TempDir::new("tether-compress-observe");
    let (i, mut admin) = crate::support::with_admin(&example(&rec), &dir).await;
    let mut c = Client::new(i.addr("web"));
    let mut sent = 0;
    for _ in 0..3 {
        let r = c
            .send(
                Request::get("/")
                    .header("accept-encoding", "gzip")
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        sent += r.bytes.len();
    }
    let m = admin.get("/metrics").await.body;
    let line = |series: &str| {
        m.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series} not in\n{m}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(
        line("tether_middleware_responses_total{middleware=\"compress@file\",route=\"site\",code=\"200\"}"),
        3
    );
    // Counted once each body has gone out.
    let saved =
        line("tether_compress_bytes_saved_total{middleware=\"compress@file\",route=\"site\"}");
    assert_eq!(saved, (3 * html.len() - sent) as u64);
    let page = admin.get("/").await.body;
    assert!(
        page.contains(&format!("compress@file (200: 3, bytes saved: {saved})")),
        "the stats page shows it"
    );
}

#[tokio::test]
async fn a_slow_stream_reaches_the_client_as_it_comes_never_held_whole() {
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that sends the first half of a page, then waits to be told to send the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let first = "<p>the first half of the page</p>\n".repeat(100);
    let second = "<p>and the second half</p>\n".repeat(100);
    let (a, b) = (first.clone(), second.clone());
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n";
        s.write_all(format!("{head}{:x}\r\n{a}\r\n", a.len()).as_bytes())
            .await
            .unwrap();
        go_rx.await.unwrap();
        s.write_all(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes())
            .await
            .unwrap();
    });
    let rec_url = format!("http://{addr}");
    let text = include_str!("../../../../examples/compression.toml")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &rec_url)
        .replace(
            "key_file = \"affinity.key.example\"",
            "key = \"test-key-test-key-test-key-test-key\"",
        );
    let p = Proxy::start(&text).await;
    let mut c = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read and decode (the chunked framing, then gzip) as it comes.
    let mut wire = Vec::new();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut used = 0; // bytes of `wire` decoded from the framing
    let mut body_at = None;
    let mut go = Some(go_tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("the first half comes before the second is sent")
            .unwrap();
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
        if body_at.is_none() {
            if let Some(i) = wire.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&wire[..i]).to_ascii_lowercase();
                assert!(head.contains("content-encoding: gzip"), "{head}");
                body_at = Some(i + 4);
                used = i + 4;
            }
        }
        // Whole chunks only.
        while body_at.is_some() {
            let rest = &wire[used..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            if rest.len() < eol + 2 + size + 2 {
                break;
            }
            decoder.write_all(&rest[eol + 2..eol + 2 + size]).unwrap();
            used += eol + 2 + size + 2;
        }
        decoder.flush().unwrap();
        if go.is_some() && decoder.get_ref().len() >= first.len() {
            // The whole first half is in hand while the server still holds the second.
            assert_eq!(&decoder.get_ref()[..], first.as_bytes());
            go.take().unwrap().send(()).unwrap();
        }
    }
    assert!(go.is_none(), "the first half never came on its own");
    let all = decoder.finish().unwrap();
    assert_eq!(all, format!("{first}{second}").as_bytes());
}

//! Hostile input, byte for byte: each test sends what an attacker would over raw TCP, and asserts
//! both the status Tether answers and exactly what reached the recording backend behind it.

use std::time::Duration;

use tether_testkit::raw::{self, status};
use tether_testkit::recorder::Recorder;

use crate::support::{Proxy, KEY, WEB};

const QUIET: Duration = Duration::from_millis(300);

/// Tether with one route `/` to the recorder.
async fn proxy(rec: &Recorder) -> Proxy {
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ name = \"rec\", url = \"{}\" }}]\n",
        rec.url()
    );
    Proxy::start(&toml).await
}

#[tokio::test]
async fn two_host_fields_are_a_400_and_reach_no_server() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\nhost: a.example\r\n\r\n",
        // Over the hyper path too (a chunked body hands the connection over).
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let r = raw::exchange(p.addr(), req, QUIET).await;
        assert_eq!(status(&r), 400, "{r}");
    }
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
}

#[tokio::test]
async fn a_head_over_64_kib_is_a_431_however_it_arrives() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    let big = |n: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(n)
        )
    };
    // After one large request that leaves an enlarged buffer, a head over the limit arriving in
    // one read must still be refused: every try, not only some.
    for _ in 0..12 {
        let mut s = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(big(63 * 1024).as_bytes()).await.unwrap();
        let first = raw::read_all(&mut s, QUIET).await;
        assert_eq!(status(&first), 200, "{}", &first[..first.len().min(100)]);
        s.write_all(big(66 * 1024).as_bytes()).await.unwrap();
        let second = raw::read_all(&mut s, QUIET).await;
        assert_eq!(status(&second), 431, "{}", &second[..second.len().min(100)]);
    }
    let r = raw::exchange(p.addr(), big(70 * 1024).as_bytes(), QUIET).await;
    assert_eq!(status(&r), 431);
    let reached = rec.requests();
    assert!(
        reached.iter().all(|r| r.len() < 64 * 1024),
        "a head over the limit reached the server"
    );
}

#[tokio::test]
async fn an_h2c_upgrade_is_stripped_and_the_request_goes_on_as_http_1_1() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    let req = b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let r = raw::exchange(p.addr(), req, QUIET).await;
    assert_eq!(status(&r), 200, "{r}");
    let seen = rec.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let head = seen[0].to_ascii_lowercase();
    assert!(head.starts_with("get /up http/1.1\r\n"), "{head}");
    for gone in ["upgrade", "http2-settings", "connection: upgrade"] {
        assert!(!head.contains(gone), "{gone} reached the server: {head}");
    }
}

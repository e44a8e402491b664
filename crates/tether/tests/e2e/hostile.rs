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
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // Over the hyper path too (`Expect` hands the connection over).
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
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

/// Tether with `/` to `root` and `/admin` to `admin`.
async fn two_routes(root: &Recorder, admin: &Recorder, extra: &str) -> Proxy {
    let toml = format!(
        "{WEB}{KEY}{extra}\n[routes.root]\nrule = \"PathPrefix(`/`)\"\nservice = \"root\"\n[routes.admin]\nrule = \"PathPrefix(`/admin`)\"\nservice = \"admin\"\n[services.root]\nservers = [{{ url = \"{}\" }}]\n[services.admin]\nservers = [{{ url = \"{}\" }}]\n",
        root.url(),
        admin.url()
    );
    Proxy::start(&toml).await
}

#[tokio::test]
async fn paths_are_routed_and_forwarded_in_one_normal_form() {
    let (root, admin) = (Recorder::spawn().await, Recorder::spawn().await);
    let p = two_routes(&root, &admin, "").await;
    // Routed to /admin, and the server sees the path that was matched.
    for (path, seen) in [
        ("/x/../admin/a", "/admin/a"),
        ("/%61dmin/b?q=%2e", "/admin/b?q=%2e"),
        ("/./admin/%7Euser", "/admin/~user"),
        ("/admin/a%2fb", "/admin/a%2Fb"),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = raw::exchange(p.addr(), req.as_bytes(), QUIET).await;
        assert_eq!(status(&r), 200, "{path}: {r}");
        let last = admin.requests().pop().unwrap_or_default();
        assert!(
            last.starts_with(&format!("GET {seen} HTTP/1.1\r\n")),
            "{path}: {last}"
        );
    }
    // Refused: they reach neither server.
    for path in [
        "/%2e%2e/admin",
        "/../admin",
        "/a%00b",
        "/a\\b",
        "/a%5Cb",
        "/a%zz",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = raw::exchange(p.addr(), req.as_bytes(), QUIET).await;
        assert_eq!(status(&r), 400, "{path}: {r}");
    }
    assert!(root.requests().is_empty(), "{:?}", root.requests());
    assert_eq!(admin.requests().len(), 4);

    // The same over h2c.
    let mut h2 = crate::proxying::h2c(p.addr()).await;
    for (path, want) in [("/x/../admin/h2", 200), ("/%2e%2e/admin", 400)] {
        let req = http::Request::get(format!("http://a{path}"))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        assert_eq!(resp.status(), want, "{path}");
    }
    assert!(admin
        .requests()
        .last()
        .unwrap()
        .starts_with("GET /admin/h2 "));
    assert!(root.requests().is_empty());
}

#[tokio::test]
async fn merging_slashes_is_an_option_off_by_default() {
    let (root, admin) = (Recorder::spawn().await, Recorder::spawn().await);
    let p = two_routes(&root, &admin, "").await;
    let r = raw::exchange(p.addr(), b"GET //admin HTTP/1.1\r\nHost: a\r\n\r\n", QUIET).await;
    assert_eq!(status(&r), 200);
    assert!(
        root.requests()[0].starts_with("GET //admin "),
        "kept as sent"
    );
    let merged = two_routes(&root, &admin, "[http]\nmerge_slashes = true\n").await;
    let r = raw::exchange(
        merged.addr(),
        b"GET //admin HTTP/1.1\r\nHost: a\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(status(&r), 200);
    assert!(
        admin.requests()[0].starts_with("GET /admin "),
        "{:?}",
        admin.requests()
    );
}

/// Write `head`, then `body` bytes; the answer, or "" if none came within `wait`.
async fn send_slowly(
    addr: std::net::SocketAddr,
    head: &[u8],
    body: &[&[u8]],
    gap: Duration,
    wait: Duration,
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    for piece in body {
        tokio::time::sleep(gap).await; // pacing the attacker, not waiting for a condition
        if s.write_all(piece).await.is_err() {
            break;
        }
    }
    raw::read_all(&mut s, wait).await
}

#[tokio::test]
async fn an_invalid_chunked_body_is_a_400_and_its_server_connection_is_closed() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    let head = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for bad in [
        &b"5\r\nhello\r\nzz\r\n"[..], // invalid chunk size
        b"fffffffffffffffffffff\r\n", // size overflow
        b"5\r\nhelloXX\r\n0\r\n\r\n", // data longer than its size
    ] {
        let mut req = head.to_vec();
        req.extend_from_slice(bad);
        // The client keeps its connection open, as the attacker's twenty did.
        let r = send_slowly(p.addr(), &req, &[], Duration::ZERO, Duration::from_secs(5)).await;
        assert_eq!(status(&r), 400, "{:?}: {r}", String::from_utf8_lossy(bad));
    }
    // No server connection was kept for any of them: each request opened its own, closed. The
    // recorder may accept the last of them after its 400 reached the client (a worker on
    // another thread answers it): the three are awaited, not read at once.
    tether_testkit::wait_until(Duration::from_secs(5), || {
        std::future::ready(rec.connections() == 3)
    })
    .await;
    let before = rec.connections();
    let r = raw::exchange(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", QUIET).await;
    assert_eq!(status(&r), 200);
    assert_eq!(
        rec.connections(),
        before + 1,
        "a fresh connection, not a pooled one"
    );
}

/// Tether in front of `rec`, asking request bodies for 100 bytes a second over 1 s windows.
async fn slow_body_proxy(rec: &Recorder) -> Proxy {
    let toml = format!(
        "{WEB}{KEY}[timeouts]\nbody_min_rate = 100\nbody_rate_window = \"1s\"\n[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ url = \"{}\" }}]\n",
        rec.url()
    );
    Proxy::start(&toml).await
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_a_408() {
    let rec = Recorder::spawn().await;
    let p = slow_body_proxy(&rec).await;
    // Over 64 KiB, so it is streamed, then a byte at a time.
    let head = b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n";
    let first = vec![b'x'; 65 * 1024];
    let drip: Vec<&[u8]> = std::iter::once(&first[..])
        .chain(std::iter::repeat_n(&b"x"[..], 20))
        .collect();
    let r = send_slowly(
        p.addr(),
        head,
        &drip,
        Duration::from_millis(200),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status(&r), 408, "{r}");
    let r = raw::exchange(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", QUIET).await;
    assert_eq!(status(&r), 200, "the proxy goes on serving");
}

#[tokio::test]
async fn chunk_lines_with_a_bare_cr_lf_or_nul_or_over_4_kib_are_refused() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    let head = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
    for bad in [
        &b"5;a\rb\r\nhello\r\n0\r\n\r\n"[..],  // bare CR in an extension
        b"5\nhello\r\n0\r\n\r\n",              // bare LF ending the size line
        b"5;ext=1;a\0b\r\nhello\r\n0\r\n\r\n", // NUL in an extension
        long_ext.as_bytes(),                   // a chunk line over 4 KiB
    ] {
        let mut req = head.to_vec();
        req.extend_from_slice(bad);
        let r = send_slowly(p.addr(), &req, &[], Duration::ZERO, Duration::from_secs(5)).await;
        assert_eq!(
            status(&r),
            400,
            "{:?}: {r}",
            String::from_utf8_lossy(&bad[..bad.len().min(20)])
        );
    }
    // None of those bodies reached a server whole: the body (if it started) was cut.
    assert!(
        rec.requests().iter().all(|r| !r.ends_with("0\r\n\r\n")),
        "{:?}",
        rec.requests()
    );
    // A good one goes through, re-chunked: extensions and trailers never reach the server.
    let mut req = head.to_vec();
    req.extend_from_slice(b"5;ext=1;q=\"a b\"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n");
    let r = raw::exchange(p.addr(), &req, QUIET).await;
    assert_eq!(status(&r), 200, "{r}");
    let last = rec.requests().pop().unwrap();
    assert!(
        last.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{last:?}"
    );
    assert_eq!(last.matches("transfer-encoding").count(), 1, "{last:?}");
}

#[tokio::test]
async fn chunked_requests_keep_their_connection_and_their_bytes() {
    let rec = Recorder::spawn().await;
    let p = proxy(&rec).await;
    // Two chunked requests, pipelined, then a plain one, on one connection: each is framed, so
    // all three are answered on it.
    let big: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut req = Vec::new();
    req.extend_from_slice(b"POST /one HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in big.as_bytes().chunks(30_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req.extend_from_slice(
        b"POST /two HTTP/1.1\r\nhost: a\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    req.extend_from_slice(b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let r = raw::exchange(p.addr(), &req, Duration::from_secs(5)).await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 3, "{r}");
    let seen = rec.requests();
    let one = seen.iter().find(|r| r.starts_with("POST /one")).unwrap();
    let body: String = one
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n")
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(body.len(), big.len());
    assert!(body == big, "the body reached the server unchanged");
    assert!(seen
        .iter()
        .any(|r| r.starts_with("POST /two") && r.ends_with("3\r\nabc\r\n0\r\n\r\n")));
}

#[tokio::test]
async fn a_chunked_body_slower_than_the_minimum_rate_is_a_408() {
    let rec = Recorder::spawn().await;
    let p = slow_body_proxy(&rec).await;
    let head = b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let drip: Vec<&[u8]> = std::iter::repeat_n(&b"1\r\nx\r\n"[..], 20).collect();
    let r = send_slowly(
        p.addr(),
        head,
        &drip,
        Duration::from_millis(200),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status(&r), 408, "{r}");
}

#[tokio::test]
async fn limits_are_settings_with_their_own_statuses() {
    let rec = Recorder::spawn().await;
    let toml = format!(
        "{WEB}{KEY}[limits]\nhead = \"4KiB\"\nheaders = 16\nuri = \"1KiB\"\nbody = \"1KiB\"\nconnections_per_client = 3\n\
         [routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n\
         [routes.upload]\nrule = \"PathPrefix(`/upload`)\"\nservice = \"web\"\nmax_body = \"100KiB\"\n\
         [services.web]\nservers = [{{ url = \"{}\" }}]\n",
        rec.url()
    );
    let p = Proxy::start(&toml).await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(5000)
    );
    let fields: String = (0..20).map(|i| format!("X-F{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    let uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2000));
    let body = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n{}",
        "b".repeat(2000)
    );
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n400\r\n{}\r\n0\r\n\r\n",
        "c".repeat(1024),
        "c".repeat(1024)
    );
    for (what, req, want) in [
        ("head", head.as_bytes(), 431),
        ("headers", many.as_bytes(), 431),
        ("uri", uri.as_bytes(), 414),
        ("body", body.as_bytes(), 413),
        ("chunked body", chunked.as_bytes(), 413),
    ] {
        let r = raw::exchange(p.addr(), req, QUIET).await;
        assert_eq!(status(&r), want, "{what}: {}", &r[..r.len().min(120)]);
    }
    let n = rec
        .requests()
        .iter()
        .filter(|r| r.starts_with("POST"))
        .count();
    assert!(
        n <= 1,
        "only the streamed body's head may reach the server: {:?}",
        rec.requests()
    );
    // A route's own limit wins over the global one.
    let upload = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n{}",
        "b".repeat(2000)
    );
    let r = raw::exchange(p.addr(), upload.as_bytes(), QUIET).await;
    assert_eq!(status(&r), 200, "{r}");

    // Three connections from one address are admitted; the fourth is refused with 429.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(status(&raw::read_all(&mut s, QUIET).await), 200);
        held.push(s);
    }
    let r = raw::exchange(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", QUIET).await;
    assert_eq!(status(&r), 429, "{r}");
    drop(held);
    tether_testkit::wait_for("a place is free again", Duration::from_secs(2), || async {
        status(&raw::exchange(p.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", QUIET).await) == 200
    })
    .await;
}

//! The traffic middlewares end to end, for `examples/traffic-limits.toml`: a rate limit that
//! answers 429 with `Retry-After` per client address (which a forwarded field from an untrusted
//! peer cannot change) or per API key, an in-flight limit that frees a place once a response
//! has gone out, and the 429s counted per route and middleware.

use std::net::SocketAddr;
use std::time::Duration;

use tether_testkit::raw::{self, status};
use tether_testkit::Backend;
use tokio::io::AsyncWriteExt;

/// Every request says `Connection: close`: an answer ends with the connection, well before this.
const QUIET: Duration = Duration::from_secs(5);

/// `examples/traffic-limits.toml`, served on a free port in front of `backend`.
fn example(backend: &Backend) -> String {
    include_str!("../../../../examples/traffic-limits.toml")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &backend.url())
        .replace(
            "key_file = \"affinity.key.example\"",
            "key = \"test-key-test-key-test-key-test-key\"",
        )
}

/// One request from local address `from` (any of 127.0.0.0/8), its whole answer.
async fn from(from: &str, to: SocketAddr, req: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.expect("connect");
    s.write_all(req.as_bytes()).await.unwrap();
    raw::read_all(&mut s, QUIET).await
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n{extra}Connection: close\r\n\r\n")
}

fn retry_after(r: &str) -> u64 {
    r.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no Retry-After in {r}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_rate_limit_answers_429_per_client_and_forwarded_fields_do_not_evade_it() {
    let backend = Backend::spawn("app").await;
    let p = crate::support::Proxy::start(&example(&backend)).await;
    let web = p.addr();
    // The burst of 3 passes, whatever X-Forwarded-For the client claims.
    for i in 0..3 {
        let xff = format!("X-Forwarded-For: 203.0.113.{i}\r\n");
        let r = from("127.0.0.1", web, &get("/login", &xff)).await;
        assert_eq!(status(&r), 200, "{r}");
    }
    let r = from(
        "127.0.0.1",
        web,
        &get("/login", "X-Forwarded-For: 198.51.100.7\r\n"),
    )
    .await;
    assert_eq!(status(&r), 429, "{r}");
    // 5 a minute: one more in 12 s.
    let wait = retry_after(&r);
    assert!((1..=12).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        backend.requests(),
        3,
        "a refused request never reaches the server"
    );
    // Another client address has a bucket of its own; another route has no limit of this one.
    let r = from("127.0.0.2", web, &get("/login", "")).await;
    assert_eq!(status(&r), 200, "{r}");
    let r = from("127.0.0.1", web, &get("/export/a", "")).await;
    assert_eq!(status(&r), 200, "{r}");
}

#[tokio::test]
async fn a_rate_limit_by_header_counts_each_key_and_a_changed_table_keeps_the_buckets() {
    let backend = Backend::spawn("app").await;
    let text = example(&backend).replace("average = 100\nburst = 200", "average = 1\nburst = 2");
    let p = crate::support::Proxy::start(&text).await;
    let web = p.addr();
    for _ in 0..2 {
        let r = from("127.0.0.1", web, &get("/export/a", "X-Api-Key: k1\r\n")).await;
        assert_eq!(status(&r), 200, "{r}");
    }
    let r = from("127.0.0.1", web, &get("/export/a", "X-Api-Key: k1\r\n")).await;
    assert_eq!(status(&r), 429, "{r}");
    let r = from("127.0.0.1", web, &get("/export/a", "X-Api-Key: k2\r\n")).await;
    assert_eq!(status(&r), 200, "another key has its own bucket: {r}");
    // A change elsewhere in the table does not refill the buckets.
    p.reload(&format!(
        "{text}\n[routes.other]\nrule = \"Path(`/other`)\"\nservice = \"app\"\n"
    ))
    .await;
    let r = from("127.0.0.1", web, &get("/export/a", "X-Api-Key: k1\r\n")).await;
    assert_eq!(status(&r), 429, "{r}");
}

#[tokio::test]
async fn an_in_flight_limit_frees_a_place_once_a_response_has_gone_out() {
    let backend = Backend::spawn_slow("app", Duration::from_millis(1500)).await;
    let p = crate::support::Proxy::start(&example(&backend)).await;
    let web = p.addr();
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { from("127.0.0.1", web, &get("/export/a", "")).await }))
        .collect();
    tether_testkit::wait_for(
        "both exports to reach the server",
        Duration::from_secs(10),
        || std::future::ready(backend.requests() == 2),
    )
    .await;
    let r = from("127.0.0.1", web, &get("/export/b", "")).await;
    assert_eq!(status(&r), 429, "a third at once: {r}");
    let r = from("127.0.0.2", web, &get("/export/b", "")).await;
    assert_eq!(status(&r), 200, "another client has its own places: {r}");
    for s in slow {
        assert_eq!(status(&s.await.unwrap()), 200);
    }
    let r = from("127.0.0.1", web, &get("/export/c", "")).await;
    assert_eq!(status(&r), 200, "the places are free again: {r}");
}

#[tokio::test]
async fn the_429s_are_counted_per_route_and_middleware() {
    let backend = Backend::spawn("app").await;
    let dir = tether_testkit::TempDir::new("tether-traffic-observe");
    let (i, mut admin) = crate::support::with_admin(&example(&backend), &dir).await;
    let web = i.addr("web");
    for _ in 0..5 {
        from("127.0.0.1", web, &get("/login", "")).await;
    }
    let m = admin.get("/metrics").await.body;
    let series = "tether_middleware_responses_total{middleware=\"login-rate@file\",route=\"login\",code=\"429\"}";
    let line = m
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("{series} not in\n{m}"));
    assert!(line.ends_with(" 2"), "{line}");
    let stats = admin.get("/api/stats").await.json();
    let route = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "login")
        .unwrap()
        .clone();
    assert_eq!(
        route["middlewares"][0]["name"], "login-rate@file",
        "{route}"
    );
    assert_eq!(route["middlewares"][0]["answered"]["429"], 2, "{route}");
    let page = admin.get("/").await.body;
    assert!(
        page.contains("login-rate@file (429: 2)"),
        "the stats page shows it"
    );
}

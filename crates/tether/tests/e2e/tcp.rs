//! TCP routing end to end, for `examples/tcp.toml`: a real `redis-server` behind a
//! `protocol = "tcp"` entrypoint driven by `redis-cli` through Tether; two real TLS servers
//! (`openssl s_server`, each with its own certificate) passed through by SNI on the port where
//! Tether also terminates TLS for its HTTP routes; a connection no router takes is closed.

use std::net::SocketAddr;
use std::time::Duration;

use tether_testkit::programs::{self, Program};
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::{Backend, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::support::Proxy;

/// `examples/tcp.toml` on loopback ports, its servers replaced by `servers` (name, address).
fn example(dir: &TempDir, servers: &[(&str, String)], app: &Backend) -> String {
    let mut text = include_str!("../../../../examples/tcp.toml")
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("0.0.0.0:6380", "127.0.0.1:0")
        .replace("http://127.0.0.1:9001", &app.url())
        .replace(
            "\"certs/app.crt\"",
            &format!("{:?}", dir.path().join("app.crt")),
        )
        .replace(
            "\"certs/app.key\"",
            &format!("{:?}", dir.path().join("app.key")),
        );
    for (from, to) in servers {
        text = text.replace(from, to);
    }
    text + crate::support::KEY
}

async fn redis_cli(at: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &at.port().to_string()])
        .args(args)
        .output()
        .await
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn redis_cli_reaches_redis_through_a_tcp_router() {
    let Some(redis) = Program::redis().await else {
        return;
    };
    if !programs::installed("redis-cli", "redis-tools") {
        return;
    }
    let dir = TempDir::new("tether-tcp");
    TestCert::write(dir.path(), "app", &["app.example.com"]);
    let app = Backend::spawn("app-1").await;
    let toml = example(&dir, &[("127.0.0.1:6379", redis.addr.to_string())], &app);
    let p = Proxy::start(&toml).await;
    let cache = p.instance.addr("cache");
    assert_eq!(redis_cli(cache, &["set", "greeting", "hello"]).await, "OK");
    assert_eq!(redis_cli(cache, &["get", "greeting"]).await, "hello");
    // A value of a megabyte goes both ways whole.
    let big = "x".repeat(1 << 20);
    let mut c = tokio::net::TcpStream::connect(cache).await.unwrap();
    let set = format!(
        "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n{big}\r\n",
        big.len()
    );
    c.write_all(set.as_bytes()).await.unwrap();
    c.write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        .await
        .unwrap();
    // Half-closed: redis answers what it was sent, then closes its side.
    c.write_all(b"*1\r\n$4\r\nQUIT\r\n").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).await.unwrap();
    let want = format!("+OK\r\n${}\r\n{big}\r\n+OK\r\n", big.len());
    assert!(got == want.as_bytes(), "{} bytes back", got.len());
    // The health check connects: the server is in rotation, and HTTP is unaffected.
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn passthrough_by_sni_and_http_share_one_tls_port() {
    let dir = TempDir::new("tether-passthrough");
    let tether_cert = TestCert::write(dir.path(), "app", &["app.example.com"]);
    let db_cert = TestCert::write(dir.path(), "db", &["db.example.com"]);
    let mq_cert = TestCert::write(dir.path(), "mq", &["mq.example.com"]);
    let Some(db) = Program::tls_server(&db_cert.cert_file, &db_cert.key_file).await else {
        return;
    };
    let Some(mq) = Program::tls_server(&mq_cert.cert_file, &mq_cert.key_file).await else {
        return;
    };
    let app = Backend::spawn("app-1").await;
    let toml = example(
        &dir,
        &[
            // Both db servers are the one openssl: consistent hashing picks either.
            ("127.0.0.1:9443", db.addr.to_string()),
            ("127.0.0.1:9444", db.addr.to_string()),
            ("127.0.0.1:9445", mq.addr.to_string()),
        ],
        &app,
    );
    let p = Proxy::start(&toml).await;
    let tls = p.instance.addr("websecure");
    // Each passthrough name reaches its own server, whose certificate the client sees.
    for (sni, cert) in [
        ("db.example.com", &db_cert),
        ("mq.example.com", &mq_cert),
        ("eu.mq.example.com", &mq_cert),
        ("DB.Example.COM", &db_cert),
    ] {
        let mut h = connect(tls, Some(sni), &[]).await.unwrap();
        assert!(h.cert == cert.der, "{sni}: the server's own certificate");
        h.stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut page = Vec::new();
        let _ = h.stream.read_to_end(&mut page).await;
        let page = String::from_utf8_lossy(&page);
        assert!(page.starts_with("HTTP/1.0 200 ok"), "{sni}: {page}");
        assert!(page.contains("s_server"), "{sni}: openssl's page: {page}");
    }
    // A hello offering acme-tls/1 alone (a CA validating TLS-ALPN-01) is Tether's, never a
    // passthrough server's: with no validation pending here, no handshake.
    let acme = connect(tls, Some("db.example.com"), &["acme-tls/1"]).await;
    assert!(
        acme.is_err(),
        "an ACME validation handshake reached the passthrough server"
    );
    // Any other name, and none, is Tether's: its certificate, and its HTTP routes.
    for sni in [Some("app.example.com"), Some("other.example.org"), None] {
        let mut h = connect(tls, sni, &["http/1.1"]).await.unwrap();
        assert!(h.cert == tether_cert.der, "{sni:?}: Tether's certificate");
        h.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = Vec::new();
        let _ = h.stream.read_to_end(&mut resp).await;
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 200"), "{sni:?}: {resp}");
        assert!(resp.contains("app-1"), "{sni:?}: {resp}");
    }
}

/// Send `data` on a new connection to `at`, close the sending half, and read all that comes back.
async fn echoed(at: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
    c.write_all(data).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
        .await
        .expect("echoed in time")
        .unwrap();
    back
}

fn echo_config(echo: SocketAddr) -> String {
    let dead = programs::free_port();
    format!(
        r#"
[entrypoints]
web = "127.0.0.1:0"
echo = {{ address = "127.0.0.1:0", protocol = "tcp" }}
only_far = {{ address = "127.0.0.1:0", protocol = "tcp" }}

[tcp.routers.echo]
rule = "HostSNI(`*`)"
entrypoints = ["echo"]
service = "echo"

[tcp.routers.far]
rule = "ClientIP(`10.0.0.0/8`)"
entrypoints = ["only_far"]
service = "echo"

[tcp.services.echo]
servers = [
  {{ name = "dead", address = "127.0.0.1:{dead}" }},
  {{ name = "live", address = "{echo}" }},
]
{}"#,
        crate::support::KEY
    )
}

#[tokio::test]
async fn a_connection_no_router_takes_is_closed_and_a_dead_server_is_skipped() {
    let p = Proxy::start(&echo_config(tether_testkit::echo_server().await)).await;
    // Round robin starts on either; the dead one is tried and the live one answers, each time.
    for _ in 0..4 {
        assert_eq!(echoed(p.instance.addr("echo"), b"ping").await, b"ping");
    }
    // From 127.0.0.1 no router of `only_far` matches: closed, nothing sent.
    let mut c = tokio::net::TcpStream::connect(p.instance.addr("only_far"))
        .await
        .unwrap();
    let mut b = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut b))
        .await
        .expect("closed in time");
    assert!(n.is_err() || b.is_empty(), "nothing is answered: {b:?}");
}

#[tokio::test]
async fn tcp_traffic_is_counted_in_metrics_the_stats_and_the_access_log() {
    use tether_proxy::upstream::meter::{Format, Target};
    let dir = TempDir::new("tether-tcp-seen");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, echo_config(tether_testkit::echo_server().await)).unwrap();
    let log = dir.path().join("access.log");
    let mut opts =
        tether::app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin = tether::app::AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
    opts.access_log = Some((Format::Json, Target::File(log.clone())));
    let i = tether::app::start(opts).await.expect("start");
    let mut admin = tether_testkit::Admin::new(i.admin.unwrap(), None);
    let data = vec![7u8; 1000];
    for _ in 0..3 {
        assert_eq!(echoed(i.addr("echo"), &data).await, data);
    }
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    tether_testkit::wait_for(
        "3 lines in the access log",
        Duration::from_secs(5),
        || async { lines().len() == 3 },
    )
    .await;
    for l in lines() {
        assert_eq!(l["protocol"], "TCP", "{l}");
        assert_eq!(l["router"], "echo", "{l}");
        assert_eq!(l["service"], "echo", "{l}");
        assert_eq!(l["server"], "live", "{l}");
        assert_eq!(l["client"], "127.0.0.1", "{l}");
        assert_eq!(
            (l["bytes_in"].as_u64(), l["bytes_out"].as_u64()),
            (Some(1000), Some(1000)),
            "{l}"
        );
        assert_eq!(l["end"], "closed", "{l}");
    }
    let m = admin.get("/metrics").await.body;
    let sample = |series: &str| -> Option<f64> {
        m.lines().find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().ok()).flatten()
        })
    };
    assert_eq!(
        sample("tether_tcp_connections_total{service=\"echo\",server=\"live\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample("tether_tcp_connections_total{service=\"echo\",server=\"(all)\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample("tether_tcp_bytes_total{service=\"echo\",server=\"(all)\",direction=\"in\"}"),
        Some(3000.0)
    );
    assert_eq!(
        sample("tether_tcp_bytes_total{service=\"echo\",server=\"live\",direction=\"out\"}"),
        Some(3000.0)
    );
    assert_eq!(
        sample("tether_tcp_active_connections{service=\"echo\",server=\"(all)\"}"),
        Some(0.0)
    );
    assert!(
        sample("tether_tcp_connect_errors_total{service=\"echo\",server=\"dead\"}") >= Some(1.0),
        "{m}"
    );
    assert!(
        !m.contains("tether_service_requests_total{service=\"echo\""),
        "no HTTP series for a TCP service"
    );
    crate::observe::promtool(&m).await;
    let stats: serde_json::Value =
        serde_json::from_str(&admin.get("/api/stats").await.body).unwrap();
    let svc = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "echo")
        .unwrap();
    assert_eq!(svc["tcp"]["connections"], 3, "{svc}");
    assert_eq!(svc["tcp"]["active"], 0, "{svc}");
    i.shutdown().await;
}

#[tokio::test]
async fn connections_per_client_counts_tcp_connections_too() {
    let toml = echo_config(tether_testkit::echo_server().await)
        + "\n[limits]\nconnections_per_client = 2\n";
    let p = Proxy::start(&toml).await;
    let at = p.instance.addr("echo");
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(at).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut b = [0; 4];
        c.read_exact(&mut b).await.unwrap();
        open.push(c);
    }
    // A third from the same address is closed unanswered (no HTTP 429 on a TCP port).
    let mut third = tokio::net::TcpStream::connect(at).await.unwrap();
    let _ = third.write_all(b"ping").await;
    let mut b = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut b))
        .await
        .expect("closed in time");
    assert!(r.is_err() || b.is_empty(), "nothing answered: {b:?}");
    // One closed, a new one is taken.
    drop(open.pop());
    tether_testkit::wait_for_value("a place freed", Duration::from_secs(5), || async {
        let mut c = tokio::net::TcpStream::connect(at)
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut b = [0; 4];
        match tokio::time::timeout(Duration::from_millis(500), c.read_exact(&mut b)).await {
            Ok(Ok(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// A TCP service with `servers` (empty: none yet) and `wait_for_server`.
fn waiting_config(servers: &str, wait: &str) -> String {
    format!(
        r#"
[entrypoints]
web = "127.0.0.1:0"
db = {{ address = "127.0.0.1:0", protocol = "tcp" }}

[tcp.routers.db]
rule = "HostSNI(`*`)"
entrypoints = ["db"]
service = "db"

[tcp.services.db]
servers = [{servers}]
wait_for_server = "{wait}"
{}"#,
        crate::support::KEY
    )
}

#[tokio::test]
async fn a_connection_to_a_tcp_service_without_a_server_waits_for_one_as_a_request_does() {
    let p = Proxy::start(&waiting_config("", "5s")).await;
    let db = p.instance.addr("db");
    // Connected while the service has no server (a rolling update's moment): held, not closed.
    let mut c = tokio::net::TcpStream::connect(db).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    tether_testkit::wait_for("the connection waiting", Duration::from_secs(5), || async {
        p.instance
            .control
            .store()
            .load()
            .services
            .iter()
            .any(|s| s.stats.waiting.load(std::sync::atomic::Ordering::Relaxed) == 1)
    })
    .await;
    // The server comes: the waiting connection is piped to it.
    let echo = tether_testkit::echo_server().await;
    p.reload(&waiting_config(
        &format!("{{ name = \"echo\", address = \"{echo}\" }}"),
        "5s",
    ))
    .await;
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(back, b"ping");
    // With no wait, the connection is closed at once, without a byte (or reset, as the
    // client's bytes were never read).
    let p = Proxy::start(&waiting_config("", "0s")).await;
    let mut c = tokio::net::TcpStream::connect(p.instance.addr("db"))
        .await
        .unwrap();
    let _ = c.write_all(b"ping").await;
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
        .await
        .expect("closed in time");
    assert!(
        back.is_empty()
            && read.map_or_else(
                |e| e.kind() == std::io::ErrorKind::ConnectionReset,
                |n| n == 0
            ),
        "closed without a byte"
    );
}

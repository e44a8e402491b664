//! The PROXY protocol with a real HAProxy on both sides: HAProxy in front of Tether sending
//! `send-proxy-v2`, so that the address Tether forwards is the one HAProxy saw (and a header
//! from a peer Tether does not trust is closed unread); and Tether's own header, v1 and v2,
//! read by HAProxy's `accept-proxy` as the server of a TCP service; and a TLS passthrough behind
//! another proxy, which hands on the addresses of the header it received.

use std::net::SocketAddr;
use std::time::Duration;

use tether_proxy::proxy_protocol::{parse, Parsed};
use tether_testkit::programs::Program;
use tether_testkit::recorder::Recorder;
use tether_testkit::tls::{connect_over, TestCert};
use tether_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Proxy, KEY};

/// A connection to `to` from the loopback address `from` (all of 127/8 is this host's).
async fn from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(to).await.unwrap()
}

/// One GET on `c`, and all that comes back until the server closes. A connection Tether closes
/// unread may be reset under the writes (the kernel answers data sent to a closed socket with a
/// reset): that too is nothing answered.
async fn get(mut c: TcpStream, head: &[u8]) -> String {
    if c.write_all(head).await.is_err()
        || c.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
    {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("answered or closed in time");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn haproxy_in_front_gives_tether_the_clients_address_and_an_untrusted_header_is_closed() {
    let dir = TempDir::new("tether-pp-in");
    let rec = Recorder::spawn().await;
    let toml = format!(
        r#"
[entrypoints]
web = {{ address = "127.0.0.1:0", proxy_protocol = {{ trusted = ["127.0.0.1/32"], timeout = "2s" }} }}

[routes.app]
rule = "Host(`app.test`)"
service = "app"

[services.app]
servers = [{{ url = "{}" }}]
{KEY}"#,
        rec.url()
    );
    let p = Proxy::start(&toml).await;
    let tether = p.addr();
    let Some(haproxy) = Program::haproxy(dir.path(), |port| {
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             listen front\n  bind 127.0.0.1:{port}\n  server tether {tether} send-proxy-v2\n"
        )
    })
    .await
    else {
        return;
    };
    // The client is 127.0.0.2; HAProxy, Tether's peer, is 127.0.0.1.
    let answer = get(from([127, 0, 0, 2], haproxy.addr).await, b"").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    let head = seen[0].to_ascii_lowercase();
    assert!(head.contains("x-forwarded-for: 127.0.0.2\r\n"), "{head}");

    // The same header straight from a peer outside `trusted` (127.0.0.3): closed unread.
    let header = tether_proxy::proxy_protocol::encode(
        tether_model::ProxyVersion::V2,
        "198.51.100.1:4000".parse().unwrap(),
        tether,
    );
    let answer = get(from([127, 0, 0, 3], tether).await, &header).await;
    assert_eq!(answer, "", "nothing is answered");
    // A trusted peer without a header (optional is false): closed too.
    let answer = get(from([127, 0, 0, 1], tether).await, b"").await;
    assert_eq!(answer, "");
    // A malformed header from a trusted peer: closed.
    let answer = get(
        from([127, 0, 0, 1], tether).await,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    )
    .await;
    assert_eq!(answer, "");
    assert_eq!(rec.requests().len(), 1, "none of them reached the server");
}

#[tokio::test]
async fn haproxy_behind_tether_reads_its_v1_and_v2_headers() {
    let dir = TempDir::new("tether-pp-out");
    let Some(haproxy) = Program::haproxy(dir.path(), |port| {
        format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend f\n  bind 127.0.0.1:{port} accept-proxy\n  \
             http-request return status 200 content-type text/plain lf-string \"src=%[src] dst_port=%[dst_port]\"\n"
        )
    })
    .await
    else {
        return;
    };
    let toml = format!(
        r#"
[entrypoints]
web = "127.0.0.1:0"
v1 = {{ address = "127.0.0.1:0", protocol = "tcp" }}
v2 = {{ address = "127.0.0.1:0", protocol = "tcp" }}

[tcp.routers.v1]
rule = "HostSNI(`*`)"
entrypoints = ["v1"]
service = "v1"

[tcp.routers.v2]
rule = "HostSNI(`*`)"
entrypoints = ["v2"]
service = "v2"

[tcp.services.v1]
servers = [{{ address = "{h}" }}]
proxy_protocol = "v1"

[tcp.services.v2]
servers = [{{ address = "{h}" }}]
proxy_protocol = "v2"
{KEY}"#,
        h = haproxy.addr
    );
    let p = Proxy::start(&toml).await;
    for ep in ["v1", "v2"] {
        let at = p.instance.addr(ep);
        let answer = get(from([127, 0, 0, 2], at).await, b"").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{ep}: {answer}");
        let want = format!("src=127.0.0.2 dst_port={}", at.port());
        assert!(answer.ends_with(&want), "{ep}: {answer}");
    }
}

/// Another proxy in front sends Tether a header for a client of 198.51.100.7 that connected to
/// 203.0.113.9:443; Tether passes the TLS connection through by its SNI to a server that wants a
/// header too. That header names the same two addresses: the destination is the one the client
/// connected to, not Tether's own socket.
#[tokio::test]
async fn a_tls_passthrough_hands_on_both_addresses_of_the_header_it_received() {
    let dir = TempDir::new("tether-pp-pass");
    let cert = TestCert::write(dir.path(), "app", &["app.example.com"]);
    // The server reads the header Tether sends before the client's hello, and reports it.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = server.local_addr().unwrap();
    let header = tokio::spawn(async move {
        let (mut c, _) = server.accept().await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 512];
            let n = c.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole header: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            match parse(&buf) {
                Parsed::Incomplete => continue,
                other => return other,
            }
        }
    });
    let toml = format!(
        r#"
[entrypoints]
websecure = {{ address = "127.0.0.1:0", tls = true, proxy_protocol = {{ trusted = ["127.0.0.1/32"], timeout = "2s" }} }}
{certificate}
[tcp.routers.db]
rule = "HostSNI(`db.example.com`)"
entrypoints = ["websecure"]
service = "db"
tls = {{ passthrough = true }}

[tcp.services.db]
servers = [{{ address = "{at}" }}]
proxy_protocol = "v2"
{KEY}"#,
        certificate = cert.toml(true)
    );
    let p = Proxy::start(&toml).await;
    let tether = p.instance.addr("websecure");
    let client: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let destination: SocketAddr = "203.0.113.9:443".parse().unwrap();
    let mut c = from([127, 0, 0, 1], tether).await;
    c.write_all(&tether_proxy::proxy_protocol::encode(
        tether_model::ProxyVersion::V2,
        client,
        destination,
    ))
    .await
    .unwrap();
    // The server never answers the hello: the handshake waits, and ends with the test.
    let hello = tokio::spawn(connect_over(c, Some("db.example.com"), &[]));
    let got = tokio::time::timeout(Duration::from_secs(10), header)
        .await
        .expect("the server got a header in time")
        .unwrap();
    hello.abort();
    match got {
        Parsed::Header {
            source,
            destination: to,
            ..
        } => {
            assert_eq!(source, Some(client), "the client's address");
            assert_eq!(to, Some(destination), "the address the client connected to");
        }
        other => panic!("not a header: {other:?}"),
    }
}

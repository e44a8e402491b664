//! TLS termination: the certificate a handshake gets by the name it asks for (exact, wildcard,
//! the default, none with `strict_sni`), ALPN giving h2 or HTTP/1.1 and both carrying requests
//! with `X-Forwarded-Proto: https`, and a certificate file replaced under a stream of new
//! connections without a failed handshake.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tether::app::{self, Instance};
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::{Backend, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::KEY;

struct Certs {
    a: TestCert,
    b: TestCert,
    wild: TestCert,
    default: TestCert,
}

fn certs(dir: &TempDir) -> Certs {
    Certs {
        a: TestCert::write(dir.path(), "a", &["a.test"]),
        b: TestCert::write(dir.path(), "b", &["b.test"]),
        wild: TestCert::write(dir.path(), "wild", &["*.wild.test"]),
        default: TestCert::write(dir.path(), "default", &["default.test"]),
    }
}

async fn start(dir: &TempDir, c: &Certs, backend: &Backend) -> Instance {
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n\
         websecure = {{ address = \"127.0.0.1:0\", tls = true }}\n\
         strict = {{ address = \"127.0.0.1:0\", tls = {{ strict_sni = true }} }}\n\
         {KEY}{}{}{}{}\
         [routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"one\", url = \"{}\" }}]\n",
        c.a.toml(false),
        c.b.toml(false),
        c.wild.toml(false),
        c.default.toml(true),
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    app::start(opts).await.expect("start")
}

#[tokio::test]
async fn sni_picks_the_certificate_by_exact_name_then_wildcard_then_the_default() {
    let dir = TempDir::new("tether-tls-sni");
    let c = certs(&dir);
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &c, &backend).await;
    let tls = i.addr("websecure");
    let presented = |sni: Option<&'static str>| async move {
        connect(tls, sni, &["http/1.1"])
            .await
            .expect("handshake")
            .cert
    };
    assert_eq!(presented(Some("a.test")).await, c.a.der, "exact name a");
    assert_eq!(presented(Some("b.test")).await, c.b.der, "exact name b");
    assert_eq!(presented(Some("x.wild.test")).await, c.wild.der, "wildcard");
    assert_eq!(
        presented(Some("A.TEST")).await,
        c.a.der,
        "names are case-blind"
    );
    assert_eq!(
        presented(Some("other.test")).await,
        c.default.der,
        "unknown: the default"
    );
    assert_eq!(presented(None).await, c.default.der, "no SNI: the default");

    // strict_sni: an unknown name fails the handshake, a known one is served.
    let strict = i.addr("strict");
    assert!(connect(strict, Some("other.test"), &[]).await.is_err());
    assert_eq!(
        connect(strict, Some("b.test"), &[]).await.unwrap().cert,
        c.b.der
    );
    // The plain entrypoint is still plain HTTP.
    let mut plain = tokio::net::TcpStream::connect(i.addr("web")).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    plain.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    i.shutdown().await;
}

#[tokio::test]
async fn alpn_gives_h2_or_http11_and_both_carry_requests_marked_https() {
    let dir = TempDir::new("tether-tls-alpn");
    let c = certs(&dir);
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &c, &backend).await;
    let tls = i.addr("websecure");

    // HTTP/1.1, as `curl --http1.1` asks.
    let mut h = connect(tls, Some("a.test"), &["http/1.1"]).await.unwrap();
    assert_eq!(h.alpn.as_deref(), Some(&b"http/1.1"[..]));
    h.stream
        .write_all(b"GET /?format=json HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    h.stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\"x-forwarded-proto\":\"https\""),
        "the server is told the client used https: {text}"
    );

    // h2, as a browser asks.
    let h = connect(tls, Some("a.test"), &["h2", "http/1.1"])
        .await
        .unwrap();
    assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h.stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://a.test/?format=json")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{v}");
    assert_eq!(backend.requests(), 2);
    i.shutdown().await;
}

#[tokio::test]
async fn a_replaced_certificate_is_served_within_two_seconds_and_no_handshake_fails() {
    let dir = TempDir::new("tether-tls-rotate");
    let c = certs(&dir);
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &c, &backend).await;
    let tls = i.addr("websecure");
    assert_eq!(
        connect(tls, Some("a.test"), &[]).await.unwrap().cert,
        c.a.der
    );

    // The new certificate for a.test, written over the old files (the certificate first, then
    // the key: between the two, the pair does not match and the old one keeps serving).
    let next_dir = TempDir::new("tether-tls-next");
    let fresh = serial(&TestCert::write(next_dir.path(), "a", &["a.test"]).der);
    let old = serial(&c.a.der);
    assert_ne!(fresh, old);
    let replaced = Instant::now();
    std::fs::copy(next_dir.path().join("a.crt"), &c.a.cert_file).unwrap();
    std::fs::copy(next_dir.path().join("a.key"), &c.a.key_file).unwrap();
    let mut handshakes = 0;
    let mut failed = 0;
    let seen = loop {
        match connect(tls, Some("a.test"), &[]).await {
            Ok(h) => {
                handshakes += 1;
                let got = serial(&h.cert);
                if got == fresh {
                    break replaced.elapsed();
                }
                assert_eq!(got, old, "the old certificate or the new, nothing else");
            }
            Err(_) => failed += 1,
        }
        assert!(
            replaced.elapsed() < Duration::from_secs(5),
            "the new certificate never came"
        );
    };
    println!("tls: new certificate served {seen:?} after the files changed; {handshakes} handshakes, {failed} failed");
    assert_eq!(
        failed, 0,
        "no handshake failed while the certificate changed"
    );
    assert!(seen < Duration::from_secs(2), "served after {seen:?}");
    i.shutdown().await;
}

/// A certificate's serial number.
fn serial(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    c.raw_serial_as_string()
}

#[tokio::test]
async fn metrics_tell_when_each_served_certificate_expires() {
    let dir = TempDir::new("tether-tls-metrics");
    let c = certs(&dir);
    let backend = Backend::spawn("one").await;
    let toml = format!(
        "[entrypoints]\nwebsecure = {{ address = \"127.0.0.1:0\", tls = true }}\n\
         {KEY}{}{}\
         [routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"one\", url = \"{}\" }}]\n",
        c.a.toml(false),
        c.wild.toml(true),
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin.address = Some("127.0.0.1:0".parse().unwrap());
    let i = app::start(opts).await.expect("start");
    let mut admin = tether_testkit::Admin::new(i.admin.unwrap(), None);
    let m = admin.get("/metrics").await;
    assert_eq!(m.status, 200);
    let expiry = |der: &[u8]| {
        let (_, x) = x509_parser::parse_x509_certificate(der).unwrap();
        x.validity().not_after.timestamp()
    };
    for (cert, cn) in [(&c.a, "a.test"), (&c.wild, "*.wild.test")] {
        let series = format!(
            "tether_tls_certs_not_after{{cn=\"{cn}\",sans=\"{cn}\",serial=\"{}\",source=\"{}\"}} {}",
            serial(&cert.der).replace(':', ""),
            cert.cert_file.display(),
            expiry(&cert.der)
        );
        assert!(
            m.body.lines().any(|l| l == series),
            "no {series} in\n{}",
            m.body
        );
    }
    i.shutdown().await;
}

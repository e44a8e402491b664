//! A route's HTTPS policy: `redirect_https` answers plain HTTP with 308 to the same URL over
//! https (method, path and query kept, the server never reached), `hsts` marks responses over
//! TLS (and only those), and the server is told the real scheme in `X-Forwarded-Proto` and
//! `Forwarded: proto=`, whatever the client claimed.

use std::time::Duration;

use tether::app::{self, Instance};
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::{Backend, TempDir};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::KEY;

async fn start(dir: &TempDir, backend: &Backend) -> Instance {
    let cert = TestCert::write(dir.path(), "app", &["app.test", "plain.test"]);
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:0\"\n\
         websecure = {{ address = \"127.0.0.1:0\", tls = true }}\n\
         {KEY}{}\
         [routes.secure]\nrule = \"Host(`app.test`)\"\nservice = \"app\"\n\
         redirect_https = true\nhsts = {{ max_age = \"365d\", include_subdomains = true }}\n\
         [routes.fixed]\nrule = \"Host(`fixed.test`)\"\nservice = \"app\"\n\
         redirect_https = {{ port = 443 }}\n\
         [routes.plain]\nrule = \"Host(`plain.test`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"one\", url = \"{}\" }}]\n",
        cert.toml(true),
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    app::start(opts).await.expect("start")
}

/// Send one request on `stream` and read the whole response (the request asks to close).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn field<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn plain_http_is_redirected_with_308_keeping_method_path_and_query() {
    let dir = TempDir::new("tether-https-redirect");
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &backend).await;
    let web = i.addr("web");
    let tls_port = i.addr("websecure").port();

    let plain = tokio::net::TcpStream::connect(web).await.unwrap();
    let r = exchange(
        plain,
        "POST /orders/7?confirm=yes&x=%20 HTTP/1.1\r\nHost: app.test\r\n\
         Content-Length: 4\r\nConnection: close\r\n\r\nbody",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308 "), "{r}");
    assert_eq!(
        field(&r, "location"),
        Some(format!("https://app.test:{tls_port}/orders/7?confirm=yes&x=%20").as_str()),
        "the TLS entrypoint's port, the path and query as sent: {r}"
    );
    assert_eq!(
        field(&r, "strict-transport-security"),
        None,
        "HSTS is never sent over plain HTTP (RFC 6797 §7.2)"
    );
    // A port named in the route wins; 443 is left out of the URL.
    let plain = tokio::net::TcpStream::connect(web).await.unwrap();
    let r = exchange(
        plain,
        "GET /a?b=c HTTP/1.1\r\nHost: fixed.test:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308 "), "{r}");
    assert_eq!(field(&r, "location"), Some("https://fixed.test/a?b=c"));
    assert_eq!(
        backend.requests(),
        0,
        "a redirected request reaches no server"
    );

    // A route without the policy is served over plain HTTP as before.
    let plain = tokio::net::TcpStream::connect(web).await.unwrap();
    let r = exchange(
        plain,
        "GET /?format=json HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert_eq!(backend.requests(), 1);

    // The URL it points to is served over TLS, with HSTS.
    let h = connect(i.addr("websecure"), Some("app.test"), &["http/1.1"])
        .await
        .unwrap();
    let r = exchange(
        h.stream,
        "POST /orders/7?confirm=yes HTTP/1.1\r\nHost: app.test\r\n\
         Content-Length: 4\r\nConnection: close\r\n\r\nbody",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert_eq!(
        field(&r, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    i.shutdown().await;
}

#[tokio::test]
async fn the_server_is_told_the_real_scheme_whatever_the_client_claims() {
    let dir = TempDir::new("tether-https-forwarded");
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &backend).await;
    let spoof = "X-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6;proto=https\r\n";

    let plain = tokio::net::TcpStream::connect(i.addr("web")).await.unwrap();
    let r = exchange(
        plain,
        &format!(
            "GET /?format=json HTTP/1.1\r\nHost: plain.test\r\n{spoof}Connection: close\r\n\r\n"
        ),
    )
    .await;
    let v = json_body(&r);
    assert_eq!(v["headers"]["x-forwarded-proto"], "http", "{v}");
    assert_eq!(v["headers"]["forwarded"], "for=127.0.0.1;proto=http", "{v}");

    let h = connect(i.addr("websecure"), Some("plain.test"), &["http/1.1"])
        .await
        .unwrap();
    let r = exchange(
        h.stream,
        &format!(
            "GET /?format=json HTTP/1.1\r\nHost: plain.test\r\n{spoof}Connection: close\r\n\r\n"
        ),
    )
    .await;
    let v = json_body(&r);
    assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{v}");
    assert_eq!(
        v["headers"]["forwarded"], "for=127.0.0.1;proto=https",
        "{v}"
    );
    assert_eq!(
        field(&r, "strict-transport-security"),
        None,
        "a route without hsts sends none"
    );
    i.shutdown().await;
}

fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

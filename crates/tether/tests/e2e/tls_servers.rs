//! TLS to servers: an `https://` server is reached over TLS naming the URL's host (SNI), its
//! certificate checked against a CA file; kept-alive connections are reused; bodies go both
//! ways; a certificate that does not check out gets 502 and never the request; the opt-out
//! serves a self-signed server and says so; bad settings are refused naming the field.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tether_testkit::tls::{TestCa, TestCert, TlsFront};
use tether_testkit::{Backend, TempDir};

use crate::support::{Proxy, KEY, WEB};

fn config(url: &str, tls: &str) -> String {
    format!(
        "{WEB}{KEY}[routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"secure\", url = \"{url}\" }}]\n{tls}"
    )
}

#[tokio::test]
async fn an_https_server_is_verified_against_a_ca_file_and_named_by_the_url_host() {
    let dir = TempDir::new("tether-tls-servers");
    let ca = TestCa::write(dir.path(), "ca");
    let cert = ca.issue(dir.path(), "localhost", &["localhost"]);
    let backend = Backend::spawn("behind-tls").await;
    let front = TlsFront::spawn(&cert, backend.addr).await;
    let url = format!("https://localhost:{}", front.addr.port());
    let tls = format!(
        "[services.app.tls]\nca_file = {:?}\n",
        ca.cert_file.display().to_string()
    );
    let p = Proxy::start(&config(&url, &tls)).await;
    let mut c = p.client();
    for _ in 0..20 {
        let r = c.get("/a?b=c").await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.server(), "behind-tls");
    }
    // A body, and a streamed one, go through TLS too.
    let body = vec![b'x'; 300_000];
    let req = Request::builder()
        .method(Method::POST)
        .uri("/upload?format=json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["body_length"], 300_000, "{}", r.body);
    let names = front.names();
    assert_eq!(
        names,
        vec![Some("localhost".to_string())],
        "one TLS connection, kept alive, naming the URL's host"
    );
}

#[tokio::test]
async fn a_certificate_that_does_not_check_out_gets_502_and_the_opt_out_serves_it() {
    let dir = TempDir::new("tether-tls-servers-bad");
    let self_signed = TestCert::write(dir.path(), "self", &["localhost"]);
    let backend = Backend::spawn("self-signed").await;
    let front = TlsFront::spawn(&self_signed, backend.addr).await;
    let url = format!("https://localhost:{}", front.addr.port());

    // Against the system's roots: refused, the server never sees the request.
    let p = Proxy::start(&config(&url, "")).await;
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(backend.requests(), 0);

    // Against another CA: refused too.
    let other = TestCa::write(dir.path(), "other-ca");
    let tls = format!(
        "[services.app.tls]\nca_file = {:?}\n",
        other.cert_file.display().to_string()
    );
    p.reload(&config(&url, &tls)).await;
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert_eq!(backend.requests(), 0);

    // A name the certificate does not hold: refused.
    let ca = TestCa::write(dir.path(), "ca");
    let wrong = ca.issue(dir.path(), "elsewhere", &["elsewhere.test"]);
    let wrong_front = TlsFront::spawn(&wrong, backend.addr).await;
    let tls = format!(
        "[services.app.tls]\nca_file = {:?}\n",
        ca.cert_file.display().to_string()
    );
    let wrong_url = format!("https://localhost:{}", wrong_front.addr.port());
    p.reload(&config(&wrong_url, &tls)).await;
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    // ... unless the name to check is set to the one it holds.
    let tls = format!("{tls}server_name = \"elsewhere.test\"\n");
    p.reload(&config(&wrong_url, &tls)).await;
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        wrong_front.names().last(),
        Some(&Some("elsewhere.test".to_string()))
    );

    // The explicit opt-out for a self-signed test server.
    p.reload(&config(
        &url,
        "[services.app.tls]\ninsecure_skip_verify = true\n",
    ))
    .await;
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.server(), "self-signed");
}

#[test]
fn bad_tls_settings_for_servers_are_refused_naming_the_field() {
    let errors = |toml: &str| -> String {
        match tether_model::file_config::parse(toml) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let e = errors(&config(
        "http://127.0.0.1:1",
        "[services.app.tls]\ninsecure_skip_verify = true\n",
    ));
    assert!(
        e.contains("services.app.tls") && e.contains("no server of this service is https://"),
        "{e}"
    );
    let e = errors(&config(
        "https://a.test",
        "[services.app.tls]\nca_file = \"/ca.pem\"\ninsecure_skip_verify = true\n",
    ));
    assert!(
        e.contains("services.app.tls.ca_file") && e.contains("not both"),
        "{e}"
    );
    let e = errors(&config(
        "https://a.test",
        "[services.app.tls]\ncafile = \"x\"\n",
    ));
    assert!(e.contains("unknown field `cafile`"), "{e}");
    let e = errors(&config("ftp://a.test", ""));
    assert!(e.contains("use http:// or https://"), "{e}");
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_is_refused_and_the_table_before_keeps_serving() {
    let dir = TempDir::new("tether-tls-servers-ca");
    let backend = Backend::spawn("plain").await;
    let p = Proxy::start(&config(&backend.url(), "")).await;
    let before = p.version();
    p.write(&config(
        "https://localhost:1",
        "[services.app.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
    ));
    // Refused: the status names the field; the plain server keeps serving.
    p.refused(|e| e.contains("services.app.tls") && e.contains("/nonexistent/ca.pem"))
        .await;
    assert_eq!(p.version(), before);
    let r = p.client().get("/").await.unwrap();
    assert_eq!(r.server(), "plain");
    drop(dir);
}

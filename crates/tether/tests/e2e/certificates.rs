//! Certificates through the admin API: `PUT /api/certificates/NAME` serves by SNI as soon as it
//! answers, a replaced one serves in its place, bad ones are refused naming the field while the
//! one before keeps serving, a name `tether.toml`'s certificate holds stays its, keys are never
//! shown, a delete withdraws it, and what was put survives a restart.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tether::app::{self, AdminOptions, Instance};
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::{Admin, Backend, TempDir};

use crate::support::KEY;

const TOKEN: &str = "certificates-token";

/// Tether with a TLS entrypoint (and `files` as its `[[tls.certificates]]`) and the admin API,
/// its state in `dir`.
async fn start(dir: &TempDir, files: &[&TestCert], backend: &Backend) -> Instance {
    start_with(dir, files, backend, None).await
}

async fn start_with(
    dir: &TempDir,
    files: &[&TestCert],
    backend: &Backend,
    dfp: Option<tether_admin::DfpConfig>,
) -> Instance {
    let mut toml = format!(
        "[entrypoints]\nwebsecure = {{ address = \"127.0.0.1:0\", tls = true }}\n{KEY}\
         [routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"one\", url = \"{}\" }}]\n",
        backend.url()
    );
    for f in files {
        toml.push_str(&f.toml(false));
    }
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(TOKEN.to_string()),
        dfp,
    };
    app::start(opts).await.expect("start")
}

fn admin(i: &Instance) -> Admin {
    Admin::new(i.admin.expect("admin runs"), Some(TOKEN))
}

async fn presented(i: &Instance, sni: &str) -> Option<Vec<u8>> {
    connect(i.addr("websecure"), Some(sni), &["http/1.1"])
        .await
        .ok()
        .map(|h| h.cert)
}

#[tokio::test]
async fn a_certificate_put_through_the_api_serves_by_sni_and_bad_ones_are_refused_by_field() {
    let dir = TempDir::new("tether-api-certs");
    let backend = Backend::spawn("one").await;
    let file = TestCert::write(dir.path(), "file", &["file.test"]);
    let i = start(&dir, &[&file], &backend).await;
    let mut a = admin(&i);

    // Put as JSON: served by the time the answer comes.
    let first = TestCert::write(dir.path(), "api1", &["api.test", "*.api.test"]);
    let r = a.put("/api/certificates/shop", first.json()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.json()["names"], json!(["api.test", "*.api.test"]));
    assert!(r.json()["serial"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(presented(&i, "api.test").await, Some(first.der.clone()));
    assert_eq!(presented(&i, "x.api.test").await, Some(first.der.clone()));
    assert_eq!(presented(&i, "file.test").await, Some(file.der.clone()));

    // Replaced, as one PEM text holding the chain and the key (HAProxy's crt file).
    let second = TestCert::write(dir.path(), "api2", &["api.test"]);
    let both = format!("{}{}", second.cert_pem(), second.key_pem());
    let r = a
        .put_text("/api/certificates/shop", "application/x-pem-file", &both)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(presented(&i, "api.test").await, Some(second.der.clone()));

    // Refused, naming the field; the certificate before keeps serving.
    let other = TestCert::write(dir.path(), "other", &["api.test"]);
    let mismatched = json!({ "cert": second.cert_pem(), "key": other.key_pem() });
    let r = a.put("/api/certificates/shop", mismatched).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], "certificates.shop", "{}", r.body);
    assert!(r.body.contains("is not the key of"), "{}", r.body);
    let expired = TestCert::write_expired(dir.path(), "old", &["api.test"]);
    let r = a.put("/api/certificates/shop", expired.json()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("expired at 2021-01-01"), "{}", r.body);
    let r = a
        .put(
            "/api/certificates/shop",
            json!({ "cert": second.cert_pem(), "chain": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], "certificates.shop.chain", "{}", r.body);
    let r = a
        .put_text(
            "/api/certificates/shop",
            "application/x-pem-file",
            "garbage",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("no certificate"), "{}", r.body);
    assert_eq!(presented(&i, "api.test").await, Some(second.der.clone()));
    // Refused inputs are in the history the API shows.
    let errors = a.get("/api/errors").await;
    assert!(errors.body.contains("is not the key of"), "{}", errors.body);

    // No token, no change.
    let r = Admin::new(i.admin.unwrap(), None)
        .put("/api/certificates/sneaky", other.json())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // A name tether.toml's certificate holds stays its.
    let claim = TestCert::write(dir.path(), "claim", &["file.test"]);
    let r = a.put("/api/certificates/claim", claim.json()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(presented(&i, "file.test").await, Some(file.der.clone()));

    // Listed from every source, never with a key.
    let list = a.get("/api/certificates").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("PRIVATE KEY"), "{}", list.body);
    let sources: Vec<(String, String)> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            (
                "tls.certificates[0]".to_string(),
                "tls.certificates".to_string()
            ),
            ("claim".to_string(), "api".to_string()),
            ("shop".to_string(), "api".to_string()),
        ]
    );
    let one = a.get("/api/certificates/shop").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert!(one.json()["etag"].as_str().is_some());
    assert!(!one.body.contains("PRIVATE KEY"));

    // What was put survives a restart.
    i.shutdown().await;
    let i = start(&dir, &[&file], &backend).await;
    let mut a = admin(&i);
    assert_eq!(presented(&i, "api.test").await, Some(second.der.clone()));

    // Deleted: the name gets the default (the file's) again.
    let r = a.delete("/api/certificates/shop").await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(presented(&i, "api.test").await, Some(file.der.clone()));
    let r = a.delete("/api/certificates/shop").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    i.shutdown().await;
}

#[tokio::test]
async fn a_tls_entrypoint_without_files_serves_once_the_api_gives_a_certificate() {
    let dir = TempDir::new("tether-api-certs-only");
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &[], &backend).await;
    assert_eq!(
        presented(&i, "late.test").await,
        None,
        "nothing to serve yet"
    );
    let late = TestCert::write(dir.path(), "late", &["late.test"]);
    let r = admin(&i).put("/api/certificates/late", late.json()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(presented(&i, "late.test").await, Some(late.der.clone()));
    // The only certificate is everyone's default.
    assert_eq!(presented(&i, "other.test").await, Some(late.der));
    i.shutdown().await;
}

#[tokio::test]
async fn the_certificate_example_script_puts_one_that_serves() {
    let dir = TempDir::new("tether-api-certs-example");
    let backend = Backend::spawn("one").await;
    let i = start(&dir, &[], &backend).await;
    let c = TestCert::write(dir.path(), "ex", &["example.test"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/api/certificate.sh"
    );
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .arg("shop")
        .arg(&c.cert_file)
        .arg(&c.key_file)
        .env("API", format!("http://{}", i.admin.unwrap()))
        .env("TOKEN", TOKEN)
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"names\":[\"example.test\"]"), "{stdout}");
    assert_eq!(presented(&i, "example.test").await, Some(c.der));
    i.shutdown().await;
}

#[tokio::test]
async fn docker_flow_proxys_cert_call_stores_a_certificate_that_serves() {
    let dir = TempDir::new("tether-api-certs-dfp");
    let backend = Backend::spawn("one").await;
    let i = start_with(&dir, &[], &backend, Some(Default::default())).await;
    let c = TestCert::write(dir.path(), "dfp", &["dfp.test"]);
    let pem = format!("{}{}", c.cert_pem(), c.key_pem());
    let call = "/v1/docker-flow-proxy/cert?certName=dfp.pem&distribute=true";
    let r = Admin::new(i.admin.unwrap(), None)
        .put_text(call, "text/plain", &pem)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = admin(&i).put_text(call, "text/plain", &pem).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["Status"], "OK", "{}", r.body);
    assert_eq!(presented(&i, "dfp.test").await, Some(c.der));
    let r = admin(&i)
        .put_text(
            "/v1/docker-flow-proxy/cert?certName=bad.pem",
            "text/plain",
            "garbage",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["Status"], "NOK", "{}", r.body);
    assert!(r.body.contains("certificates.bad.pem"), "{}", r.body);
    let listed = admin(&i).get("/api/certificates").await;
    assert!(listed.body.contains("\"dfp.pem\""), "{}", listed.body);
    i.shutdown().await;
}

#[tokio::test]
async fn without_a_tls_entrypoint_a_certificate_is_refused() {
    let dir = TempDir::new("tether-api-certs-none");
    let toml = format!("[entrypoints]\nweb = \"127.0.0.1:0\"\n{KEY}");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.admin = AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(TOKEN.to_string()),
        dfp: None,
    };
    let i = app::start(opts).await.expect("start");
    let c = TestCert::write(dir.path(), "c", &["c.test"]);
    let r = admin(&i).put("/api/certificates/c", c.json()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("no TLS entrypoint"), "{}", r.body);
    i.shutdown().await;
}

#[tokio::test]
async fn dockercloud_default_ssl_cert_is_the_default_certificate() {
    let dir = TempDir::new("tether-default-ssl-cert");
    let backend = Backend::spawn("one").await;
    let c = TestCert::write(dir.path(), "cloud-default", &["cloud.test"]);
    // As dockercloud/haproxy takes it: the key and the chain, `\n` written as two characters.
    let env = format!("{}{}", c.key_pem(), c.cert_pem()).replace('\n', "\\n");
    let toml = format!(
        "[entrypoints]\nwebsecure = {{ address = \"127.0.0.1:0\", tls = true }}\n{KEY}\
         [routes.app]\nrule = \"PathPrefix(`/`)\"\nservice = \"app\"\n\
         [services.app]\nservers = [{{ name = \"one\", url = \"{}\" }}]\n",
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut opts = app::Options::file(
        path.clone(),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    opts.default_certificate = Some(app::PemText(env.clone()));
    let i = app::start(opts).await.expect("start");
    let no_sni = connect(i.addr("websecure"), None, &["http/1.1"])
        .await
        .expect("handshake")
        .cert;
    assert_eq!(no_sni, c.der, "no name: DEFAULT_SSL_CERT");
    assert_eq!(presented(&i, "other.test").await, Some(c.der.clone()));
    i.shutdown().await;

    // Refused, saying why: no TLS entrypoint to serve it on; a value that is no certificate.
    std::fs::write(
        &path,
        format!("[entrypoints]\nweb = \"127.0.0.1:0\"\n{KEY}"),
    )
    .unwrap();
    let mut opts = app::Options::file(
        path.clone(),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    opts.default_certificate = Some(app::PemText(env));
    let e = app::start(opts).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("no entrypoint terminates TLS"),
        "{e:#}"
    );
    std::fs::write(&path, &toml).unwrap();
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.default_certificate = Some(app::PemText("not a certificate".into()));
    let e = format!("{:#}", app::start(opts).await.unwrap_err());
    assert!(
        e.contains("DEFAULT_SSL_CERT") && e.contains("no certificate"),
        "{e}"
    );
    assert!(
        !e.contains("not a certificate"),
        "the value is never shown: {e}"
    );
}

//! The dialects' HTTPS settings on real containers: each seed's way of asking for "redirect
//! plain HTTP, serve over TLS" (Traefik v2 routers with a `redirectscheme` middleware and
//! `tls=true`, redirected as Traefik does, Traefik v1's `frontend.redirect.entryPoint`, Docker Flow Proxy's `httpsOnly`,
//! dockercloud/haproxy's `FORCE_SSL`) gives a redirect on Tether's plain entrypoint to its TLS
//! entrypoint, where the container answers. And the certificates that labels give: a Docker
//! secret named by `tether.tls.secret`, dockercloud/haproxy's `SSL_CERT`.

use std::net::SocketAddr;
use std::time::Duration;

use tether::app::{self, Instance};
use tether_testkit::docker::Engine;
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::{wait_for_value, TempDir};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::support::{from_file, labels, strs};

const FAST: Duration = Duration::from_secs(10);
const KEY: &str = "a docker https test key of more than thirty-two bytes";

/// Tether with a plain and a TLS entrypoint, following the engine.
async fn start(engine: &Engine, dir: &TempDir) -> Instance {
    let cert = TestCert::write(
        dir.path(),
        "site",
        &["v2.test", "v1.test", "dfp.test", "cloud.test"],
    );
    let key_file = dir.path().join("affinity.key");
    std::fs::write(&key_file, KEY).unwrap();
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        format!(
            "[entrypoints]\nweb = \"127.0.0.1:0\"\n\
             websecure = {{ address = \"127.0.0.1:0\", tls = true }}\n\
             [affinity]\nkey_file = \"{}\"\n{}",
            key_file.display(),
            cert.toml(true)
        ),
    )
    .unwrap();
    let opts = from_file(engine, config, dir, Some(dir.path().to_path_buf()));
    app::start(opts).await.expect("tether starts")
}

/// A whoami container named after `hint` (so that answers name it), listening on 8080.
async fn whoami(
    engine: &Engine,
    hint: &str,
    args: Vec<String>,
) -> tether_testkit::docker::Container {
    let name = format!("{}-{hint}", engine.run);
    engine
        .run(
            hint,
            &strs(&args),
            &["whoami", "--name", &name, "--listen", "0.0.0.0:8080"],
        )
        .await
}

/// One request that asks to close; the status and the response's text.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

async fn plain(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => exchange(s, host, path).await,
        Err(_) => (0, String::new()),
    }
}

async fn https(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    match connect(addr, Some(host), &["http/1.1"]).await {
        Ok(h) => exchange(h.stream, host, path).await,
        Err(_) => (0, String::new()),
    }
}

fn location(response: &str) -> Option<&str> {
    response.split("\r\n\r\n").next()?.lines().find_map(|l| {
        l.strip_prefix("location: ")
            .or_else(|| l.strip_prefix("Location: "))
    })
}

/// Wait until plain HTTP to `host``path` is redirected (the container is routed), then check
/// the redirect (to Tether's TLS port, or with `default_port` to https's own, as Traefik v2's
/// `redirectscheme` without a port does) and the answer over TLS.
async fn redirected_then_served(
    i: &Instance,
    host: &str,
    path: &str,
    status: u16,
    server: &str,
    default_port: bool,
) {
    let web = i.addr("web");
    let tls_port = i.addr("websecure").port();
    let response = wait_for_value(
        &format!("{host}{path} answering {status}"),
        FAST,
        || async {
            match plain(web, host, path).await {
                (got, text) if got == status => Ok(text),
                (got, text) => Err(format!("{got}: {text}")),
            }
        },
    )
    .await;
    let port = if default_port {
        String::new()
    } else {
        format!(":{tls_port}")
    };
    assert_eq!(
        location(&response),
        Some(format!("https://{host}{port}{path}").as_str()),
        "{response}"
    );
    served_over_tls(i, host, path, server).await;
}

/// Wait until `host``path` over TLS answers 200 from `server`. A container is routed from its
/// start, which may come before its process listens: until then the answer is a 502.
async fn served_over_tls(i: &Instance, host: &str, path: &str, server: &str) {
    let tls = i.addr("websecure");
    wait_for_value(
        &format!("{host}{path} answered over TLS by {server}"),
        FAST,
        || async {
            match https(tls, host, path).await {
                (200, text) if text.contains(server) => Ok(()),
                (got, text) => Err(format!("{got}: {text}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dialects_https_labels_redirect_plain_http_and_serve_over_tls() {
    let Some(engine) = Engine::get("https-dialects").await else {
        return;
    };
    let net = engine.network("net").await;
    let dir = TempDir::new("tether-docker-https");
    let i = start(&engine, &dir).await;
    let run = |hint: &'static str, args: Vec<String>| whoami(&engine, hint, args);
    let v2 = run(
        "v2",
        labels(
            &engine,
            &net,
            &[
                "traefik.http.routers.web.rule=Host(`v2.test`)".into(),
                "traefik.http.routers.web.entrypoints=web".into(),
                "traefik.http.routers.web.middlewares=to-https".into(),
                "traefik.http.middlewares.to-https.redirectscheme.scheme=https".into(),
                "traefik.http.middlewares.to-https.redirectscheme.permanent=true".into(),
                "traefik.http.routers.secure.rule=Host(`v2.test`)".into(),
                "traefik.http.routers.secure.entrypoints=websecure".into(),
                "traefik.http.routers.secure.tls=true".into(),
                "traefik.http.services.v2.loadbalancer.server.port=8080".into(),
            ],
        ),
    )
    .await;
    let v1 = run(
        "v1",
        labels(
            &engine,
            &net,
            &[
                "traefik.port=8080".into(),
                "traefik.frontend.rule=Host:v1.test".into(),
                "traefik.frontend.entryPoints=http,https".into(),
                "traefik.frontend.redirect.entryPoint=https".into(),
            ],
        ),
    )
    .await;
    let dfp = run(
        "dfp",
        labels(
            &engine,
            &net,
            &[
                "com.df.notify=true".into(),
                "com.df.serviceDomain=dfp.test".into(),
                "com.df.port=8080".into(),
                "com.df.httpsOnly=true".into(),
            ],
        ),
    )
    .await;
    let mut cloud_args = labels(&engine, &net, &[]);
    cloud_args.extend(
        [
            "SERVICE_PORTS=8080",
            "VIRTUAL_HOST=cloud.test",
            "FORCE_SSL=yes",
        ]
        .iter()
        .flat_map(|e| ["--env".to_string(), e.to_string()]),
    );
    let cloud = run("cloud", cloud_args).await;

    // Traefik v2's redirectscheme is a middleware as in Traefik: permanent is 301 for a GET, and
    // without a port the URL names none.
    redirected_then_served(&i, "v2.test", "/a?b=c", 301, &v2.name, true).await;
    redirected_then_served(&i, "v1.test", "/", 307, &v1.name, false).await;
    redirected_then_served(&i, "dfp.test", "/x", 308, &dfp.name, false).await;
    redirected_then_served(&i, "cloud.test", "/y?z=1", 308, &cloud.name, false).await;
    i.shutdown().await;
}

/// Wait until a handshake naming `sni` is presented `der`.
async fn presented_within(i: &Instance, sni: &str, der: &[u8], what: &str) {
    let addr = i.addr("websecure");
    wait_for_value(&format!("{what} presented for {sni}"), FAST, || async {
        match connect(addr, Some(sni), &["http/1.1"]).await {
            Ok(h) if h.cert == der => Ok(()),
            Ok(_) => Err("another certificate".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_named_by_a_label_and_dockercloud_ssl_cert_serve_by_sni() {
    let Some(engine) = Engine::get("https-label-certs").await else {
        return;
    };
    let net = engine.network("net").await;
    let dir = TempDir::new("tether-docker-label-certs");
    // Tether's secrets (as Docker mounts them in /run/secrets): one PEM holding both.
    let secret = TestCert::write(dir.path(), "shop-src", &["secret.test"]);
    let secret_file = dir.path().join("shop_pem");
    std::fs::write(
        &secret_file,
        format!("{}{}", secret.cert_pem(), secret.key_pem()),
    )
    .unwrap();
    let i = start(&engine, &dir).await;
    let run = |hint: &'static str, args: Vec<String>| whoami(&engine, hint, args);
    let shop = run(
        "secret",
        labels(
            &engine,
            &net,
            &[
                "tether.tls.secret=shop_pem".into(),
                "tether.http.routers.shop.rule=Host(`secret.test`)".into(),
                "tether.http.routers.shop.entrypoints=websecure".into(),
                "tether.http.services.shop.port=8080".into(),
            ],
        ),
    )
    .await;
    // dockercloud's SSL_CERT: the key and the chain, `\n` as two characters.
    let cloud_cert = TestCert::write(dir.path(), "cloud", &["cloudcert.test"]);
    let env = format!("{}{}", cloud_cert.key_pem(), cloud_cert.cert_pem()).replace('\n', "\\n");
    let mut cloud_args = labels(&engine, &net, &[]);
    cloud_args.extend(
        [
            "SERVICE_PORTS=8080".to_string(),
            "VIRTUAL_HOST=https://cloudcert.test".to_string(),
            format!("SSL_CERT={env}"),
        ]
        .iter()
        .flat_map(|e| ["--env".to_string(), e.to_string()]),
    );
    let cloud = run("cloud", cloud_args).await;

    presented_within(&i, "secret.test", &secret.der, "the secret").await;
    served_over_tls(&i, "secret.test", "/", &shop.name).await;
    presented_within(&i, "cloudcert.test", &cloud_cert.der, "SSL_CERT").await;
    served_over_tls(&i, "cloudcert.test", "/", &cloud.name).await;

    // `tether check --docker` loads them as serving does.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "check",
            "--docker",
            "--docker-constraint",
            &engine.constraint(),
        ])
        .arg("--secrets-dir")
        .arg(dir.path())
        .arg("--config")
        .arg(dir.path().join("tether.toml"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK (secret.test)"), "{stdout}");
    assert!(stdout.contains("OK (cloudcert.test)"), "{stdout}");

    // The secret's file replaced: the new certificate serves, no restart.
    let renewed = TestCert::write(dir.path(), "shop-renewed", &["secret.test"]);
    std::fs::write(
        &secret_file,
        format!("{}{}", renewed.cert_pem(), renewed.key_pem()),
    )
    .unwrap();
    presented_within(&i, "secret.test", &renewed.der, "the renewed secret").await;

    // The container gone, its certificate goes: the name gets the default.
    engine
        .docker(&["rm", "-f", &shop.id])
        .await
        .expect("container removed");
    let default = std::fs::read(dir.path().join("site.crt")).unwrap();
    let default =
        tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(&default).unwrap();
    presented_within(
        &i,
        "secret.test",
        default.as_ref(),
        "the default after removal",
    )
    .await;
    i.shutdown().await;
}

//! ACME against a real CA (Pebble, Let's Encrypt's test server, validating for real on the ports
//! of Tether's entrypoints): a route's certificate ordered by HTTP-01 and by TLS-ALPN-01, then
//! served to a client that trusts only the CA's root; challenge paths answered only for pending
//! tokens; a restart that orders nothing.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tether::app::{self, Instance};
use tether_testkit::acme::{connect_trusting, host, Pebble};
use tether_testkit::programs::free_port;
use tether_testkit::{wait_for_value, Backend, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::KEY;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What a test needs: the name (in /etc/hosts), the CA, the ports Pebble validates on.
struct Setup {
    name: String,
    ca: Pebble,
    http_port: u16,
    tls_port: u16,
}

async fn setup(stem: &str) -> Option<Setup> {
    let (http_port, tls_port) = (free_port(), free_port());
    let name = host(stem, LOOPBACK)?;
    let ca = Pebble::start(http_port, tls_port).await?;
    Some(Setup {
        name,
        ca,
        http_port,
        tls_port,
    })
}

async fn start(s: &Setup, dir: &TempDir, challenge: &str, backend: &Backend) -> Instance {
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:{}\"\n\
         websecure = {{ address = \"127.0.0.1:{}\", tls = true }}\n{KEY}\
         [acme.pebble]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\nchallenge = \"{challenge}\"\n\
         [routes.shop]\nrule = \"Host(`{}`)\"\nservice = \"shop\"\ntls = {{ resolver = \"pebble\" }}\n\
         [routes.other]\nrule = \"PathPrefix(`/`)\"\nservice = \"shop\"\npriority = 1\n\
         [services.shop]\nservers = [{{ name = \"shop-1\", url = \"{}\" }}]\n",
        s.http_port,
        s.tls_port,
        s.ca.directory(),
        s.ca.server_ca().display(),
        s.name,
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    app::start(opts).await.expect("start")
}

/// The certificate served for the name once a client trusting only the CA's root accepts it:
/// its serial, after a request over it reached the backend.
async fn served_serial(i: &Instance, s: &Setup, root: &str) -> String {
    let addr = i.addr("websecure");
    let mut h = wait_for_value(
        "the ordered certificate to serve",
        Duration::from_secs(60),
        || async {
            connect_trusting(addr, &s.name, root)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    h.stream
        .write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                s.name
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    h.stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, cert) = x509_parser::parse_x509_certificate(&h.cert).unwrap();
    cert.raw_serial_as_string()
}

fn orders(i: &Instance) -> Vec<((String, String), u64)> {
    i.control
        .acme()
        .map(|a| a.orders().into_iter().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_route_gets_its_certificate_by_http01_and_a_restart_orders_nothing() {
    let Some(s) = setup("http01").await else {
        return;
    };
    let root = s.ca.root_pem().await;
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-http01");
    let i = start(&s, &dir, "http-01", &backend).await;
    let serial = served_serial(&i, &s, &root).await;
    assert_eq!(
        orders(&i),
        [(("pebble".to_string(), "success".to_string()), 1)],
        "one order; pebble: {}",
        s.ca.log()
    );
    let states = i.control.acme().unwrap().certificates();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].names, std::slice::from_ref(&s.name));
    assert_eq!(states[0].state, tether_acme::State::Valid, "{states:?}");
    assert!(states[0].next_renewal.is_some() && states[0].last_error.is_none());
    // No token is pending now: a challenge path goes on to routing (the backend answers).
    let plain = i.addr("web");
    let r = tether_testkit::raw::exchange(
        plain,
        format!("GET /.well-known/acme-challenge/anything HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.name).as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert!(r.contains("shop"), "{r}");
    i.shutdown().await;

    // A restart serves the stored certificate and orders nothing.
    let i = start(&s, &dir, "http-01", &backend).await;
    assert_eq!(served_serial(&i, &s, &root).await, serial);
    // The manager has looked at it (and found it valid) before the handshake could succeed.
    let states = i.control.acme().unwrap().certificates();
    assert_eq!(states[0].state, tether_acme::State::Valid, "{states:?}");
    assert!(orders(&i).is_empty(), "{:?}", orders(&i));
    i.shutdown().await;
}

#[tokio::test]
async fn a_route_gets_its_certificate_by_tls_alpn01() {
    let Some(s) = setup("alpn01").await else {
        return;
    };
    let root = s.ca.root_pem().await;
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-alpn01");
    let i = start(&s, &dir, "tls-alpn-01", &backend).await;
    served_serial(&i, &s, &root).await;
    assert_eq!(
        orders(&i),
        [(("pebble".to_string(), "success".to_string()), 1)],
        "pebble: {}",
        s.ca.log()
    );
    // No validation is pending now: a hello offering acme-tls/1 alone gets no handshake.
    let h = tether_testkit::tls::connect(i.addr("websecure"), Some(&s.name), &["acme-tls/1"]).await;
    assert!(h.is_err(), "a validation handshake with nothing pending");
    i.shutdown().await;
}

//! ACME against a real CA (Pebble, Let's Encrypt's test server, validating for real on the ports
//! of Tether's entrypoints): a route's certificate ordered by HTTP-01 and by TLS-ALPN-01, then
//! served to a client that trusts only the CA's root; challenge paths answered only for pending
//! tokens; a restart that orders nothing; a renewal under a stream of handshakes; a CA that is
//! down while a renewal is due.

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
    start_with(s, dir, challenge, "", backend).await
}

/// With `extra` lines in the resolver's table.
async fn start_with(
    s: &Setup,
    dir: &TempDir,
    challenge: &str,
    extra: &str,
    backend: &Backend,
) -> Instance {
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:{}\"\n\
         websecure = {{ address = \"127.0.0.1:{}\", tls = true }}\n{KEY}\
         [acme.pebble]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\nchallenge = \"{challenge}\"\n{extra}\
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
    let mut opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    // The admin API, for /api/certificates and the stats page (reads need no token on loopback).
    opts.admin = tether::app::AdminOptions {
        address: Some("127.0.0.1:0".parse().unwrap()),
        token: None,
        dfp: None,
    };
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

/// The (first) certificate ACME keeps, once its state is `want` (within `deadline`).
async fn state_becomes(
    i: &Instance,
    want: tether_acme::State,
    deadline: Duration,
) -> tether_acme::CertState {
    let what = format!("the certificate's state to be {want:?}");
    wait_for_value(&what, deadline, || async {
        match i.control.acme().unwrap().certificates().first() {
            Some(c) if c.state == want => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
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

/// The serial of the certificate served for `name`, trusting `root`; `None` if the handshake fails.
async fn serial_now(addr: std::net::SocketAddr, name: &str, root: &str) -> Result<String, String> {
    let h = connect_trusting(addr, name, root)
        .await
        .map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&h.cert).map_err(|e| e.to_string())?;
    Ok(cert.raw_serial_as_string())
}

#[tokio::test]
async fn a_renewal_under_a_stream_of_handshakes_serves_the_new_serial_and_none_fails() {
    let Some(s) = setup("renew").await else {
        return;
    };
    let root = s.ca.root_pem().await;
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-renew");
    // Pebble's certificates live 5 years: renewing 6 years ahead makes each one due at once,
    // and max_orders_per_hour = 2 lets exactly one renewal follow the first order.
    let i = start_with(
        &s,
        &dir,
        "http-01",
        "renew_before = \"52560h\"\nmax_orders_per_hour = 2\n",
        &backend,
    )
    .await;
    let addr = i.addr("websecure");
    let first = served_serial(&i, &s, &root).await;
    let started = std::time::Instant::now();
    let (mut handshakes, mut serials) = (0u32, vec![first.clone()]);
    while started.elapsed() < Duration::from_secs(30) {
        let serial = serial_now(addr, &s.name, &root)
            .await
            .unwrap_or_else(|e| panic!("handshake {handshakes} failed during the renewal: {e}"));
        handshakes += 1;
        if serials.last() != Some(&serial) {
            serials.push(serial);
        }
        if serials.len() == 2 {
            break;
        }
    }
    assert_eq!(
        serials.len(),
        2,
        "the renewed serial never served ({handshakes} handshakes)"
    );
    assert_ne!(serials[0], serials[1]);
    eprintln!(
        "renewal: the new serial served after {} ms and {handshakes} handshakes, none failed",
        started.elapsed().as_millis()
    );
    assert_eq!(
        orders(&i),
        [(("pebble".to_string(), "success".to_string()), 2)],
        "pebble: {}",
        s.ca.log()
    );
    // The third order waits for the resolver's hour.
    let st = state_becomes(&i, tether_acme::State::Waiting, Duration::from_secs(10)).await;
    let e = st.last_error.expect("the reason shown");
    assert!(
        e.message.contains("max_orders_per_hour (2)"),
        "{}",
        e.message
    );
    i.shutdown().await;
}

#[tokio::test]
async fn while_the_ca_is_down_the_old_certificate_serves_the_error_shows_and_renewal_follows() {
    let Some(mut s) = setup("ca-down").await else {
        return;
    };
    let root = s.ca.root_pem().await;
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-ca-down");
    let i = start(&s, &dir, "http-01", &backend).await;
    let old = served_serial(&i, &s, &root).await;
    i.shutdown().await;
    // The CA goes away; Tether comes back renewing everything at once.
    s.ca.stop();
    let i = start_with(&s, &dir, "http-01", "renew_before = \"52560h\"\n", &backend).await;
    let addr = i.addr("websecure");
    let failed = state_becomes(&i, tether_acme::State::Failed, Duration::from_secs(20)).await;
    let e = failed.last_error.expect("the error");
    assert!(!e.message.is_empty());
    assert!(failed.next_attempt.is_some());
    // Shown by the API (beside the certificate that still serves) and on the stats page.
    let mut admin = tether_testkit::Admin::new(i.admin.unwrap(), None);
    let list = admin.get("/api/certificates").await.json();
    let acme = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "acme")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(acme["names"][0], s.name.as_str(), "{acme}");
    assert_eq!(
        acme["serial"].as_str().map(str::to_ascii_lowercase),
        Some(old.replace(':', "").to_ascii_lowercase()),
        "{acme}"
    );
    assert_eq!(acme["acme"]["state"], "failed", "{acme}");
    assert_eq!(acme["acme"]["failures"], 1, "{acme}");
    assert!(
        acme["acme"]["last_error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{acme}"
    );
    assert!(acme["acme"]["next_attempt"].is_string(), "{acme}");
    assert!(!acme.to_string().contains("PRIVATE KEY"), "never a key");
    let page = admin.get("/").await.body;
    assert!(page.contains("1 ACME certificates"), "{page}");
    assert!(page.contains("state-failed"), "{page}");
    // The certificate before keeps serving.
    assert_eq!(serial_now(addr, &s.name, &root).await.unwrap(), old);
    // The CA comes back (with a new root, and no memory of the account): the retry after the
    // backoff's first minute renews.
    s.ca.resume().await;
    let new_root = s.ca.root_pem().await;
    let renewed = wait_for_value(
        "the renewed certificate",
        Duration::from_secs(100),
        || async { serial_now(addr, &s.name, &new_root).await },
    )
    .await;
    assert_ne!(renewed, old);
    let st = i.control.acme().unwrap().certificates();
    assert!(st[0].last_error.is_none(), "{st:?}");
    i.shutdown().await;
}

#[tokio::test]
async fn caddys_acme_server_issues_by_http01_on_port_80() {
    // Caddy validates on port 80 only: Tether's plain entrypoint binds it, on a loopback
    // address of this test's own.
    let ip = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        80 + (std::process::id() % 100) as u8,
    ));
    if std::net::TcpListener::bind((ip, 80)).is_err() {
        tether_testkit::missing("binding port 80 needs root: Caddy's ACME server validates HTTP-01 there (run as root, as CI does)");
        return;
    }
    let Some(name) = host("caddy", ip) else {
        return;
    };
    let Some(ca) = tether_testkit::acme::Caddy::start().await else {
        return;
    };
    let root = std::fs::read_to_string(ca.root()).unwrap();
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-caddy");
    let toml = format!(
        "[entrypoints]\nweb = \"{ip}:80\"\nwebsecure = {{ address = \"{ip}:0\", tls = true }}\n{KEY}\
         [acme.caddy]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\n\
         [routes.shop]\nrule = \"Host(`{name}`)\"\nservice = \"shop\"\ntls = {{ resolver = \"caddy\" }}\n\
         [services.shop]\nservers = [{{ name = \"shop-1\", url = \"{}\" }}]\n",
        ca.directory(),
        ca.root().display(),
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    let i = app::start(opts).await.expect("start");
    let addr = i.addr("websecure");
    let h = wait_for_value(
        "Caddy's certificate to serve",
        Duration::from_secs(60),
        || async {
            connect_trusting(addr, &name, &root)
                .await
                .map_err(|e| format!("{e}; caddy: {}", ca.log()))
        },
    )
    .await;
    let (_, cert) = x509_parser::parse_x509_certificate(&h.cert).unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        lifetime <= 24 * 3600,
        "Caddy's short-lived certificate: {lifetime} s"
    );
    assert_eq!(
        orders(&i),
        [(("caddy".to_string(), "success".to_string()), 1)]
    );
    i.shutdown().await;
}

#[tokio::test]
async fn a_name_a_file_certificate_serves_is_not_ordered() {
    let Some(s) = setup("covered").await else {
        return;
    };
    let backend = Backend::spawn("shop").await;
    let dir = TempDir::new("tether-acme-covered");
    let own = tether_testkit::tls::TestCert::write(dir.path(), "own", &[s.name.as_str()]);
    let toml = format!(
        "[entrypoints]\nweb = \"127.0.0.1:{}\"\nwebsecure = {{ address = \"127.0.0.1:{}\", tls = true }}\n{KEY}{}\
         [acme.pebble]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\n\
         [routes.shop]\nrule = \"Host(`{}`)\"\nservice = \"shop\"\ntls = {{ resolver = \"pebble\" }}\n\
         [services.shop]\nservers = [{{ name = \"shop-1\", url = \"{}\" }}]\n",
        s.http_port,
        s.tls_port,
        own.toml(true),
        s.ca.directory(),
        s.ca.server_ca().display(),
        s.name,
        backend.url()
    );
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, toml).unwrap();
    let opts = app::Options::file(path, dir.path().to_path_buf(), Duration::from_secs(1));
    let i = app::start(opts).await.expect("start");
    let st = state_becomes(&i, tether_acme::State::Covered, Duration::from_secs(10)).await;
    assert_eq!(st.names, std::slice::from_ref(&s.name));
    assert!(orders(&i).is_empty(), "nothing ordered: {:?}", orders(&i));
    let h = tether_testkit::tls::connect(i.addr("websecure"), Some(&s.name), &[])
        .await
        .unwrap();
    assert!(h.cert == own.der, "the file's certificate serves");
    i.shutdown().await;
}

//! ACME for labelled containers: a Traefik router's `tls.certresolver` (ordered by HTTP-01) and a
//! Tether router's `tls.resolver` with `tls.domains` (ordered by TLS-ALPN-01), each certificate
//! issued by a real CA (Pebble) and served to a client that trusts only that CA's root, with the
//! container answering behind it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tether::app;
use tether_testkit::acme::{connect_trusting, host, Pebble};
use tether_testkit::docker::Engine;
use tether_testkit::programs::free_port;
use tether_testkit::{wait_for_value, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{from_file, labels, strs};

const KEY: &str = "a docker acme test key of more than thirty-two bytes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_containers_get_certificates_by_http01_and_tls_alpn01() {
    let Some(engine) = Engine::get("acme-labels").await else {
        return;
    };
    let (http_port, tls_port) = (free_port(), free_port());
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (Some(v2), Some(own)) = (host("labels-v2", loopback), host("labels-own", loopback)) else {
        return;
    };
    let Some(ca) = Pebble::start(http_port, tls_port).await else {
        return;
    };
    let root = ca.root_pem().await;
    let net = engine.network("net").await;
    let dir = TempDir::new("tether-docker-acme");
    let config = dir.path().join("tether.toml");
    let resolver = |name: &str, challenge: &str| {
        format!(
            "[acme.{name}]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\nchallenge = \"{challenge}\"\n",
            ca.directory(),
            ca.server_ca().display()
        )
    };
    std::fs::write(
        &config,
        format!(
            "[entrypoints]\nweb = \"127.0.0.1:{http_port}\"\n\
             websecure = {{ address = \"127.0.0.1:{tls_port}\", tls = true }}\n\
             [affinity]\nkey = \"{KEY}\"\n{}{}",
            resolver("pebble", "http-01"),
            resolver("alpn", "tls-alpn-01")
        ),
    )
    .unwrap();
    let opts = from_file(&engine, config, &dir, None);
    let i = app::start(opts).await.expect("tether starts");
    let run = |hint: &'static str, args: Vec<String>| {
        let name = format!("{}-{hint}", engine.run);
        let engine = &engine;
        async move {
            engine
                .run(
                    hint,
                    &strs(&args),
                    &["whoami", "--name", &name, "--listen", "0.0.0.0:8080"],
                )
                .await
        }
    };
    let _traefik = run(
        "v2",
        labels(
            &engine,
            &net,
            &[
                format!("traefik.http.routers.shop.rule=Host(`{v2}`)"),
                "traefik.http.routers.shop.tls.certresolver=pebble".into(),
                "traefik.http.services.shop.loadbalancer.server.port=8080".into(),
            ],
        ),
    )
    .await;
    let _tether = run(
        "own",
        labels(
            &engine,
            &net,
            &[
                "tether.http.routers.api.rule=PathPrefix(`/`)".into(),
                "tether.http.routers.api.tls.resolver=alpn".into(),
                format!("tether.http.routers.api.tls.domains[0].main={own}"),
                "tether.http.services.api.port=8080".into(),
            ],
        ),
    )
    .await;
    let addr = i.addr("websecure");
    for (name, hint) in [(&v2, "v2"), (&own, "own")] {
        let answer = wait_for_value(
            &format!("{name} served over its ordered certificate"),
            Duration::from_secs(60),
            || async {
                let mut h = connect_trusting(addr, name, &root)
                    .await
                    .map_err(|e| format!("{e}; pebble: {}", ca.log()))?;
                h.stream
                    .write_all(
                        format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                let _ = h.stream.read_to_end(&mut out).await;
                Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
            },
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
        assert!(
            answer.contains(hint),
            "{name}: the container answers: {answer}"
        );
    }
    let orders = i.control.acme().unwrap().orders();
    assert_eq!(
        orders.get(&("pebble".to_string(), "success".to_string())),
        Some(&1)
    );
    assert_eq!(
        orders.get(&("alpn".to_string(), "success".to_string())),
        Some(&1)
    );
    i.shutdown().await;
}

//! A container whose labels declare a TCP router (Tether's and Traefik's dialects), reached
//! through a `protocol = "tcp"` entrypoint declared with `--entrypoint`; and one whose TCP label
//! cannot be served, left out with its error while the other keeps serving.

use std::time::Duration;

use tether_model::file_config::EntrypointFlag;
use tether_providers::docker::Endpoint;
use tether_testkit::docker::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{labels, strs, wait_state, Tether};

const FAST: Duration = Duration::from_secs(15);

/// A GET over a raw TCP connection to `at`; the response, or empty if the connection closed.
async fn get_over(at: std::net::SocketAddr) -> String {
    let Ok(mut c) = tokio::net::TcpStream::connect(at).await else {
        return String::new();
    };
    let _ = c
        .write_all(b"GET / HTTP/1.1\r\nHost: anything\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_tcp_routers_reach_their_containers_through_a_tcp_entrypoint() {
    let Some(engine) = Engine::get("tcp-labels").await else {
        return;
    };
    let net = engine.network("net").await;
    let flags = ["tether=127.0.0.1:0,tcp", "traefik=127.0.0.1:0,tcp"]
        .map(|f| EntrypointFlag::parse(f).unwrap())
        .to_vec();
    let endpoint = Endpoint::from_env().expect("DOCKER_HOST");
    let tether = Tether::start_with(&engine, endpoint, Duration::from_secs(1), flags).await;
    let own = labels(
        &engine,
        &net,
        &[
            "tether.tcp.routers.raw.rule=HostSNI(`*`)".into(),
            "tether.tcp.routers.raw.entrypoints=tether".into(),
            "tether.tcp.services.raw.port=8080".into(),
        ],
    );
    let a = engine.whoami("own", &strs(&own)).await;
    let traefik = labels(
        &engine,
        &net,
        &[
            "traefik.tcp.routers.t.rule=HostSNI(`*`)".into(),
            "traefik.tcp.routers.t.entrypoints=traefik".into(),
            "traefik.tcp.services.t.loadbalancer.server.port=8080".into(),
        ],
    );
    let b = engine.whoami("traefik", &strs(&traefik)).await;
    // A TCP router on an HTTP entrypoint: that container is left out, named.
    let bad = labels(
        &engine,
        &net,
        &[
            "tether.tcp.routers.bad.rule=HostSNI(`*`)".into(),
            "tether.tcp.routers.bad.entrypoints=web".into(),
        ],
    );
    let c = engine.whoami("bad", &strs(&bad)).await;
    for (ep, name) in [("tether", &a.name), ("traefik", &b.name)] {
        let at = tether.instance.addr(ep);
        tether_testkit::wait_for_value(&format!("{name} through {ep}"), FAST, || async {
            let answer = get_over(at).await;
            if answer.starts_with("HTTP/1.1 200") && answer.contains(name.as_str()) {
                Ok(())
            } else {
                Err(answer)
            }
        })
        .await;
    }
    let expected =
        "label tether.tcp.routers.bad.entrypoints=\"web\": entrypoint \"web\" serves HTTP";
    wait_state(&format!("{expected:?} in the status"), FAST, || {
        tether
            .errors()
            .iter()
            .any(|e| e.starts_with(expected) && e.contains(&c.name))
    })
    .await;
    // Stopped, its router's connections find no server: closed.
    engine.docker(&["rm", "-f", &a.id]).await.expect("removed");
    let at = tether.instance.addr("tether");
    tether_testkit::wait_for_value("closed without a server", FAST, || async {
        let answer = get_over(at).await;
        if answer.is_empty() {
            Ok(())
        } else {
            Err(answer)
        }
    })
    .await;
}

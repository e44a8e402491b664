//! TCP routers and services in etcd: put through one replica's admin API (or Docker Flow Proxy's
//! `reconfigure` in `reqMode=tcp` and `reqMode=sni`), every replica pipes the connections, each
//! from its own watch; what cannot be served is refused with the field named, and nothing is
//! stored.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tether_testkit::etcd::Etcd;
use tether_testkit::programs::Program;
use tether_testkit::tls::{connect, TestCert};
use tether_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Replica;

/// What comes back of `data` sent on a new connection to `at` (closed after sending).
async fn echoed(at: SocketAddr, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut c = tokio::net::TcpStream::connect(at)
        .await
        .map_err(|e| e.to_string())?;
    c.write_all(data).await.map_err(|e| e.to_string())?;
    c.shutdown().await.map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(back)
}

/// Wait until `at` echoes (`true`) or closes without a byte (`false`).
async fn echoes(what: &str, at: SocketAddr, want: bool) {
    tether_testkit::wait_for_value(what, Duration::from_secs(5), || async {
        match echoed(at, b"ping").await {
            Ok(b) if want && b == b"ping" => Ok(()),
            Ok(b) if !want && b.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn tcp_routers_and_services_put_through_one_replica_are_served_by_all() {
    let Some(etcd) = Etcd::start("TCP routers in etcd").await else {
        return;
    };
    let store = format!("etcd://{}/tcp", etcd.endpoint());
    let replicas = [
        Replica::start_tcp("a", &store),
        Replica::start_tcp("b", &store),
    ];
    let echo = tether_testkit::echo_server().await;
    let r = replicas[0]
        .api()
        .put(
            "/api/tcp/services/db",
            json!({ "servers": [{ "name": "echo-1", "address": echo.to_string() }], "balance": "least_connections" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = replicas[1]
        .api()
        .put(
            "/api/tcp/routers/db",
            json!({ "rule": "HostSNI(`*`)", "service": "db", "entrypoints": ["db"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for rep in &replicas {
        echoes(&format!("{} piping db", rep.name), rep.db.unwrap(), true).await;
    }

    // Read back on the other replica, in the shape a PUT takes.
    let mut api = replicas[0].api();
    let router = api.get("/api/tcp/routers/db").await;
    assert_eq!(router.status, 200, "{}", router.body);
    let body = router.json();
    assert_eq!(
        (&body["source"], &body["rule"], &body["entrypoints"]),
        (&json!("etcd"), &json!("HostSNI(`*`)"), &json!(["db"]))
    );
    assert!(body["etag"].as_str().unwrap().starts_with('"'), "{body}");
    let svc = api.get("/api/tcp/services/db").await.json();
    assert_eq!(svc["servers"][0]["address"], echo.to_string(), "{svc}");
    assert_eq!(svc["balance"], "least_connections", "{svc}");
    let http = api.get("/api/services").await.json();
    assert!(
        !http.as_array().unwrap().iter().any(|s| s["name"] == "db"),
        "a TCP service is not listed among the HTTP ones: {http}"
    );
    assert_eq!(api.get("/api/tcp/routers").await.json()[0]["name"], "db");

    // Refused before anything is stored, each naming its field.
    let before = api.version().await;
    for (path, doc, field, words) in [
        (
            "/api/tcp/routers/x",
            json!({ "rule": "Host(`a.example`)", "service": "db" }),
            "tcp.routers.x.rule",
            "HTTP matcher",
        ),
        (
            "/api/tcp/routers/x",
            json!({ "rule": "HostSNI(`*`)", "service": "db", "entrypoints": ["web"] }),
            "tcp.routers.x.entrypoints",
            "serves HTTP",
        ),
        (
            "/api/tcp/routers/x",
            json!({ "rule": "HostSNI(`*`)", "service": "db", "entrypoints": ["db"] }),
            "tcp.routers.x.rule",
            "HostSNI(`*`) router already",
        ),
        (
            "/api/routes/x",
            json!({ "rule": "PathPrefix(`/`)", "service": "db" }),
            "routes.x.service",
            "TCP service",
        ),
        (
            "/api/tcp/services/x",
            json!({ "servers": [{ "address": "http://10.0.0.1:80" }] }),
            "tcp.services.x.servers[0].address",
            "without a scheme",
        ),
    ] {
        let r = api.put(path, doc).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let errors = r.json()["errors"].to_string();
        assert!(
            errors.contains(field) && errors.contains(words),
            "{path}: {field} saying {words:?}: {}",
            r.body
        );
    }
    assert_eq!(api.version().await, before, "nothing was stored");

    // Deleted on one, gone from all.
    let r = replicas[1].api().delete("/api/tcp/routers/db").await;
    assert_eq!(r.status, 200, "{}", r.body);
    for rep in &replicas {
        echoes(&format!("{} closing db", rep.name), rep.db.unwrap(), false).await;
    }
    let r = api.get("/api/tcp/routers/db").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("no TCP router named"), "{}", r.body);
}

#[tokio::test]
async fn docker_flow_proxys_tcp_and_sni_modes_are_reconfigured_on_every_replica() {
    let Some(etcd) = Etcd::start("DFP's TCP modes in etcd").await else {
        return;
    };
    let dir = TempDir::new("tether-dfp-sni");
    let api_cert = TestCert::write(dir.path(), "api", &["api.foobar.net"]);
    let Some(tls_server) = Program::tls_server(&api_cert.cert_file, &api_cert.key_file).await
    else {
        return;
    };
    let store = format!("etcd://{}/dfp-tcp", etcd.endpoint());
    let replicas = [
        Replica::start_tcp("a", &store),
        Replica::start_tcp("b", &store),
    ];
    let echo = tether_testkit::echo_server().await;
    // `localhost`: the service's name, and the name its server is reached at.
    let call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&reqMode=tcp&srcPort={}&port={}&distribute=true",
        replicas[0].db.unwrap().port(),
        echo.port()
    );
    let r = replicas[0].api().get(&call).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // srcPort found replica a's entrypoint `db`; the stored router names it, so every replica
    // pipes its own `db`.
    for rep in &replicas {
        echoes(
            &format!("{} piping localhost", rep.name),
            rep.db.unwrap(),
            true,
        )
        .await;
    }

    // The same service in SNI mode, as DFP's tutorial labels it: its router moves to the TLS
    // port, passing `api.*` through to the service's own TLS server.
    let call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&reqMode=sni&pathType=req_ssl_sni%20-i%20-m%20beg&servicePath=api.&srcPort={}&port={}&notify=true",
        replicas[0].websecure.unwrap().port(),
        tls_server.addr.port()
    );
    let r = replicas[0].api().get(&call).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Answered once the replica called serves it.
    let router = replicas[0].api().get("/api/tcp/routers/localhost").await;
    assert_eq!(
        router.json()["rule"],
        "HostSNIRegexp(`^api\\.`)",
        "{}",
        router.body
    );
    let websecure = replicas[0].websecure.unwrap();
    tether_testkit::wait_for_value(
        "api.foobar.net passed through",
        Duration::from_secs(5),
        || async {
            match connect(websecure, Some("api.foobar.net"), &[]).await {
                Ok(h) if h.cert == api_cert.der => Ok(()),
                Ok(_) => Err("another certificate".to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    for rep in &replicas {
        echoes(
            &format!("{}: db no longer routed", rep.name),
            rep.db.unwrap(),
            false,
        )
        .await;
    }

    // Refused, naming the parameter; remove takes it off every replica.
    let bad = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&reqMode=sni&servicePath=api.&srcPort={}&port=1",
        websecure.port()
    );
    let r = replicas[1].api().get(&bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["Message"]
            .as_str()
            .unwrap()
            .starts_with("pathType"),
        "{}",
        r.body
    );
    let r = replicas[1]
        .api()
        .get("/v1/docker-flow-proxy/remove?serviceName=localhost")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for rep in &replicas {
        tether_testkit::wait_for(
            &format!("{}: the TCP router gone", rep.name),
            Duration::from_secs(5),
            || async {
                let r = rep.api().get("/api/tcp/routers/localhost").await;
                r.status == 404
            },
        )
        .await;
    }
}

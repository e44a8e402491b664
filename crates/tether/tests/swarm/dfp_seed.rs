//! `examples/swarm/dfp-seed.yml`, the fourth seed as a stack: three Tether replicas with
//! `--dfp-compat` on one etcd, go-demo played by whoami and labelled for Docker Flow Swarm
//! Listener. The call DFSL builds from go-demo's labels (every `com.df.*` label, `serviceName`
//! without the stack prefix under `shortName`, `replicas`, `distribute`), sent to one replica, is
//! served by all three; DFSL's removal takes it off all three.

use std::time::{Duration, Instant};

use tether_testkit::docker::{docker, ETCD_IMAGE, IMAGE, WHOAMI_IMAGE};
use tether_testkit::swarm::Swarm;
use tether_testkit::TempDir;

use crate::support::Stack;

/// The proxy replicas' container ids.
async fn proxies(stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={stack}_proxy");
    docker(&["ps", "-q", "--filter", &filter])
        .await
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `GET url` inside container `id` (its loopback), with the admin token when `token`; the
/// body, or why not.
async fn probe(id: &str, url: &str, token: bool) -> Result<String, String> {
    let mut args = vec!["exec", id, "/tether", "probe", "--print"];
    if token {
        args.extend(["--token-file", "/run/secrets/tether_token"]);
    }
    args.push(url);
    docker(&args).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_fourth_seed_reconfigured_as_dfsl_calls_through_one_replica_is_served_by_all_three() {
    let Some(swarm) = Swarm::get("dfp seed").await else {
        return;
    };
    let dir = TempDir::new("tether-dfp-seed");
    let token = dir.path().join("token");
    std::fs::write(&token, "dfp-seed-test-token").unwrap();
    let stack = format!("{}dfp", swarm.engine.run);
    let (tether, whoami, etcd) = (
        Swarm::image_id(IMAGE).await,
        Swarm::image_id(WHOAMI_IMAGE).await,
        Swarm::image_id(ETCD_IMAGE).await,
    );
    let port = tether_testkit::programs::free_port().to_string();
    let _stack = Stack::deploy(
        "dfp-seed.yml",
        &stack,
        &[
            ("TETHER_IMAGE", tether.as_ref()),
            ("WHOAMI_IMAGE", whoami.as_ref()),
            ("ETCD_IMAGE", etcd.as_ref()),
            ("TETHER_TOKEN_FILE", token.as_os_str()),
            ("TETHER_PORT", port.as_ref()),
        ],
    )
    .await;
    swarm
        .converged(&format!("{stack}_proxy"), 3, Duration::from_secs(90))
        .await;
    swarm
        .converged(&format!("{stack}_go-demo"), 2, Duration::from_secs(60))
        .await;
    let ids = proxies(&stack).await;
    assert_eq!(ids.len(), 3, "{ids:?}");

    // DFSL's call for go-demo, as its parameters.go builds it from the stack's labels.
    let create = "notify=true&distribute=true&shortName=true&servicePath=%2Fdemo&port=8080&serviceName=go-demo&replicas=2";
    let url = format!("http://127.0.0.1:8081/v1/docker-flow-proxy/reconfigure?{create}");
    let end = Instant::now() + Duration::from_secs(60);
    // The first call may come before the replica reaches etcd: DFSL retries, so does this.
    loop {
        match probe(&ids[0], &url, true).await {
            Ok(body) if body.contains("\"Status\":\"OK\"") => break,
            other => assert!(
                Instant::now() < end,
                "reconfigure never answered OK: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // DFSL's retry; bounded by `end`
    }
    // Every replica serves /demo/hello from go-demo, from its own watch of etcd.
    for id in &ids {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match probe(id, "http://127.0.0.1:80/demo/hello", false).await {
                Ok(body) if body.contains("go-demo") => break,
                other => assert!(
                    Instant::now() < end,
                    "replica {id} never served /demo/hello: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await; // poll; bounded by `end`
        }
    }

    // DFSL's removal, through another replica: gone from all three.
    let url =
        "http://127.0.0.1:8081/v1/docker-flow-proxy/remove?serviceName=go-demo&distribute=true";
    let body = probe(&ids[1], url, true).await.expect("remove");
    assert!(body.contains("\"Status\":\"OK\""), "{body}");
    for id in &ids {
        let end = Instant::now() + Duration::from_secs(30);
        while probe(id, "http://127.0.0.1:80/demo/hello", false)
            .await
            .is_ok()
        {
            assert!(
                Instant::now() < end,
                "replica {id} still serves /demo/hello"
            );
            tokio::time::sleep(Duration::from_millis(200)).await; // poll; bounded by `end`
        }
    }
}

//! `examples/swarm/etcd-store.yml` deployed as docs/swarm.md says: etcd from `tether-etcd:dev`
//! with its volume and `endpoint_mode: dnsrr`, three Tether replicas with no affinity key given.
//! They share the key the first one wrote into etcd, and a Docker Flow Proxy reconfigure through
//! one replica is served by all three.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tether_testkit::docker::{docker, ETCD_IMAGE, IMAGE};
use tether_testkit::swarm::Swarm;
use tether_testkit::TempDir;

use crate::support::Stack;

/// `path` on each proxy replica's admin API, read inside its container with the token.
async fn each(stack: &str, path: &str) -> Vec<serde_json::Value> {
    let filter = format!("label=com.docker.swarm.service.name={stack}_proxy");
    let ids = docker(&["ps", "-q", "--filter", &filter])
        .await
        .unwrap_or_default();
    let url = format!("http://127.0.0.1:8081{path}");
    let reads = ids.split_whitespace().map(|id| {
        let (id, url) = (id.to_string(), url.clone());
        async move {
            let out = docker(&[
                "exec",
                &id,
                "/tether",
                "probe",
                "--token-file",
                "/run/secrets/tether_token",
                &url,
            ])
            .await
            .ok()?;
            serde_json::from_str::<serde_json::Value>(&out).ok()
        }
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test]
async fn the_etcd_recipe_three_replicas_share_one_key_and_one_reconfigure() {
    let Some(swarm) = Swarm::get("etcd stack").await else {
        return;
    };
    let dir = TempDir::new("tether-etcd-stack");
    let token = dir.path().join("token");
    std::fs::write(&token, "etcd-stack-test-token").unwrap();
    let stack = format!("{}es", swarm.engine.run);
    let (tether, etcd) = (
        Swarm::image_id(IMAGE).await,
        Swarm::image_id(ETCD_IMAGE).await,
    );
    let _stack = Stack::deploy(
        "etcd-store.yml",
        &stack,
        &[
            ("TETHER_IMAGE", tether.as_ref()),
            ("ETCD_IMAGE", etcd.as_ref()),
            ("TETHER_TOKEN_FILE", token.as_os_str()),
        ],
    )
    .await;
    swarm
        .converged(&format!("{stack}_proxy"), 3, Duration::from_secs(90))
        .await;

    // All three reach etcd and seal with one key, the store's.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let v = each(&stack, "/api/version").await;
        let prints: BTreeSet<&str> = v
            .iter()
            .filter_map(|v| v["affinity"]["fingerprint"].as_str())
            .collect();
        let reachable = v.iter().filter(|v| v["store"]["reachable"] == true).count();
        let known = v
            .iter()
            .map(|v| v["affinity"]["replicas"].as_object().map_or(0, |r| r.len()))
            .min()
            .unwrap_or(0);
        if v.len() == 3 && reachable == 3 && prints.len() == 1 && known == 3 {
            break;
        }
        assert!(
            Instant::now() < end,
            "replicas did not agree on the store's key: {v:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await; // poll interval; bounded by `end`
    }

    // One reconfigure through one replica: every replica serves the route.
    let filter = format!("label=com.docker.swarm.service.name={stack}_proxy");
    let ids = docker(&["ps", "-q", "--filter", &filter]).await.unwrap();
    let one = ids.split_whitespace().next().unwrap();
    docker(&[
        "exec",
        one,
        "/tether",
        "probe",
        "--token-file",
        "/run/secrets/tether_token",
        "http://127.0.0.1:8081/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080",
    ])
    .await
    .expect("reconfigure");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v = each(&stack, "/api/version").await;
        let hashes: BTreeSet<&str> = v.iter().filter_map(|v| v["hash"].as_str()).collect();
        if v.len() == 3 && hashes.len() == 1 && v.iter().all(|v| v["routes"] == 1) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the reconfigure did not reach all three: {v:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // poll interval; bounded by `end`
    }
}

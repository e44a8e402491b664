//! `examples/swarm/haproxy-seed.yml` deployed with `docker stack deploy`: three Tether replicas
//! with the affinity key as a Docker secret report the same `/api/version` within a second of a
//! service change, without talking to each other.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tether_testkit::docker::{docker, IMAGE, WHOAMI_IMAGE};
use tether_testkit::swarm::Swarm;

use crate::support::{key_file, Stack};

/// Each proxy replica's `(hash, routes)` from its own admin API, read inside its container.
async fn versions(stack: &str) -> Vec<(String, u64)> {
    let filter = format!("label=com.docker.swarm.service.name={stack}_proxy");
    let ids = docker(&["ps", "-q", "--filter", &filter])
        .await
        .unwrap_or_default();
    let reads = ids.split_whitespace().map(|id| {
        let id = id.to_string();
        async move {
            let out = docker(&[
                "exec",
                &id,
                "/tether",
                "probe",
                "--print",
                "http://127.0.0.1:8081/api/version",
            ])
            .await
            .ok()?;
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            Some((v["hash"].as_str()?.to_string(), v["routes"].as_u64()?))
        }
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test]
async fn the_first_seed_as_a_stack_three_replicas_agree_within_a_second() {
    let Some(swarm) = Swarm::get("stack deploy").await else {
        return;
    };
    let (_dir, key) = key_file();
    let stack = format!("{}st", swarm.engine.run);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let (tether, whoami) = (
        Swarm::image_id(IMAGE).await,
        Swarm::image_id(WHOAMI_IMAGE).await,
    );
    let _stack = Stack::deploy(
        "haproxy-seed.yml",
        &stack,
        &[
            ("TETHER_IMAGE", tether.as_ref()),
            ("WHOAMI_IMAGE", whoami.as_ref()),
            ("TETHER_KEY_FILE", key.as_os_str()),
            ("TETHER_PORT", port.as_ref()),
        ],
    )
    .await;
    swarm
        .converged(&format!("{stack}_proxy"), 3, Duration::from_secs(90))
        .await;
    swarm
        .converged(&format!("{stack}_service1"), 2, Duration::from_secs(90))
        .await;

    // All three serve the seed's two routes, with one version.
    let end = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let v = versions(&stack).await;
        let hashes: BTreeSet<&String> = v.iter().map(|v| &v.0).collect();
        if v.len() == 3 && hashes.len() == 1 && v.iter().all(|v| v.1 == 2) {
            break v[0].0.clone();
        }
        assert!(Instant::now() < end, "replicas never agreed: {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval; bounded by `end`
    };

    // A change: each replica sees it on its own; from the first to see it to the last.
    docker(&[
        "service",
        "scale",
        "--detach",
        &format!("{stack}_service2=3"),
    ])
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let mut first: Option<Instant> = None;
    let mut round = Duration::ZERO;
    let spread = loop {
        let read_at = Instant::now();
        let v = versions(&stack).await;
        round = round.max(read_at.elapsed());
        let changed = v.iter().filter(|v| v.0 != before).count();
        if changed > 0 {
            first.get_or_insert_with(Instant::now);
        }
        let hashes: BTreeSet<&String> = v.iter().map(|v| &v.0).collect();
        if v.len() == 3 && changed == 3 && hashes.len() == 1 {
            break first.map_or(Duration::ZERO, |f| f.elapsed());
        }
        assert!(Instant::now() < end, "replicas never agreed again: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval; bounded by `end`
    };
    eprintln!(
        "3 replicas: from the first to report the new version to all three: {} ms (one read of all three takes up to {} ms)",
        spread.as_millis(),
        round.as_millis()
    );
    assert!(
        spread < Duration::from_secs(1),
        "replicas disagreed for {spread:?}"
    );
    // Tether's own service declares nothing: each replica says so once, not at every change.
    let logs =
        tether_testkit::docker::output(&["service", "logs", "--raw", &format!("{stack}_proxy")])
            .await;
    let said = logs
        .lines()
        .filter(|l| {
            l.contains(&format!("service {stack}_proxy: no routing labels")) && l.contains("INFO")
        })
        .count();
    assert!((1..=3).contains(&said), "said {said} times:\n{logs}");
}

//! `tether check --swarm` and `--docker` say why a service declares nothing, and replicas of
//! Tether without a shared key are an error.

use std::time::{Duration, Instant};

use tether_testkit::docker::{docker, IMAGE, TEST_LABEL};
use tether_testkit::swarm::Swarm;

#[tokio::test]
async fn check_explains_every_service_that_declares_nothing() {
    let Some(swarm) = Swarm::get("check --swarm").await else {
        return;
    };
    let label = swarm.engine.constraint();
    let other = format!("{}-other", swarm.engine.run);
    docker(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--label",
        &format!("{TEST_LABEL}={}", swarm.engine.run),
        &other,
    ])
    .await
    .unwrap();
    // Routed: labels on the containers only (a stack file's `labels:`), read all the same.
    let good = swarm
        .service("good", &["--container-label", "traefik.port=8080"])
        .await;
    // On a network Tether is not on.
    let lonely = swarm
        .service(
            "lonely",
            &["--network", &other, "--label", "traefik.port=8080"],
        )
        .await;
    // On Tether's network and another, naming the other (the second seed's
    // traefik.docker.network): never routed over a network Tether is not on.
    let named = swarm
        .service(
            "named",
            &[
                "--network",
                &swarm.network,
                "--network",
                &other,
                "--label",
                "traefik.port=8080",
                "--label",
                &format!("traefik.docker.network={other}"),
            ],
        )
        .await;
    // No labels at all.
    let bare = swarm.service("bare", &[]).await;
    // Labels, but scaled to nothing.
    let idle = swarm
        .service("idle", &["--replicas", "0", "--label", "traefik.port=8080"])
        .await;
    swarm.converged(&good, 1, Duration::from_secs(60)).await;
    swarm.converged(&lonely, 1, Duration::from_secs(60)).await;
    swarm.converged(&named, 1, Duration::from_secs(60)).await;

    let (ok, out, err) = swarm
        .tether_once(&["check", "--swarm", "--docker-constraint", &label])
        .await;
    let all = format!("{out}{err}");
    assert!(!ok, "an error (the lonely service) fails the check:\n{all}");
    assert!(
        all.contains(&format!("(service {lonely})"))
            && all.contains("shares no network with Tether"),
        "{all}"
    );
    assert!(
        all.contains(&format!("(service {named})"))
            && all.contains(&format!("not attached to network {other}"))
            && all.contains(&format!("Tether is on {}", swarm.network)),
        "{all}"
    );
    assert!(
        all.contains(&format!("service {bare}: no routing labels")),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "service {idle}: has routing labels but no task running (scaled to 0)"
        )),
        "{all}"
    );
    // The idle service keeps its route, with no server.
    assert!(
        all.contains("1 tasks in rotation, 2 routes and 2 services"),
        "{good} and {idle} route:\n{all}"
    );

    // The Docker provider reads containers: it points at --swarm for the services' own labels.
    let (_, out, err) = swarm
        .tether_once(&["check", "--docker", "--docker-constraint", &label])
        .await;
    let all = format!("{out}{err}");
    assert!(
        all.contains("carry routing labels on the service itself") && all.contains(&lonely),
        "{all}"
    );
}

#[tokio::test]
async fn replicas_of_tether_without_a_shared_key_report_an_error() {
    let Some(swarm) = Swarm::get("replicas without a key").await else {
        return;
    };
    let label = swarm.engine.constraint();
    let proxy = swarm
        .service_of(
            IMAGE,
            "proxy",
            &[
                "--replicas",
                "2",
                "--mount",
                "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock,readonly",
            ],
            &[
                "run",
                "--swarm",
                "--listen",
                "0.0.0.0:80",
                "--docker-constraint",
                &label,
            ],
        )
        .await;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = tether_testkit::docker::output(&["service", "logs", "--raw", &proxy]).await;
        let found = logs
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("no affinity key configured"))
            .count();
        if found >= 2 {
            assert!(logs.contains("2 replicas"), "{logs}");
            break;
        }
        assert!(
            Instant::now() < end,
            "no ERROR about the key from both replicas:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await; // poll interval; bounded by `end`
    }
}

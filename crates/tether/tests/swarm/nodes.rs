//! A real two-node swarm (`two-node-swarm.sh`: a worker engine in a network namespace): the
//! tasks on the other node are servers too, reached over the overlay, and a Tether pointed at a
//! worker's engine says at once that it needs a manager.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tether_testkit::docker::{docker, IMAGE};
use tether_testkit::swarm::{SecondNode, Swarm};
use tether_testkit::Client;

use crate::support::{key_file, wait_servers};

#[tokio::test]
async fn tasks_on_every_node_are_servers_and_a_worker_is_told_apart() {
    let Some(node2) = SecondNode::up("two nodes").await else {
        return;
    };
    let Some(swarm) = Swarm::get("two nodes").await else {
        return;
    };
    let (_dir, key) = key_file();
    let svc = swarm
        .service(
            "spread",
            &[
                "--replicas",
                "4",
                "--constraint",
                "node.platform.os==linux",
                "--placement-pref",
                "spread=node.id",
                "--label",
                "tether.http.services.spread.port=8080",
                "--label",
                "tether.http.routers.spread.rule=PathPrefix(`/`)",
            ],
        )
        .await;
    let tether = swarm.tether("proxy", Some(&key), &[]).await;
    swarm.converged(&svc, 4, Duration::from_secs(90)).await;
    let nodes = docker(&[
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}}",
        &svc,
    ])
    .await
    .unwrap();
    let nodes: BTreeSet<&str> = nodes.split_whitespace().collect();
    assert_eq!(
        nodes.len(),
        2,
        "the tasks are spread over both nodes: {nodes:?}"
    );
    wait_servers(
        &tether,
        "spread@swarm",
        Duration::from_secs(30),
        "4 servers",
        |s| s.len() == 4,
    )
    .await;
    // Every task answers, the other node's too (its containers are not this engine's).
    let mut answered = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(30);
    while answered.len() < 4 {
        let mut c = Client::without_cookies(tether.web);
        if let Ok(r) = c.get("/").await {
            assert_eq!(r.status, 200, "{}", r.body);
            answered.insert(r.server().to_string());
        }
        assert!(Instant::now() < end, "only {answered:?} answered");
    }
    let local = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={svc}"),
    ])
    .await
    .unwrap();
    let local: BTreeSet<&str> = local.split_whitespace().collect();
    assert!(
        answered.iter().any(|h| !local.contains(h.as_str())),
        "a task of the other node answered: {answered:?}, local {local:?}"
    );

    // On the worker: no Swarm API there, and Tether says so.
    let sock = node2.socket.trim_start_matches("unix://");
    let mount = format!("{sock}:/var/run/docker.sock:ro");
    let out = tokio::process::Command::new("docker")
        .args(["-H", &node2.socket, "run", "--rm", "-v", &mount, IMAGE])
        .args(["check", "--swarm"])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is a Swarm worker, not a manager"), "{text}");
}

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
    node2_ready().await;
    let Some(swarm) = Swarm::get("two nodes").await else {
        return;
    };
    let (_dir, key) = key_file();
    let svc = spread(&swarm, "spread").await;
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

/// A whoami service of 4 tasks spread over the nodes, routed on `PathPrefix(/)` as `name`.
async fn spread(swarm: &Swarm, name: &str) -> String {
    let port = format!("tether.http.services.{name}.port=8080");
    let rule = format!("tether.http.routers.{name}.rule=PathPrefix(`/`)");
    swarm
        .service(
            name,
            &[
                "--replicas",
                "4",
                "--constraint",
                "node.platform.os==linux",
                "--placement-pref",
                "spread=node.id",
                "--label",
                &port,
                "--label",
                &rule,
            ],
        )
        .await
}

/// Wait until the manager has node2 ready (it may still be down after a test cut its link).
async fn node2_ready() {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let state = docker(&["node", "inspect", "-f", "{{.Status.State}}", "node2"])
            .await
            .unwrap_or_default();
        if state == "ready" {
            return;
        }
        assert!(Instant::now() < end, "node2 not ready: {state}");
        tokio::time::sleep(Duration::from_millis(500)).await; // poll interval; bounded by `end`
    }
}

/// Sets a link down, and up again when dropped.
struct Cut(String);

impl Cut {
    fn new(link: &str) -> Cut {
        let ok = std::process::Command::new("ip")
            .args(["link", "set", link, "down"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set {link} down");
        Cut(link.to_string())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "set", &self.0, "up"])
            .status();
    }
}

/// A node whose link is cut under load costs one connect timeout, not one per request: the
/// requests that waited long are those that were on their way to it before the first connect
/// to it timed out; every request after that is answered by the other node at once.
#[tokio::test]
async fn a_node_cut_off_under_load_costs_one_connect_timeout() {
    let Some(_node2) = SecondNode::up("node loss").await else {
        return;
    };
    let Some(swarm) = Swarm::get("node loss").await else {
        return;
    };
    let (_dir, key) = key_file();
    let svc = spread(&swarm, "lossy").await;
    let connect = Duration::from_secs(2);
    let tether = swarm
        .tether("proxy", Some(&key), &["--connect-timeout", "2s"])
        .await;
    swarm.converged(&svc, 4, Duration::from_secs(90)).await;
    wait_servers(
        &tether,
        "lossy@swarm",
        Duration::from_secs(30),
        "4 servers",
        |s| s.len() == 4,
    )
    .await;

    // Load: 8 clients, a new connection to Tether per request.
    let start = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop) = (tether.web, stop.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = Client::without_cookies(addr).get("/").await;
                    let ok = matches!(&r, Ok(r) if r.status == 200);
                    done.push((t - start, t.elapsed(), ok));
                    tokio::time::sleep(Duration::from_millis(20)).await; // pacing the load
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await; // load before the cut
    let cut_at = start.elapsed();
    let cut = Cut::new("node2-veth");
    tokio::time::sleep(Duration::from_secs(8)).await; // load after the cut
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        // Requests already on their way over kept-alive connections to the cut node wait for
        // TCP keepalive (about 20 s) to find the connection dead, then go elsewhere.
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    drop(cut);
    node2_ready().await;
    let long: Vec<_> = all
        .iter()
        .filter(|(_, took, _)| *took > Duration::from_secs(1))
        .collect();
    // The first connect to the cut node times out by cut + 2 s; allow scheduling slack.
    let ejected = cut_at + connect + Duration::from_millis(500);
    let late: Vec<_> = long.iter().filter(|(at, _, _)| *at > ejected).collect();
    let failed = all.iter().filter(|(_, _, ok)| !ok).count();
    eprintln!(
        "node loss: {} requests, {} failed; {} waited over 1 s, all sent before {:?} after the cut (connect timeout {connect:?}); the longest waited {:?}",
        all.len(),
        failed,
        long.len(),
        ejected - cut_at,
        all.iter().map(|r| r.1).max().unwrap_or_default()
    );
    assert!(
        late.is_empty(),
        "requests sent after the node was out of rotation still waited: {late:?}"
    );
    assert_eq!(failed, 0, "every request was answered");
    let longest = all.iter().map(|r| r.1).max().unwrap_or_default();
    assert!(
        longest < Duration::from_secs(30),
        "a request on a connection to the cut node waited {longest:?}: TCP found it dead late"
    );
}

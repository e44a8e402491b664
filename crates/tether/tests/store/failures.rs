//! When etcd goes away: replicas keep serving the last good table, refuse changes with 503, say
//! so, and converge on their own when it is back, whatever changed meanwhile (compaction too).

use std::time::{Duration, Instant};

use serde_json::json;
use tether_testkit::etcd::Etcd;
use tether_testkit::relay::Relay;
use tether_testkit::{wait_for, Backend, Client};

use crate::support::{put_app, Replica};

async fn serves(r: &Replica, path: &str, server: &str) -> bool {
    Client::without_cookies(r.web)
        .get(path)
        .await
        .is_ok_and(|reply| reply.status == 200 && reply.server() == server)
}

async fn reachable(r: &Replica) -> bool {
    r.api().get("/api/version").await.json()["store"]["reachable"] == true
}

#[tokio::test]
async fn with_etcd_stopped_replicas_serve_refuse_changes_and_converge_when_it_is_back() {
    let Some(mut etcd) = Etcd::start("etcd stopped").await else {
        return;
    };
    let b = Backend::spawn("down-1").await;
    let url = format!("etcd://{}/down", etcd.endpoint());
    let (a, c) = (Replica::start("a", &url), Replica::start("c", &url));
    let mut api = a.api();
    put_app(&mut api, &b).await;
    api.put(
        "/api/routes/app",
        json!({"rule": "PathPrefix(`/`)", "service": "app"}),
    )
    .await;
    wait_for("c serves the route", Duration::from_secs(2), || {
        serves(&c, "/", "down-1")
    })
    .await;

    etcd.stop();
    wait_for(
        "a reports etcd unreachable",
        Duration::from_secs(5),
        || async { !reachable(&a).await },
    )
    .await;
    for r in [&a, &c] {
        assert!(
            serves(r, "/still", "down-1").await,
            "{} keeps serving",
            r.name
        );
    }
    let refused = api
        .put(
            "/api/routes/new",
            json!({"rule": "PathPrefix(`/new`)", "service": "app"}),
        )
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let version = a.api().get("/api/version").await.json();
    assert!(
        version["store"]["problem"]
            .as_str()
            .unwrap()
            .contains("etcd"),
        "{version}"
    );
    let errors = a.api().get("/api/errors").await.json();
    assert!(errors["unreachable"]["etcd"].is_string(), "{errors}");
    assert!(a.log().contains("etcd unreachable"), "logged");

    etcd.resume().await;
    wait_for("c reconnects", Duration::from_secs(10), || reachable(&c)).await;
    let r = c
        .api()
        .put(
            "/api/routes/new",
            json!({"rule": "PathPrefix(`/new`)", "service": "app", "priority": 100}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_for("a picks up c's change", Duration::from_secs(10), || {
        serves(&a, "/new", "down-1")
    })
    .await;
}

#[tokio::test]
async fn a_replica_cut_off_while_others_change_and_compact_catches_up_in_full() {
    let Some(etcd) = Etcd::start("cut off and compacted").await else {
        return;
    };
    let b = Backend::spawn("cut-1").await;
    let relay = Relay::start(etcd.client).await;
    let a = Replica::start("a", &format!("etcd://{}/cut", etcd.endpoint()));
    let c = Replica::start("c", &format!("etcd://{}/cut", relay.addr));
    let mut api = a.api();
    put_app(&mut api, &b).await;
    api.put(
        "/api/routes/first",
        json!({"rule": "PathPrefix(`/first`)", "service": "app"}),
    )
    .await;
    wait_for("c serves /first", Duration::from_secs(2), || {
        serves(&c, "/first", "cut-1")
    })
    .await;

    relay.cut();
    wait_for(
        "c sees etcd unreachable",
        Duration::from_secs(10),
        || async { !reachable(&c).await },
    )
    .await;
    // Meanwhile: changes through a, and the history c would resume from compacted away.
    api.delete("/api/routes/first").await;
    let r = api
        .put(
            "/api/routes/second",
            json!({"rule": "PathPrefix(`/second`)", "service": "app"}),
        )
        .await;
    let version = r.json()["version"].as_str().unwrap().to_string();
    etcd.compact(etcd.revision().await).await;
    assert!(
        serves(&c, "/first", "cut-1").await,
        "c serves its last good table"
    );

    let restored = Instant::now();
    relay.restore();
    wait_for("c converges", Duration::from_secs(10), || {
        let v = version.clone();
        let mut api = c.api();
        async move { api.version().await == v }
    })
    .await;
    println!(
        "c converged {:?} after the path to etcd came back",
        restored.elapsed()
    );
    assert!(serves(&c, "/second", "cut-1").await);
    assert!(
        !serves(&c, "/first", "cut-1").await,
        "the delete made meanwhile applies too"
    );
    assert!(
        c.log().contains("compacted"),
        "read in full after compaction:\n{}",
        c.log()
    );
}

/// etcd recreated without its data (no volume): every replica keeps serving, one writes its
/// state back into the empty store, all adopt it, say so, and take changes at once again.
#[tokio::test]
async fn etcd_recreated_without_its_data_gets_the_replicas_state_back() {
    let Some(mut etcd) = Etcd::start("etcd lost its data").await else {
        return;
    };
    let b = Backend::spawn("lost-1").await;
    let url = format!("etcd://{}/lost", etcd.endpoint());
    let replicas = [
        Replica::start("a", &url),
        Replica::start("b", &url),
        Replica::start("c", &url),
    ];
    let mut api = replicas[0].api();
    put_app(&mut api, &b).await;
    api.put(
        "/api/routes/app",
        json!({"rule": "PathPrefix(`/`)", "service": "app"}),
    )
    .await;
    for r in &replicas {
        wait_for(
            "every replica serves the route",
            Duration::from_secs(5),
            || serves(r, "/", "lost-1"),
        )
        .await;
    }

    let wiped = Instant::now();
    etcd.wipe().await;
    for r in &replicas {
        assert!(
            serves(r, "/during", "lost-1").await,
            "{} keeps serving",
            r.name
        );
    }
    for r in &replicas {
        wait_for(
            "the incident is reported",
            Duration::from_secs(10),
            || async { r.api().get("/api/version").await.json()["store"]["incident"].is_string() },
        )
        .await;
    }
    let found = wiped.elapsed();
    let version = replicas[1].api().get("/api/version").await.json();
    let incident = version["store"]["incident"].as_str().unwrap().to_string();
    assert!(incident.contains("lost its data"), "{incident}");
    let errors = replicas[2].api().get("/api/errors").await.json();
    assert!(errors["store_incident"].is_string(), "{errors}");
    let wrote: Vec<&str> = replicas
        .iter()
        .filter(|r| r.log().contains("wrote its last state back"))
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        wrote.len(),
        1,
        "exactly one replica wrote its state back: {wrote:?}"
    );
    // The route is in the store again: a change through another replica names it.
    let t = Instant::now();
    let r = replicas[2]
        .api()
        .put(
            "/api/routes/more",
            json!({"rule": "PathPrefix(`/more`)", "service": "app", "priority": 100}),
        )
        .await;
    let took = t.elapsed();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(took < Duration::from_secs(5), "the change took {took:?}");
    for r in &replicas {
        wait_for(
            "every replica serves the new route",
            Duration::from_secs(5),
            || serves(r, "/more", "lost-1"),
        )
        .await;
        assert!(serves(r, "/", "lost-1").await);
    }
    eprintln!(
        "etcd recreated without data: found by all three within {found:?}; {} wrote the state back; a change after it took {took:?}",
        wrote[0]
    );
}

/// Against an etcd with its default flags (`--grpc-keepalive-min-time=5s`), a minute idle brings
/// no protocol error: Tether's keepalive pings follow etcd's policy.
#[tokio::test]
async fn a_minute_idle_against_a_default_etcd_gives_no_protocol_error() {
    let Some(etcd) = Etcd::start("etcd keepalive").await else {
        return;
    };
    let url = format!("etcd://{}/idle", etcd.endpoint());
    let r = Replica::start("idle", &url);
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        assert!(reachable(&r).await, "{}", r.log());
        tokio::time::sleep(Duration::from_secs(5)).await; // sampling the state over the minute
    }
    let log = r.log();
    assert!(
        !log.contains("etcd unreachable") && !log.contains("protocol error"),
        "{log}"
    );
}

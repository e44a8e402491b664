//! Three replicas agree: convergence of API changes, Docker Flow Proxy's seed call, changes under
//! load, a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_testkit::etcd::Etcd;
use tether_testkit::{wait_for, Backend, Client};

use crate::support::{median_max, put_app, Replica};

fn store(etcd: &Etcd, prefix: &str) -> String {
    format!("etcd://{}/{prefix}", etcd.endpoint())
}

fn three(store: &str) -> Vec<Replica> {
    ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start(n, store))
        .collect()
}

/// Wait until every replica reports `version`; the time each took from `since`.
async fn converged(replicas: &[Replica], version: &str, since: Instant) -> Vec<Duration> {
    let mut took = Vec::new();
    for r in replicas {
        let mut api = r.api();
        let v = version.to_string();
        loop {
            if api.version().await == v {
                took.push(since.elapsed());
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{} never served {version}:\n{}",
                r.name,
                r.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    took
}

#[tokio::test]
async fn a_change_through_one_replica_is_served_by_all_within_a_second() {
    let Some(etcd) = Etcd::start("replicas converge").await else {
        return;
    };
    let b = Backend::spawn("conv-1").await;
    let replicas = three(&store(&etcd, "conv"));
    let mut a = replicas[0].api();
    put_app(&mut a, &b).await;
    let mut lags = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let r = a
            .put(
                &format!("/api/routes/r{i}"),
                json!({"rule": format!("PathPrefix(`/r{i}`)"), "service": "app"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let version = r.json()["version"].as_str().unwrap().to_string();
        lags.extend(converged(&replicas[1..], &version, started).await);
    }
    let (median, max) = median_max(lags);
    println!("convergence over 50 changes, replicas b and c: median {median:?}, max {max:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}");
    let mut hashes = Vec::new();
    for r in &replicas {
        hashes.push(r.api().version().await);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    let revisions: Vec<_> = {
        let mut v = Vec::new();
        for r in &replicas {
            v.push(r.api().get("/api/version").await.json()["store"]["revision"].clone());
        }
        v
    };
    assert!(revisions.windows(2).all(|w| w[0] == w[1]), "{revisions:?}");
}

#[tokio::test]
async fn docker_flow_proxys_seed_call_on_one_replica_is_served_by_all_three() {
    let Some(etcd) = Etcd::start("dfp seed call").await else {
        return;
    };
    let b = Backend::spawn("go-demo").await;
    let replicas = three(&store(&etcd, "dfp"));
    let call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=localhost&servicePath=/demo&port={}&distribute=true",
        b.addr.port()
    );
    let started = Instant::now();
    let r = replicas[0].api().get(&call).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let version = r.json()["Version"].as_str().unwrap().to_string();
    converged(&replicas, &version, started).await;
    for rep in &replicas {
        let mut c = Client::new(rep.web);
        let mut ok = 0;
        for _ in 0..50 {
            let reply = c.get("/demo/hello").await.unwrap();
            ok += u32::from(reply.status == 200 && reply.server() == "go-demo");
        }
        assert_eq!(ok, 50, "replica {}", rep.name);
    }
}

#[tokio::test]
async fn fifty_changes_under_steady_load_fail_no_request() {
    let Some(etcd) = Etcd::start("changes under load").await else {
        return;
    };
    let b = Backend::spawn("load-1").await;
    let replicas = three(&store(&etcd, "load"));
    let mut a = replicas[0].api();
    put_app(&mut a, &b).await;
    let r = a
        .put(
            "/api/routes/app",
            json!({"rule": "PathPrefix(`/`)", "service": "app"}),
        )
        .await;
    let version = r.json()["version"].as_str().unwrap().to_string();
    converged(&replicas, &version, Instant::now()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for rep in &replicas {
        let (stop, sent, failed, addr) = (stop.clone(), sent.clone(), failed.clone(), rep.web);
        load.push(tokio::spawn(async move {
            let mut c = Client::without_cookies(addr);
            while !stop.load(Relaxed) {
                let ok = c.get("/steady").await.is_ok_and(|r| r.status == 200);
                sent.fetch_add(1, Relaxed);
                failed.fetch_add(u64::from(!ok), Relaxed);
            }
        }));
    }
    for i in 0..50 {
        // Routes come and go beside the one under load; each through another replica.
        let mut api = replicas[i % 3].api();
        let r = if i % 2 == 0 {
            api.put(
                &format!("/api/routes/extra{i}"),
                json!({"rule": format!("PathPrefix(`/extra{i}`)"), "service": "app"}),
            )
            .await
        } else {
            api.delete(&format!("/api/routes/extra{}", i - 1)).await
        };
        assert!(r.status.is_success(), "change {i}: {} {}", r.status, r.body);
    }
    stop.store(true, Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (sent, failed) = (sent.load(Relaxed), failed.load(Relaxed));
    println!("{sent} requests through 3 replicas during 50 changes, {failed} failed");
    assert!(sent > 100, "the load ran ({sent})");
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn a_restarted_replica_serves_every_route_it_had_trying_endpoints_in_turn() {
    let Some(etcd) = Etcd::start("restart").await else {
        return;
    };
    let b = Backend::spawn("restart-1").await;
    let url = store(&etcd, "restart");
    let mut replicas = three(&url);
    let mut a = replicas[0].api();
    put_app(&mut a, &b).await;
    let mut version = String::new();
    for p in ["one", "two", "three"] {
        let r = a
            .put(
                &format!("/api/routes/{p}"),
                json!({"rule": format!("PathPrefix(`/{p}`)"), "service": "app"}),
            )
            .await;
        version = r.json()["version"].as_str().unwrap().to_string();
    }
    converged(&replicas, &version, Instant::now()).await;
    replicas[2].kill();
    // The first endpoint listed refuses connections: the next one is tried.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let again = Replica::start("c2", &format!("etcd://{dead},{}/restart", etcd.endpoint()));
    let mut api = again.api();
    wait_for(
        "the restarted replica's table",
        Duration::from_secs(5),
        || {
            let v = version.clone();
            let mut api = again.api();
            async move { api.version().await == v }
        },
    )
    .await;
    assert_eq!(api.version().await, version);
    let mut c = Client::new(again.web);
    for p in ["one", "two", "three"] {
        assert_eq!(
            c.get(&format!("/{p}/x")).await.unwrap().server(),
            "restart-1"
        );
    }
}

/// With a store and no key given, the replicas share the key in the store (written once, by the
/// first): a session pinned through one is held by all three. A replica given another key is
/// reported by every replica.
#[tokio::test]
async fn without_a_key_file_replicas_share_the_stores_key_and_a_stray_key_is_reported() {
    let Some(etcd) = Etcd::start("shared key").await else {
        return;
    };
    let url = store(&etcd, "keyless");
    let replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| Replica::start_with_key(n, &url, None))
        .collect();
    let backends = [
        Backend::spawn("k-1").await,
        Backend::spawn("k-2").await,
        Backend::spawn("k-3").await,
    ];
    let servers: Vec<_> = backends
        .iter()
        .map(|b| json!({"name": b.name, "url": b.url()}))
        .collect();
    let mut api = replicas[0].api();
    let r = api
        .put(
            "/api/services/app",
            json!({"servers": servers, "affinity": {"mode": "cookie"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api
        .put(
            "/api/routes/app",
            json!({"rule": "PathPrefix(`/`)", "service": "app"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let version = api.version().await;
    converged(&replicas, &version, Instant::now()).await;
    // One key: the same fingerprint everywhere, and no disagreement.
    let mut prints = std::collections::BTreeSet::new();
    for r in &replicas {
        let v = r.api().get("/api/version").await.json();
        prints.insert(v["affinity"]["fingerprint"].as_str().unwrap().to_string());
    }
    assert_eq!(prints.len(), 1, "{prints:?}");
    let wrote = replicas
        .iter()
        .filter(|r| r.log().contains("this replica wrote one"))
        .count();
    assert_eq!(wrote, 1, "one replica wrote the key");

    // A session pinned through a, sent to a, b and c in turn: one server throughout.
    let mut browser = Client::new(replicas[0].web);
    let first = browser.get("/").await.unwrap().server().to_string();
    for i in 0..12 {
        let r = &replicas[i % 3];
        let mut through = Client::new(r.web);
        through.jar = browser.jar.clone();
        let got = through.get("/").await.unwrap();
        assert_eq!(got.server(), first, "request {i} through {}", r.name);
        browser.jar = through.jar;
    }

    // A fourth replica with a key of its own is reported by the others.
    let stray = Replica::start_with_key("d", &url, Some("another-key-another-key-another-key-!"));
    // Each replica sees d's key when its own watch of the store does: wait for the two read.
    for r in &replicas[..2] {
        wait_for(
            &format!("{} reports d's key", r.name),
            Duration::from_secs(10),
            || async { r.api().get("/api/errors").await.json()["affinity"].is_string() },
        )
        .await;
    }
    let errors = replicas[1].api().get("/api/errors").await.json();
    let msg = errors["affinity"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("another affinity key"), "{errors}");
    let v = stray.api().get("/api/version").await.json();
    assert_eq!(
        v["affinity"]["disagree"].as_array().unwrap().len(),
        3,
        "{v}"
    );
    assert!(replicas[2]
        .log()
        .contains("seal sticky cookies with another key"));
    // `tether check` with the same --store says so too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["check", "--store", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("another affinity key") && err.contains("fingerprint"),
        "{err}"
    );
    drop(stray);
}

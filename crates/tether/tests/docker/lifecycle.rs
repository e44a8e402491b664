//! Containers that stop, turn unhealthy or carry bad labels.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_testkit::docker::WHOAMI_IMAGE;

use crate::support::{labels, routed, setup, strs, wait_for_servers, wait_state, wait_status};

const FAST: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_under_load_fails_no_request_and_moves_pinned_sessions() {
    let Some((engine, net, tether)) = setup("stop", Duration::from_secs(5)).await else {
        return;
    };
    let host = format!("app.{}", engine.run);
    let mut args = routed(&engine, &net, "app", &host);
    args.extend(["--label", "tether.http.services.app.affinity.mode=cookie"].map(String::from));
    let a = engine.whoami("a", &strs(&args)).await;
    let b = engine.whoami("b", &strs(&args)).await;
    wait_for_servers(&mut tether.anonymous(&host), "/", &[&a.name, &b.name], FAST).await;

    // Sessions: keep opening until 3 are pinned to a.
    let mut on_a = Vec::new();
    while on_a.len() < 3 {
        let mut c = tether.client(&host);
        let r = c.get("/").await.unwrap();
        assert_eq!(r.status, 200);
        if r.server() == a.name {
            on_a.push(c);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for mut c in on_a {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.spawn(async move {
            let mut last = String::new();
            while !stop.load(Relaxed) {
                match c.get("/").await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Relaxed);
                        last = r.server().to_string();
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Relaxed);
                        eprintln!("failed: {} {}", r.status, r.body);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        eprintln!("failed: {e}");
                    }
                }
            }
            Some((last, c.jar.clone()))
        });
    }
    for _ in 0..4 {
        let mut c = tether.anonymous(&host);
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.spawn(async move {
            while !stop.load(Relaxed) {
                match c.get("/?sleep=5ms").await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Relaxed),
                    other => {
                        eprintln!("failed: {:?}", other.map(|r| (r.status, r.body)));
                        failed.fetch_add(1, Relaxed)
                    }
                };
            }
            None
        });
    }
    // The load is running (a few hundred requests answered) before the stop...
    wait_state("load answered before the stop", FAST, || {
        ok.load(Relaxed) >= 200
    })
    .await;
    let before = ok.load(Relaxed);
    engine.docker(&["stop", &a.id]).await.expect("docker stop");
    // ...until Tether has seen the container go, and a while after it.
    wait_state("stopped container out of the table", FAST, || {
        !tether.servers("app@docker").contains_key(&a.name)
    })
    .await;
    // ...and keeps being answered after Tether dropped the container.
    let gone = ok.load(Relaxed);
    wait_state("load answered after the stop", FAST, || {
        ok.load(Relaxed) >= gone + 200
    })
    .await;
    stop.store(true, Relaxed);
    let ends = load.join_all().await;
    let (ok, failed) = (ok.load(Relaxed), failed.load(Relaxed));
    println!(
        "stop under load: {ok} requests ok ({} during and after the stop), {failed} failed",
        ok - before
    );
    assert_eq!(failed, 0, "requests failed while a container stopped");
    assert!(ok - before > 50, "the load kept going");
    // join_all gives results in completion order: keep the pinned sessions' ones.
    let pinned: Vec<_> = ends.into_iter().flatten().collect();
    assert_eq!(pinned.len(), 3);
    for (last, jar) in &pinned {
        assert_eq!(
            last, &b.name,
            "a session pinned to the stopped container moved to the other"
        );
        assert!(jar.contains_key("tether_app"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_with_a_healthcheck_gets_traffic_only_while_healthy() {
    let Some((engine, net, tether)) = setup("health", Duration::from_millis(500)).await else {
        return;
    };
    let host = format!("app.{}", engine.run);
    let args = routed(&engine, &net, "app", &host);
    let plain = engine.whoami("plain", &strs(&args)).await;
    let mut hc = args.clone();
    hc.extend(["--health-interval", "1s", "--health-retries", "1"].map(String::from));
    let name = format!("{}-checked", engine.run);
    let checked = engine
        .run_image(WHOAMI_IMAGE, "checked", &strs(&hc), &["--name", &name])
        .await;
    let mut client = tether.anonymous(&host);
    // While its health check has not passed, everything goes to the other container.
    wait_for_servers(&mut client, "/", &[&plain.name], FAST).await;
    let status = |c: &tether_testkit::docker::Container| {
        let id = c.id.clone();
        async move {
            tether_testkit::docker::docker(&["inspect", "-f", "{{.State.Health.Status}}", &id])
                .await
                .unwrap()
        }
    };
    while status(&checked).await == "starting" {
        let r = client.get("/").await.unwrap();
        assert_eq!(r.server(), plain.name, "a starting container got traffic");
    }
    assert_eq!(status(&checked).await, "healthy");
    wait_for_servers(&mut client, "/", &[&checked.name, &plain.name], FAST).await;

    // Turn it unhealthy: no new requests reach it once the engine says so.
    let ip = engine.ip(&checked, &net).await;
    let mut direct = tether_testkit::Client::without_cookies(format!("{ip}:8080").parse().unwrap());
    assert_eq!(direct.get("/health?set=down").await.unwrap().status, 503);
    tether_testkit::wait_for("the engine reports unhealthy", FAST, || async {
        status(&checked).await == "unhealthy"
    })
    .await;
    wait_state(
        "unhealthy container drained",
        Duration::from_secs(1),
        || !tether.takes_new("app@docker", &checked.name),
    )
    .await;
    for _ in 0..40 {
        let r = client.get("/").await.unwrap();
        assert_eq!(
            r.server(),
            plain.name,
            "an unhealthy container got a new request"
        );
    }
    // Healthy again: it gets traffic again.
    assert_eq!(direct.get("/health?set=up").await.unwrap().status, 200);
    wait_for_servers(&mut client, "/", &[&checked.name], FAST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_with_invalid_labels_is_left_out_with_a_named_error() {
    let Some((engine, net, tether)) = setup("invalid", Duration::from_secs(2)).await else {
        return;
    };
    let host = format!("app.{}", engine.run);
    let good = routed(&engine, &net, "app", &host);
    let a = engine.whoami("good", &strs(&good)).await;
    let bad = labels(
        &engine,
        &net,
        &[
            format!("tether.http.routers.app.rule=Host(`{host}`)"),
            "tether.http.services.app.port=80a".into(),
        ],
    );
    let b = engine.whoami("bad", &strs(&bad)).await;
    let expected = format!(
        "label tether.http.services.app.port=\"80a\": not a port number (1..=65535) (container {})",
        b.name
    );
    wait_state(&format!("error {expected:?} in the status"), FAST, || {
        tether.errors().contains(&expected)
    })
    .await;
    let mut client = tether.anonymous(&host);
    for _ in 0..20 {
        let r = client.get("/").await.unwrap();
        assert_eq!((r.status.as_u16(), r.server()), (200, a.name.as_str()));
    }
    // `tether check --docker` reports the same error and fails.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "check",
            "--docker",
            "--docker-constraint",
            &engine.constraint(),
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 routes and 1 services"));
}

/// A service whose last container exited keeps its route: 503 with Retry-After after the
/// service's wait, not 404; started again, it serves; removed, the route goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_last_container_exited_answers_503_until_it_is_removed() {
    let Some((engine, net, tether)) = setup("exited", Duration::from_millis(500)).await else {
        return;
    };
    let host = format!("exited.{}", engine.run);
    let mut args = routed(&engine, &net, "exited", &host);
    args.extend([
        "--label".to_string(),
        "tether.http.services.exited.wait_for_server=1s".to_string(),
    ]);
    let c = engine.whoami("exited-1", &strs(&args)).await;
    let mut client = tether.anonymous(&host);
    wait_for_servers(&mut client, "/", &[&c.name], Duration::from_secs(20)).await;
    engine.docker(&["stop", &c.id]).await.expect("docker stop");
    wait_state(
        "the container out of the table",
        Duration::from_secs(20),
        || tether.servers("exited@docker").is_empty(),
    )
    .await;
    let t = Instant::now();
    let r = client.get("/").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    engine
        .docker(&["start", &c.id])
        .await
        .expect("docker start");
    wait_status(&mut client, "/", 200, Duration::from_secs(20)).await;
    engine
        .docker(&["rm", "-f", &c.id])
        .await
        .expect("docker rm");
    wait_status(&mut client, "/", 404, Duration::from_secs(20)).await;
}

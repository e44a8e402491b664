//! The first seed's own rolling update: dockercloud/haproxy's environment with the seed's
//! `update_config` (parallelism 5, delay 10s, the default stop-first order) on 2 replicas, so both
//! tasks stop before a new one runs. The route stays while the service has no task: requests
//! wait for the new task (`wait_for_server`) and none fails; past the wait, 503, never 404.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_testkit::swarm::Swarm;
use tether_testkit::{docker::docker, Client};

use crate::support::{key_file, wait_servers};

/// The seed's service1, as its compose file deploys it.
const SEED: &[&str] = &[
    "--replicas",
    "2",
    "--env",
    "SERVICE_PORTS=8080",
    "--env",
    "COOKIE=connect.sid prefix nocache",
    "--env",
    "VIRTUAL_HOST=*/service1",
    "--update-parallelism",
    "5",
    "--update-delay",
    "10s",
    "--restart-condition",
    "on-failure",
    "--restart-max-attempts",
    "3",
    "--restart-window",
    "120s",
];

#[tokio::test]
async fn the_seeds_stop_first_update_fails_no_request_and_no_task_is_503_not_404() {
    let Some(swarm) = Swarm::get("seed rolling update").await else {
        return;
    };
    let (_dir, key) = key_file();
    let svc = swarm.service("service1", SEED).await;
    let tether = swarm.tether("proxy", Some(&key), &[]).await;
    let name = format!("{svc}@swarm");
    wait_servers(&tether, &name, Duration::from_secs(60), "2 tasks", |s| {
        s.len() == 2 && s.values().all(|s| s.state == "serving")
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let addr = tether.web;
        tokio::spawn(async move {
            let (mut failed, mut sent, mut slowest) = (Vec::new(), 0u32, Duration::ZERO);
            let mut browser = Client::new(addr);
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                let t = Instant::now();
                match browser.get("/service1").await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failed.push(e),
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await; // pacing the load
            }
            (failed, sent, slowest)
        })
    };
    let old = swarm.tasks(&svc).await;
    docker(&["service", "update", "--detach", "--force", &svc])
        .await
        .expect("service update");
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let t = swarm.tasks(&svc).await;
        let running = t
            .iter()
            .filter(|t| t.2 == "running" && t.3 == "running" && !old.iter().any(|o| o.1 == t.1))
            .count();
        if running == 2 {
            break;
        }
        assert!(Instant::now() < end, "update not done: {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await; // poll interval; bounded by `end`
    }
    // A few requests on the new tasks.
    wait_servers(
        &tether,
        &name,
        Duration::from_secs(30),
        "the new tasks",
        |s| s.len() == 2 && s.values().all(|s| s.state == "serving"),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (failed, sent, slowest) = traffic.await.unwrap();
    eprintln!(
        "seed rolling update (stop-first, parallelism 5): {} of {sent} requests failed; the longest waited {slowest:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );

    // Scaled to 0: the route stays; after the wait, 503 with Retry-After.
    docker(&["service", "scale", "--detach", &format!("{svc}=0")])
        .await
        .expect("scale to 0");
    wait_servers(&tether, &name, Duration::from_secs(60), "no task", |s| {
        s.is_empty()
    })
    .await;
    let t = Instant::now();
    let r = Client::new(tether.web).get("/service1").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
}

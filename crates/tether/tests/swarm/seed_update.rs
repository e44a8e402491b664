//! The first seed's own rolling update: dockercloud/haproxy's environment with the seed's
//! `update_config` (parallelism 5, delay 10s, the default stop-first order) on 2 replicas, so both
//! tasks stop before a new one runs. The route stays while the service has no task: requests
//! wait for the new task (`wait_for_server`, 5 s) and none fails; past the wait, 503, never 404.
//! The engine decides how long the service has no task: when its first new container started
//! only near the end of a request's wait (a busy machine), that request gets its 503 when the wait
//! is out, as documented; a request that waits out a wait in which a new task ran is a failure.
//!
//! The seed's session counts 1..N through the update. Its app keeps sessions in express-session's
//! MemoryStore, which dies with the task: with stop-first on 2 replicas every task is replaced at
//! once, so no proxy can keep those counts. The app here keeps them in a store its tasks share (a
//! bind-mounted directory, `whoami --sessions`, as connect-redis would be), and what this asserts
//! is Tether's part: the browser's `connect.sid`, which Tether prefixes with the task's id, reaches
//! the new tasks as the app wrote it, and the session goes on counting, one request at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tether_testkit::swarm::Swarm;
use tether_testkit::{docker::docker, Client};

use tether_testkit::docker::WHOAMI_IMAGE;
use tether_testkit::TempDir;

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

/// The seed's `wait_for_server`: Tether's default.
const WAIT: Duration = Duration::from_secs(5);

/// When the first of the containers `ids` that are not in `old` started, by its own `StartedAt`.
async fn first_started(ids: &[String], old: &[String]) -> Option<SystemTime> {
    let mut first: Option<SystemTime> = None;
    for id in ids.iter().filter(|id| !id.is_empty() && !old.contains(id)) {
        let Ok(t) = docker(&["inspect", "-f", "{{.State.StartedAt}}", id]).await else {
            continue;
        };
        if let Ok(t) = humantime::parse_rfc3339_weak(t.trim()) {
            first = Some(first.map_or(t, |f| f.min(t)));
        }
    }
    first
}

#[tokio::test]
async fn the_seeds_stop_first_update_fails_no_request_and_no_task_is_503_not_404() {
    let Some(swarm) = Swarm::get("seed rolling update").await else {
        return;
    };
    let (_dir, key) = key_file();
    // The app's session store, shared by its tasks (one node: a bind mount).
    let store = TempDir::new("seed-sessions");
    std::fs::set_permissions(
        store.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mount = format!(
        "type=bind,source={},target=/sessions",
        store.path().display()
    );
    let mut args = SEED.to_vec();
    args.extend(["--mount", &mount]);
    let svc = swarm
        .service_of(
            WHOAMI_IMAGE,
            "service1",
            &args,
            &["--sessions", "/sessions"],
        )
        .await;
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
            let mut counts = Vec::new();
            let mut browser = Client::new(addr);
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                let (t, began) = (Instant::now(), SystemTime::now());
                match browser.get("/service1").await {
                    Ok(r) if r.status == 200 => counts.push(r.visits()),
                    Ok(r) => failed.push((
                        r.status.as_u16(),
                        format!("{} {}", r.status, r.body),
                        t.elapsed(),
                        began,
                    )),
                    Err(e) => failed.push((0, e, t.elapsed(), began)),
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await; // pacing the load
            }
            (failed, sent, slowest, counts)
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
    let (failed, sent, slowest, counts) = traffic.await.unwrap();
    let new: Vec<String> = swarm.tasks(&svc).await.into_iter().map(|t| t.1).collect();
    let old: Vec<String> = old.into_iter().map(|t| t.1).collect();
    let started = first_started(&new, &old)
        .await
        .expect("the new containers' start times");
    eprintln!(
        "seed rolling update (stop-first, parallelism 5): {} of {sent} requests failed; the longest waited {slowest:?}; the session counted 1..{}",
        failed.len(),
        counts.last().copied().unwrap_or(0)
    );
    // A request may fail only at its wait's end: a 503 after the whole wait, when the first new
    // container started too late in it to be healthy and seen in time (its HEALTHCHECK runs every
    // 2 s and the Swarm API is polled every 500 ms: 3 s are allowed). Never a 404, never a broken
    // connection.
    for (status, what, waited, began) in &failed {
        let into_wait = started.duration_since(*began).unwrap_or(Duration::ZERO);
        assert!(
            *status == 503 && *waited >= WAIT && into_wait + Duration::from_secs(3) >= WAIT,
            "{} of {sent} failed: {what} after {waited:?}; the first new container started {into_wait:?} into its wait",
            failed.len()
        );
    }
    let expected: Vec<u64> = (1..=counts.len() as u64).collect();
    assert!(
        counts == expected,
        "the session did not count 1..{} through the update: {counts:?}",
        counts.len()
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

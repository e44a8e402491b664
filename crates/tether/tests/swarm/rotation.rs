//! Tasks in and out of rotation: the second seed's labels on the service, sessions that follow
//! their slot through a rolling update without a failed request, and how fast Tether sees a task
//! come and go.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tether_testkit::swarm::Swarm;
use tether_testkit::{docker::docker, Client};

use crate::support::{key_file, median_max, wait_servers};

/// The second seed's labels (Traefik v1 on Swarm), set on the service as `deploy.labels` are.
const SEED: &[&str] = &[
    "--label",
    "traefik.port=8080",
    "--label",
    "traefik.frontend.rule=PathPrefix:/",
    "--label",
    "traefik.backend.loadbalancer.stickiness=true",
];

#[tokio::test]
async fn service_labels_route_and_sessions_follow_their_slot_through_a_rolling_update() {
    let Some(swarm) = Swarm::get("rolling update").await else {
        return;
    };
    let (_dir, key) = key_file();
    let mut args = vec!["--replicas", "3", "--update-order", "start-first"];
    args.extend_from_slice(SEED);
    let svc = swarm.service("who", &args).await;
    let tether = swarm.tether("proxy", Some(&key), &[]).await;
    let name = format!("{svc}@swarm");
    let before = wait_servers(
        &tether,
        &name,
        Duration::from_secs(60),
        "3 tasks routable",
        |s| s.len() == 3 && s.values().all(|s| s.state == "serving"),
    )
    .await;
    let slots: BTreeSet<&str> = before.keys().map(String::as_str).collect();
    let want: BTreeSet<String> = (1..=3).map(|i| format!("{svc}.{i}")).collect();
    assert_eq!(
        slots,
        want.iter().map(String::as_str).collect(),
        "servers are named by slot"
    );

    let mut pinned = Client::new(tether.web);
    let first = pinned.get("/").await.expect("first request");
    assert_eq!(first.status, 200, "{}", first.body);
    let host = first.server().to_string();
    let tasks = swarm.tasks(&svc).await;
    let slot = tasks
        .iter()
        .find(|t| t.1 == host)
        .map(|t| t.0)
        .unwrap_or_else(|| panic!("{host} is none of {tasks:?}"));
    for _ in 0..10 {
        assert_eq!(pinned.get("/").await.unwrap().server(), host, "pinned");
    }

    // Requests go on during the update: the pinned client, and new visitors.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let addr = tether.web;
        tokio::spawn(async move {
            let (mut seen, mut failed, mut sent) = (BTreeSet::new(), Vec::new(), 0u32);
            while !stop.load(Ordering::Relaxed) {
                let mut visitor = Client::without_cookies(addr);
                for c in [&mut pinned, &mut visitor] {
                    sent += 1;
                    match c.get("/").await {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                        Err(e) => failed.push(e),
                    }
                }
                if let Ok(r) = pinned.get("/").await {
                    seen.insert(r.server().to_string());
                }
                tokio::time::sleep(Duration::from_millis(10)).await; // pacing the load
            }
            (pinned, seen, failed, sent)
        })
    };
    docker(&["service", "update", "--detach", "--force", &svc])
        .await
        .expect("service update");
    // Done when every task is new: three running, none of the old containers.
    let old: BTreeSet<String> = tasks.iter().map(|t| t.1.clone()).collect();
    let end = Instant::now() + Duration::from_secs(120);
    let after = loop {
        let t = swarm.tasks(&svc).await;
        let running: Vec<_> = t
            .iter()
            .filter(|t| t.2 == "running" && t.3 == "running")
            .cloned()
            .collect();
        if running.len() == 3 && running.iter().all(|t| !old.contains(&t.1)) {
            break running;
        }
        assert!(Instant::now() < end, "update not done: {t:?}");
        tokio::time::sleep(Duration::from_millis(200)).await; // poll interval; bounded by `end`
    };
    // The old tasks drain and leave.
    wait_servers(
        &tether,
        &name,
        Duration::from_secs(30),
        "only the new tasks",
        |s| s.len() == 3 && s.values().all(|s| s.state == "serving"),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut pinned, seen, failed, sent) = traffic.await.unwrap();
    let new_host = after.iter().find(|t| t.0 == slot).unwrap().1.clone();
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed: {failed:?}",
        failed.len()
    );
    let allowed: BTreeSet<String> = [host.clone(), new_host.clone()].into();
    assert!(
        seen.is_subset(&allowed),
        "the pinned session stayed on slot {slot} ({host}, then {new_host}): {seen:?}"
    );
    let now = pinned.get("/").await.unwrap();
    assert_eq!(
        now.server(),
        new_host,
        "the new task of slot {slot} has the session"
    );
    eprintln!("rolling update: {sent} requests, 0 failed; the pinned session moved from {host} to {new_host} (slot {slot})");
}

#[tokio::test]
async fn tasks_enter_and_leave_rotation_within_a_second() {
    let Some(swarm) = Swarm::get("rotation timing").await else {
        return;
    };
    let (_dir, key) = key_file();
    let mut args = vec!["--replicas", "1"];
    args.extend_from_slice(SEED);
    let svc = swarm.service("who", &args).await;
    let tether = swarm.tether("proxy", Some(&key), &[]).await;
    let name = format!("{svc}@swarm");
    wait_servers(&tether, &name, Duration::from_secs(60), "1 task", |s| {
        s.len() == 1
    })
    .await;

    // In: from each task's `running` (the engine's timestamp) to routable.
    docker(&["service", "scale", "--detach", &format!("{svc}=5")])
        .await
        .expect("scale up");
    let mut first_seen = std::collections::BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(60);
    while first_seen.len() < 5 {
        let s = crate::support::servers(&tether, &name).await;
        for srv in s.values().filter(|s| s.state == "serving") {
            first_seen
                .entry(srv.name.clone())
                .or_insert_with(SystemTime::now);
        }
        assert!(Instant::now() < end, "not 5 servers: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval; bounded by `end`
    }
    let mut ins = Vec::new();
    for t in swarm.tasks(&svc).await.iter().filter(|t| t.2 == "running") {
        let running_at = running_since(&svc, t.0).await;
        let seen = first_seen[&format!("{svc}.{}", t.0)];
        if t.0 == 1 {
            continue; // was there before Tether
        }
        ins.push(seen.duration_since(running_at).unwrap_or_default());
    }

    // Out: from the scale-down's return (the desired state changed then) to out of rotation.
    let asked = Instant::now();
    docker(&["service", "scale", "--detach", &format!("{svc}=1")])
        .await
        .expect("scale down");
    let mut outs = Vec::new();
    let mut gone = BTreeSet::new();
    while gone.len() < 4 {
        let s = crate::support::servers(&tether, &name).await;
        for i in 1..=5 {
            let n = format!("{svc}.{i}");
            let serving = s.get(&n).is_some_and(|s| s.state == "serving");
            if !serving && gone.insert(n) {
                outs.push(asked.elapsed());
            }
        }
        assert!(asked.elapsed() < Duration::from_secs(30), "not out: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval; bounded above
    }
    let (in_med, in_max) = median_max(ins.clone());
    let (out_med, out_max) = median_max(outs);
    eprintln!(
        "swarm freshness: running -> routable median {in_med} ms, max {in_max} ms ({} tasks); shutdown asked -> out of rotation median {out_med} ms, max {out_max} ms (4 tasks)",
        ins.len()
    );
    assert!(in_max < 1000, "a task took {in_max} ms to be routable");
    assert!(out_max < 1000, "a task took {out_max} ms to leave rotation");
}

/// When the running task of `slot` reached `running`, by the engine's clock (this machine's).
async fn running_since(service: &str, slot: u64) -> SystemTime {
    let ids = docker(&[
        "service",
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        "desired-state=running",
        service,
    ])
    .await
    .unwrap();
    for id in ids.split_whitespace() {
        let line = docker(&[
            "inspect",
            "-f",
            "{{.Slot}} {{.Status.Timestamp.Format \"2006-01-02T15:04:05.000000000Z07:00\"}}",
            id,
        ])
        .await
        .unwrap();
        if let Some((s, ts)) = line.split_once(' ') {
            if s == slot.to_string() {
                return humantime::parse_rfc3339(ts.trim()).unwrap_or_else(|e| panic!("{ts}: {e}"));
            }
        }
    }
    panic!("no running task in slot {slot}")
}

//! Containers are found as they start, and bursts of events are coalesced.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tether_testkit::docker::IMAGE;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{routed, setup, strs, wait_for_servers, wait_state, wait_status};

const FAST: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_containers_become_routable_within_milliseconds_of_their_start() {
    let Some((engine, net, tether)) = setup("discovery", Duration::from_secs(2)).await else {
        return;
    };
    let host = format!("who.{}", engine.run);
    let args = routed(&engine, &net, "who", &host);
    let a = engine.whoami("a", &strs(&args)).await;
    let b = engine.whoami("b", &strs(&args)).await;
    let mut client = tether.anonymous(&host);
    wait_for_servers(&mut client, "/", &[&a.name, &b.name], FAST).await;
    let ip = engine.ip(&a, &net).await;
    assert_eq!(
        tether.servers("who@docker").get(&a.name),
        Some(&format!("{ip}:8080")),
        "routed to the container's address on its network"
    );

    // The engine's own start events, to time discovery from; `--since` replays those that come
    // before the subscription is in place.
    let filter = format!("label={}", engine.constraint());
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let since = format!("{}.{:09}", since.as_secs(), since.subsec_nanos());
    let mut events = tokio::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since,
            "--filter",
            "event=start",
            "--filter",
            &filter,
            "--format",
            "{{.ID}} {{.TimeNano}}",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("docker events");
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    let mut started: HashMap<String, i64> = HashMap::new();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let host = format!("lat{i}.{}", engine.run);
        let args = routed(&engine, &net, &format!("lat{i}"), &host);
        let c = engine.whoami(&format!("lat{i}"), &strs(&args)).await;
        let mut client = tether.anonymous(&host);
        wait_status(&mut client, "/", 200, FAST).await;
        let routed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        while !started.contains_key(&c.id) {
            let line = tokio::time::timeout(FAST, lines.next_line())
                .await
                .expect("start event")
                .unwrap()
                .unwrap();
            if let Some((id, t)) = line.split_once(' ') {
                started.insert(id.to_string(), t.parse().unwrap());
            }
        }
        latencies.push(Duration::from_nanos((routed - started[&c.id]).max(0) as u64));
    }
    latencies.sort();
    let (median, max) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    println!("discovery: start event -> first routed request over 20 containers: median {median:?}, max {max:?}");
    assert!(
        max < Duration::from_secs(2),
        "a container took {max:?} to become routable"
    );

    // What `tether_discovery_lag_seconds{source="docker"}` exports: one observation per table
    // that a start brought (each container here came alone), each no longer than the time to
    // the first routed request measured above.
    let lag = tether.instance.control.discovery_lag();
    let (_, docker) = lag
        .iter()
        .find(|(source, _)| source == "docker")
        .expect("the docker source's discovery lag is counted");
    assert!(
        docker.count() >= 20,
        "every container's table counted: {}",
        docker.count()
    );
    let mean = Duration::from_micros(docker.sum_us / docker.count());
    println!(
        "discovery: tether_discovery_lag_seconds{{source=\"docker\"}}: {} changes, mean {mean:?}",
        docker.count()
    );
    // The lags counted are those measured, at the histogram's resolution: most fit the bucket
    // holding the measured `max`, and none is past 2.5 s. A change is counted from the first
    // event it carries, which may come before the container's start (its network connect), so
    // on a busy machine a few are later than the start-to-first-request time measured here.
    let bounds = tether_proxy::stats::histogram::BOUNDS_US;
    let bucket = bounds
        .iter()
        .position(|&b| u128::from(b) >= max.as_micros())
        .unwrap_or(bounds.len());
    let within = docker.cumulative[bucket];
    assert!(
        within * 2 >= docker.count(),
        "only {within} of {} lags counted fit the measured time (max {max:?}, bucket up to {:?})",
        docker.count(),
        bounds.get(bucket).map(|&b| Duration::from_micros(b))
    );
    let slow = bounds
        .iter()
        .position(|&b| b == 2_500_000)
        .expect("a 2.5 s bound");
    assert_eq!(
        docker.cumulative[slow],
        docker.count(),
        "every lag counted is under 2.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_containers_at_once_are_coalesced_into_few_swaps() {
    let Some((engine, net, tether)) = setup("burst", Duration::from_secs(2)).await else {
        return;
    };
    let host = format!("burst.{}", engine.run);
    let args = routed(&engine, &net, "burst", &host);
    let label = engine.constraint();
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..50 {
        let name = format!("{}-b{i}", engine.run);
        let mut all: Vec<String> = vec![
            "create".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            label.clone(),
        ];
        all.extend(args.iter().cloned());
        all.extend([IMAGE.to_string(), "whoami".into(), "--name".into(), name]);
        creating.spawn(async move {
            tether_testkit::docker::docker(&strs(&all))
                .await
                .expect("docker create")
        });
    }
    let ids: Vec<String> = creating.join_all().await;
    let before = tether.swaps();
    let t0 = Instant::now();
    let mut starting = tokio::task::JoinSet::new();
    for id in &ids {
        let id = id.clone();
        starting.spawn(async move {
            tether_testkit::docker::docker(&["start", &id])
                .await
                .expect("docker start")
        });
    }
    starting.join_all().await;
    wait_state(
        "50 started containers routed",
        Duration::from_secs(30),
        || tether.servers("burst@docker").len() == 50,
    )
    .await;
    let start_swaps = tether.swaps() - before;
    let start_time = t0.elapsed();
    let mut names: Vec<String> = (0..50).map(|i| format!("{}-b{i}", engine.run)).collect();
    names.sort();
    let mut client = tether.anonymous(&host);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for_servers(&mut client, "/", &refs, FAST).await;

    let before = tether.swaps();
    let mut pause = vec!["pause"];
    pause.extend(ids.iter().map(String::as_str));
    engine.docker(&pause).await.expect("docker pause");
    // Requests sent to a container just paused would hang: watch the table instead.
    wait_state("paused containers out of the table", FAST, || {
        tether.servers("burst@docker").is_empty()
    })
    .await;
    // The route stays while its service has no server: the request waits its 5 s for one, then
    // 503 with Retry-After, never 404.
    let t = Instant::now();
    let r = client.get("/").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "it waited for a server first"
    );
    let pause_swaps = tether.swaps() - before;
    println!(
        "burst: 50 starts over {start_time:?} applied in {start_swaps} swaps; 50 pauses in {pause_swaps} swaps"
    );
    assert!(start_swaps < 50, "50 starts gave {start_swaps} swaps");
    assert!(
        pause_swaps <= 12,
        "50 pauses at once gave {pause_swaps} swaps"
    );
}

//! The default worker count in a container follows its CPU limit: `available_parallelism`
//! honours the cgroup's quota, so `docker run --cpus 1` starts one worker and one listening
//! socket per entrypoint, and a container without a limit one per CPU of the host.

use std::time::Duration;

use tether_testkit::docker::{docker, output, Engine, IMAGE};

/// The number of sockets Tether's `web` entrypoint listens on, from the container's log.
async fn sockets_of(engine: &Engine, hint: &str, limit: &[&str]) -> usize {
    let mut args = vec!["--network", "none"];
    args.extend_from_slice(limit);
    let c = engine
        .run_image(
            IMAGE,
            hint,
            &args,
            &[
                "run",
                "--listen",
                "127.0.0.1:8080",
                "--admin",
                "127.0.0.1:8081",
            ],
        )
        .await;
    tether_testkit::wait_for_value(
        &format!("{hint}: Tether listening"),
        Duration::from_secs(20),
        || async {
            let log = output(&["logs", &c.name]).await;
            log.lines()
                .find(|l| l.contains("listening entrypoint=web"))
                .and_then(|l| l.split("sockets=").nth(1))
                .and_then(|n| n.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("not yet: {log}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_of_one_starts_one_worker_and_no_limit_one_per_cpu() {
    let Some(engine) = Engine::get("workers").await else {
        return;
    };
    assert_eq!(sockets_of(&engine, "one-cpu", &["--cpus", "1"]).await, 1);
    let cpus: usize = docker(&["info", "--format", "{{.NCPU}}"])
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sockets_of(&engine, "all-cpus", &[]).await, cpus);
}

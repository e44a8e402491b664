//! Tether on the host routes only to addresses it can reach, and knows it runs on the host even
//! while a Swarm task with a secret runs beside it (the secret's mount shows in the host's mount
//! table under `/var/lib/docker/containers/<id>/`, which once made Tether take that task's
//! networks for its own and answer 404 for every compose container).

use std::time::Duration;

use tether_testkit::docker::docker;
use tether_testkit::swarm::Swarm;

use crate::support::{routed, strs, wait_for_servers, wait_state, Tether};

const FAST: Duration = Duration::from_secs(20);

/// A Swarm secret, removed when dropped (after the services using it).
struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["secret", "rm", &self.0])
            .output();
    }
}

/// An iptables rule that counts the packets this host sends to one address, removed when
/// dropped: the kernel's own witness that nothing was sent there.
struct Counter {
    rule: Vec<String>,
}

impl Counter {
    fn new(ip: &str, tag: &str) -> Option<Counter> {
        let rule: Vec<String> = [
            "OUTPUT",
            "-d",
            &format!("{ip}/32"),
            "-m",
            "comment",
            "--comment",
            tag,
            "-j",
            "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut insert = vec!["-I".to_string()];
        insert.extend(rule.iter().cloned());
        let ok = std::process::Command::new("iptables")
            .args(&insert)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            tether_testkit::missing("iptables (root) to count packets sent to an address");
            return None;
        }
        Some(Counter { rule })
    }

    /// Packets counted so far.
    fn packets(&self) -> u64 {
        let out = std::process::Command::new("iptables")
            .args(["-L", "OUTPUT", "-v", "-x", "-n"])
            .output()
            .expect("iptables -L");
        let text = String::from_utf8_lossy(&out.stdout);
        let tag = &self.rule[6];
        text.lines()
            .find(|l| l.contains(&format!("/* {tag} */")))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("the counting rule is gone:\n{text}"))
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let mut delete = vec!["-D".to_string()];
        delete.extend(self.rule.iter().cloned());
        let _ = std::process::Command::new("iptables")
            .args(&delete)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_host_beside_a_task_with_a_secret_bridges_are_routed_and_overlays_never() {
    let Some(swarm) = Swarm::get("host tether beside a swarm secret").await else {
        return;
    };
    let engine = &swarm.engine;
    // A task with a secret: its mount appears in this host's mount table.
    let secret = Secret(format!("{}-sec", engine.run));
    let file = std::env::temp_dir().join(&secret.0);
    std::fs::write(&file, "s3cret").unwrap();
    docker(&["secret", "create", &secret.0, file.to_str().unwrap()])
        .await
        .expect("docker secret create");
    let _ = std::fs::remove_file(&file);
    let svc = swarm.service("holder", &["--secret", &secret.0]).await;
    swarm.converged(&svc, 1, Duration::from_secs(60)).await;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !mounts.contains("/mounts/secrets") {
        eprintln!("note: this engine's secret mounts are not in the test's mount table");
    }

    // A compose-style container on a local bridge, and one on the test's overlay.
    let bridge = engine.network("br").await;
    let host_b = format!("bridge.{}", engine.run);
    let b = engine
        .whoami(
            "onbridge",
            &strs(&routed(engine, &bridge, "onbridge", &host_b)),
        )
        .await;
    let host_o = format!("overlay.{}", engine.run);
    let o = engine
        .whoami(
            "onoverlay",
            &strs(&routed(engine, &swarm.network, "onoverlay", &host_o)),
        )
        .await;
    let overlay_ip = engine.ip(&o, &swarm.network).await;
    let counter = Counter::new(&overlay_ip, &engine.run);

    let tether = Tether::start(engine, Duration::from_secs(2)).await;
    wait_for_servers(&mut tether.anonymous(&host_b), "/", &[&b.name], FAST).await;
    wait_state("the overlay container refused", FAST, || {
        tether.errors().iter().any(|e| e.contains(&o.name))
    })
    .await;
    let errors = tether.errors().join("\n");
    assert!(
        errors.contains("is on no network the host Tether runs on reaches")
            && errors.contains(&swarm.network)
            && errors.contains(&bridge),
        "the error names the container's network and what the host reaches: {errors}"
    );
    assert!(tether.servers("onoverlay@docker").is_empty());
    for _ in 0..5 {
        let r = tether.anonymous(&host_o).get("/").await.unwrap();
        assert_eq!(r.status, 404, "{}", r.body);
    }
    if let Some(c) = counter {
        assert_eq!(c.packets(), 0, "a packet was sent to {overlay_ip}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_self_names_a_running_container_or_tether_does_not_start() {
    let Some(engine) = tether_testkit::docker::Engine::get("--docker-self").await else {
        return;
    };
    let dir = tether_testkit::TempDir::new("tether-self");
    let mut opts = tether::app::Options::file(
        dir.path().join("none.toml"),
        dir.path().to_path_buf(),
        Duration::from_secs(1),
    );
    opts.config = None;
    opts.listen = "127.0.0.1:0".parse().unwrap();
    opts.key_file = None;
    opts.docker = Some(tether::app::DockerOptions {
        endpoint: tether_providers::docker::Endpoint::from_env().unwrap(),
        network: None,
        constraint: Some(("x".into(), engine.run.clone())),
        self_spec: tether_providers::docker::whereabouts::SelfSpec::Named(format!(
            "{}-nobody",
            engine.run
        )),
        secrets_dir: None,
        dockercloud: Default::default(),
        interlock_ext_name: None,
    });
    let err = tether::app::start(opts).await.unwrap_err().to_string();
    assert!(
        err.contains("--docker-self") && err.contains("no running container"),
        "{err}"
    );
}

//! `examples/swarm/traefik-seed/run.sh`: the second seed's own commands (a global whoami service,
//! its four Traefik v1 labels added with `docker service update --label-add`, the proxy created
//! as Traefik's service), Tether in Traefik's place. The seed's route answers, and its sticky
//! cookie names no backend address.

use std::net::SocketAddr;
use std::time::Duration;

use tether_testkit::docker::{repo_root, IMAGE, TEST_LABEL, WHOAMI_IMAGE};
use tether_testkit::swarm::Swarm;
use tether_testkit::Client;

/// Run the seed's script with `env`.
async fn script(action: &str, env: &[(&str, String)]) {
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(repo_root().join("examples/swarm/traefik-seed/run.sh"))
        .arg(action);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "run.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_second_seeds_commands_with_tether_in_traefiks_place_keep_a_session_on_its_task() {
    let Some(swarm) = Swarm::get("traefik seed").await else {
        return;
    };
    let run = &swarm.engine.run;
    let proxy_port = tether_testkit::programs::free_port();
    let env = vec![
        ("NETWORK", format!("{run}-whoaminet")),
        ("SERVICE", format!("{run}-whoami-service")),
        ("PROXY", format!("{run}-traefik")),
        ("WHOAMI_IMAGE", Swarm::image_id(WHOAMI_IMAGE).await),
        ("TETHER_IMAGE", Swarm::image_id(IMAGE).await),
        (
            "WHOAMI_PORT",
            tether_testkit::programs::free_port().to_string(),
        ),
        ("PROXY_PORT", proxy_port.to_string()),
        // No IPVS on the test engine: each node's task publishes its own port.
        ("PUBLISH_MODE", "host".to_string()),
        ("LABEL", format!("{TEST_LABEL}={run}")),
        // Only this test's services (the swarm is shared with the other tests).
        (
            "TETHER_ARGS",
            format!("--docker-constraint {TEST_LABEL}={run}"),
        ),
    ];
    script("up", &env).await;
    struct Down(Vec<(&'static str, String)>);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(repo_root().join("examples/swarm/traefik-seed/run.sh"))
                .arg("down")
                .envs(self.0.iter().map(|(k, v)| (*k, v.as_str())))
                .output();
        }
    }
    let _down = Down(env.clone());
    // Both services are global: one task per node, however many nodes the swarm has while the
    // test runs (another test may join a second one), so the route answering is the signal.

    // The seed's rule, PathPrefix:/, answered by the whoami task; a browser keeps its task.
    let addr: SocketAddr = ([127, 0, 0, 1], proxy_port).into();
    let mut browser = Client::new(addr);
    let first = tether_testkit::wait_for_value(
        "the seed's route answered through Tether",
        Duration::from_secs(120),
        || {
            let mut c = Client::new(addr);
            async move {
                match c.get("/").await {
                    Ok(r) if r.status == 200 => Ok(r),
                    other => Err(format!("{:?}", other.map(|r| r.status))),
                }
            }
        },
    )
    .await;
    assert!(!first.server().is_empty());
    let r = browser.get("/").await.unwrap();
    assert_eq!(r.status, 200);
    let (cookie, value) = browser
        .jar
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("stickiness=true sets a cookie");
    assert!(
        !value.contains(":8000") && !value.contains("http"),
        "{cookie}={value}: names no backend address"
    );
    for _ in 0..5 {
        let again = browser.get("/").await.unwrap();
        assert_eq!(again.server(), r.server(), "the session stays on its task");
    }
}

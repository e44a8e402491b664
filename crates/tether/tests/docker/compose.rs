//! The Compose examples, run as a user would: Tether in a container with the socket mounted
//! read-only, in front of the seed's services.

use std::path::PathBuf;
use std::time::Duration;

use tether_testkit::docker::{repo_root, Engine};
use tether_testkit::Client;

use crate::support::{strs, wait_for_servers};

const FAST: Duration = Duration::from_secs(20);
/// The admin token the stacks are given (the Interlock seed's stats page password).
const STATS_TOKEN: &str = "compose-stats-token";

/// One example stack under a unique project name; `down` when dropped.
struct Stack {
    dir: PathBuf,
    project: String,
    port: u16,
}

impl Stack {
    async fn up(engine: &Engine, example: &str) -> Stack {
        let mut stack = Stack {
            dir: repo_root().join("examples/compose").join(example),
            project: format!("{}{}", example.replace('-', ""), engine.run),
            port: 0,
        };
        // A free port is found by binding to port 0 and letting it go, so another test (or
        // stack) running at the same time may be handed the same one before Docker binds it:
        // then the stack goes down and up again on another port.
        for attempt in 1..=3 {
            stack.port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            match stack.try_compose(&["up", "-d"]).await {
                Ok(_) => return stack,
                Err(e)
                    if attempt < 3 && (e.contains("already allocated") || e.contains("in use")) =>
                {
                    eprintln!("compose up: port {} was taken, trying another", stack.port);
                    let _ = stack.try_compose(&["down", "-v", "--remove-orphans"]).await;
                }
                Err(e) => panic!("compose up: {e}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn compose(&self, args: &[&str]) -> String {
        match self.try_compose(args).await {
            Ok(out) => out,
            Err(e) => panic!("compose {args:?}: {e}"),
        }
    }

    /// Run compose for this stack: its standard output, or its standard error if it failed.
    async fn try_compose(&self, args: &[&str]) -> Result<String, String> {
        let (program, mut all) = compose_command();
        all.extend(["-p".to_string(), self.project.clone()]);
        all.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::process::Command::new(program)
            .args(&all)
            .current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("TETHER_PORT", self.port.to_string())
            .env("TETHER_ADMIN_TOKEN", STATS_TOKEN)
            .output()
            .await
            .expect("compose");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Host names of a service's containers (whoami answers with its host name).
    async fn replicas(&self, service: &str) -> Vec<String> {
        self.compose(&["ps", "-q", service])
            .await
            .split_whitespace()
            .map(|id| id[..12].to_string())
            .collect()
    }

    /// Wait until every one of `names` has answered `path` on `host`.
    async fn serves(&self, host: &str, path: &str, names: &[String]) {
        wait_for_servers(&mut self.client(host, false), path, &strs(names), FAST).await
    }

    fn client(&self, host: &str, cookies: bool) -> Client {
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut c = if cookies {
            Client::new(addr)
        } else {
            Client::without_cookies(addr)
        };
        c.host = host.into();
        c
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let (program, mut all) = compose_command();
        all.extend(["-p", &self.project, "down", "-v", "-t", "1"].map(String::from));
        // The same variables as `up`: a file that requires one (`${TETHER_ADMIN_TOKEN:?…}`)
        // fails to interpolate without it, and its stack was left running.
        let _ = std::process::Command::new(program)
            .args(&all)
            .current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("TETHER_PORT", self.port.to_string())
            .env("TETHER_ADMIN_TOKEN", STATS_TOKEN)
            .output();
    }
}

/// `docker-compose` (v1, Debian's) or `docker compose` (v2).
fn compose_command() -> (&'static str, Vec<String>) {
    let v1 = std::process::Command::new("docker-compose")
        .arg("version")
        .output();
    if v1.is_ok_and(|o| o.status.success()) {
        ("docker-compose", Vec::new())
    } else {
        ("docker", vec!["compose".into()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_seed_compose_service1_sticks_service2_alternates_and_scales() {
    let Some(engine) = Engine::get("compose haproxy-seed").await else {
        return;
    };
    let stack = Stack::up(&engine, "haproxy-seed").await;
    let s1 = stack.replicas("service1").await;
    let s2 = stack.replicas("service2").await;
    assert_eq!((s1.len(), s2.len()), (2, 2));
    stack.serves("localhost", "/service1", &s1).await;
    stack.serves("localhost", "/service2", &s2).await;

    let mut browser = stack.client("localhost", true);
    let first = browser.get("/service1").await.unwrap();
    assert_eq!(first.visits(), 1);
    for n in 2..=5 {
        let r = browser.get("/service1").await.unwrap();
        assert_eq!(r.server(), first.server(), "service1 is sticky");
        assert_eq!(r.visits(), n, "its counter grows");
    }
    let mut anon = stack.client("localhost", false);
    let mut last = String::new();
    for _ in 0..6 {
        let r = anon.get("/service2").await.unwrap();
        assert_ne!(r.server(), last, "service2 alternates");
        last = r.server().to_string();
    }
    // FAILOVER: the spare is service2's backup, sent nothing while service2 has replicas...
    let spare = stack.replicas("service2-spare").await;
    assert!(s2.iter().all(|s| !spare.contains(s)));
    for _ in 0..10 {
        let r = anon.get("/service2").await.unwrap();
        assert!(s2.iter().any(|s| s == r.server()), "{}", r.server());
    }
    // ...and everything once it has none.
    stack.compose(&["up", "-d", "--scale", "service2=0"]).await;
    stack.serves("localhost", "/service2", &spare).await;

    stack.compose(&["up", "-d", "--scale", "service2=5"]).await;
    let s2 = stack.replicas("service2").await;
    assert_eq!(s2.len(), 5);
    stack.serves("localhost", "/service2", &s2).await;
    for _ in 0..10 {
        let r = anon.get("/service2").await.unwrap();
        assert!(s2.iter().any(|s| s == r.server()), "{}", r.server());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_seed_compose_is_sticky_without_addresses_in_the_cookie() {
    let Some(engine) = Engine::get("compose traefik-seed").await else {
        return;
    };
    let stack = Stack::up(&engine, "traefik-seed").await;
    let replicas = stack.replicas("whoami-service").await;
    stack.serves("localhost", "/", &replicas).await;
    let mut browser = stack.client("localhost", true);
    let first = browser.get("/").await.unwrap();
    let cookie = first
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("tether_whoami-service="))
        .expect("sticky cookie");
    assert!(
        !cookie.contains("http://") && !cookie.contains(":8000"),
        "{cookie}"
    );
    for _ in 0..5 {
        assert_eq!(browser.get("/").await.unwrap().server(), first.server());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interlock_seed_compose_routes_the_host_to_healthy_replicas() {
    let Some(engine) = Engine::get("compose interlock-seed").await else {
        return;
    };
    let stack = Stack::up(&engine, "interlock-seed").await;
    let web = stack.replicas("web").await;
    stack.serves("demo.interlock.com", "/", &web).await;
    assert_eq!(
        stack
            .client("other.com", false)
            .get("/")
            .await
            .unwrap()
            .status,
        404
    );
    stack.compose(&["up", "-d", "--scale", "web=3"]).await;
    let web = stack.replicas("web").await;
    assert_eq!(web.len(), 3);
    stack.serves("demo.interlock.com", "/", &web).await;
    // Interlock's stats page, where its users look: every scaled replica is listed.
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("stats:{STATS_TOKEN}"))
    );
    let mut c = stack.client("demo.interlock.com", false);
    assert_eq!(c.get("/haproxy?stats").await.unwrap().status, 401);
    let page = c
        .send(
            http::Request::get("/haproxy?stats")
                .header("host", "demo.interlock.com")
                .header("authorization", auth)
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let rows = page.body.matches("<tr class=\"srv\"").count();
    assert_eq!(rows, 3, "one row per replica:\n{}", page.body);
}

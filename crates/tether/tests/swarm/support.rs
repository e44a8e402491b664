//! Reading a Tether container's state through its admin API, and timing what it does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tether_testkit::swarm::{Swarm, TetherContainer};
use tether_testkit::{Client, TempDir};

pub const KEY: &str = "swarm-test-key-swarm-test-key-0123456789";

/// A key file for Tether's container (a stand-in for the Docker secret).
pub fn key_file() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("tether-swarm");
    let path = dir.path().join("key");
    std::fs::write(&path, KEY).unwrap();
    (dir, path)
}

/// A server as `/api/backends` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: String,
    pub state: String,
}

/// The servers of `service` (a `...@swarm` name), by name; none while Tether's container is not
/// listening yet (its port is published before the process inside binds it).
pub async fn servers(t: &TetherContainer, service: &str) -> BTreeMap<String, Server> {
    let req = http::Request::get("/api/backends")
        .header("authorization", "Bearer test-token")
        .body(http_body_util::Full::default())
        .expect("valid request");
    let mut client = Client::without_cookies(t.admin);
    let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_secs(2), client.send(req)).await else {
        return BTreeMap::new();
    };
    if reply.status != 200 {
        return BTreeMap::new();
    }
    let Ok(rows) = serde_json::from_str::<serde_json::Value>(&reply.body) else {
        return BTreeMap::new();
    };
    rows.as_array()
        .into_iter()
        .flatten()
        // A service with no server has a row with no server: it is not one.
        .filter(|r| r["service"] == service && r["server"].is_string())
        .map(|r| {
            let s = Server {
                name: r["server"].as_str().unwrap_or_default().to_string(),
                address: r["address"].as_str().unwrap_or_default().to_string(),
                state: r["state"].as_str().unwrap_or_default().to_string(),
            };
            (s.name.clone(), s)
        })
        .collect()
}

/// Wait until `cond` holds of the servers of `service`; the servers then.
pub async fn wait_servers(
    t: &TetherContainer,
    service: &str,
    deadline: Duration,
    what: &str,
    cond: impl Fn(&BTreeMap<String, Server>) -> bool,
) -> BTreeMap<String, Server> {
    let end = Instant::now() + deadline;
    loop {
        let s = servers(t, service).await;
        if cond(&s) {
            return s;
        }
        if Instant::now() >= end {
            panic!(
                "{what}: not within {deadline:?}; servers: {s:?}\n--- tether's log ---\n{}",
                Swarm::logs(&t.name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval; bounded by `deadline`
    }
}

/// Median and max of some durations, in milliseconds.
pub fn median_max(mut v: Vec<Duration>) -> (u128, u128) {
    v.sort();
    let ms = |d: &Duration| d.as_millis();
    (v.get(v.len() / 2).map_or(0, ms), v.last().map_or(0, ms))
}

/// A stack deployed from one of `examples/swarm/`, removed with its volumes when dropped.
pub struct Stack(pub String);

impl Stack {
    /// `docker stack deploy` of `example` as `name`, with `env` for the file's variables
    /// (image ids, so the engine tries no pull).
    pub async fn deploy(example: &str, name: &str, env: &[(&str, &std::ffi::OsStr)]) -> Stack {
        let mut cmd = tokio::process::Command::new("docker");
        cmd.args(["stack", "deploy", "--resolve-image", "never", "-c"])
            .arg(
                tether_testkit::docker::repo_root()
                    .join("examples/swarm")
                    .join(example),
            )
            .arg(name);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        let stack = Stack(name.to_string());
        assert!(
            out.status.success(),
            "stack deploy {example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stack
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["stack", "rm", &self.0])
            .output();
        // Its volumes go once its containers are gone.
        let filter = format!("label=com.docker.stack.namespace={}", self.0);
        for _ in 0..40 {
            let left = std::process::Command::new("docker")
                .args(["volume", "ls", "-q", "--filter", &filter])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let left: Vec<&str> = left.split_whitespace().collect();
            if left.is_empty() {
                break;
            }
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm"])
                .args(&left)
                .output();
            std::thread::sleep(Duration::from_millis(500)); // bounded retries
        }
    }
}

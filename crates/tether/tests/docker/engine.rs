//! What Tether asks of the engine, and what it does when the engine goes away.
//!
//! A recording relay sits between Tether and the engine's socket: it logs every request line and
//! can cut every connection and refuse new ones, as a restarting engine would.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_providers::docker::Endpoint;
use tether_testkit::docker::Engine;
use tether_testkit::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::support::{routed, strs, wait_for_servers, wait_state, Tether};

const FAST: Duration = Duration::from_secs(10);
const ENGINE: &str = "/var/run/docker.sock";

/// A relay in front of the engine's socket that records request lines.
struct Relay {
    path: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    tasks: Option<JoinSet<()>>,
}

impl Relay {
    fn start(dir: &Path) -> Relay {
        let mut r = Relay {
            path: dir.join("docker.sock"),
            requests: Arc::default(),
            tasks: None,
        };
        r.resume();
        r
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.path.clone())
    }

    /// Cut every connection and refuse new ones.
    fn cut(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    fn resume(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind relay");
        let requests = self.requests.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                conns.spawn(relay(client, requests.clone()));
            }
        });
        self.tasks = Some(tasks);
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Copy both ways; note each request line going to the engine.
async fn relay(client: UnixStream, requests: Arc<Mutex<Vec<String>>>) {
    let Ok(server) = UnixStream::connect(ENGINE).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16384];
        let mut pending = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            // Requests from Tether have no bodies: each head ends at a blank line.
            while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                requests
                    .lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                pending.drain(..end + 4);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    };
    tokio::join!(up, down);
}

/// Is this request line one of the reads Tether may make?
fn is_read(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("GET ") else {
        return false;
    };
    let path = rest.split(' ').next().unwrap_or_default();
    let path = match path.strip_prefix("/v1.") {
        Some(p) => p.split_once('/').map_or("", |(_, p)| p),
        None => path.trim_start_matches('/'),
    };
    path == "_ping"
        || path == "containers/json"
        || path == "networks"
        || path.starts_with("events?")
        || path
            .strip_prefix("containers/")
            .and_then(|p| p.strip_suffix("/json"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_only_reads_from_the_engine() {
    let Some(engine) = Engine::get("read-only").await else {
        return;
    };
    let dir = TempDir::new("relay");
    let relay = Relay::start(dir.path());
    let net = engine.network("net").await;
    let tether = Tether::start_at(&engine, relay.endpoint(), Duration::from_secs(1)).await;
    let host = format!("ro.{}", engine.run);
    let mut args = routed(&engine, &net, "ro", &host);
    let a = engine.whoami("a", &strs(&args)).await;
    args.extend(["--label".into(), "tether.http.services.ro.weight=2".into()]);
    let b = engine.whoami("b", &strs(&args)).await;
    let mut client = tether.anonymous(&host);
    wait_for_servers(&mut client, "/", &[&a.name, &b.name], FAST).await;
    // Every lifecycle event Tether acts on.
    for cmd in [
        vec!["pause", &a.id],
        vec!["unpause", &a.id],
        vec!["stop", &a.id],
        vec!["start", &a.id],
        vec!["kill", &b.id],
    ] {
        engine.docker(&cmd).await.unwrap();
    }
    wait_for_servers(&mut client, "/", &[&a.name], FAST).await;
    let requests = relay.requests();
    println!("docker API calls made by Tether: {requests:#?}");
    assert!(
        requests.iter().any(|r| r.contains("/events?")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/containers/json")),
        "{requests:?}"
    );
    let writes: Vec<&String> = requests.iter().filter(|r| !is_read(r)).collect();
    assert!(
        writes.is_empty(),
        "Tether made calls other than reads: {writes:?}"
    );
    assert!(is_read("GET /v1.41/containers/abc123/json HTTP/1.1"));
    assert!(!is_read("POST /v1.41/containers/abc123/stop HTTP/1.1"));
    assert!(!is_read("GET /v1.41/containers/abc123/logs HTTP/1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_engine_keeps_the_last_table_then_reconnects_and_resyncs() {
    let Some(engine) = Engine::get("reconnect").await else {
        return;
    };
    let dir = TempDir::new("relay");
    let mut relay = Relay::start(dir.path());
    let net = engine.network("net").await;
    let tether = Tether::start_at(&engine, relay.endpoint(), Duration::from_secs(1)).await;
    let host = format!("rc.{}", engine.run);
    let args = routed(&engine, &net, "rc", &host);
    let a = engine.whoami("a", &strs(&args)).await;
    let mut client = tether.anonymous(&host);
    wait_for_servers(&mut client, "/", &[&a.name], FAST).await;

    relay.cut();
    // The engine is gone: the last table keeps serving.
    for _ in 0..20 {
        let r = client.get("/").await.unwrap();
        assert_eq!((r.status.as_u16(), r.server()), (200, a.name.as_str()));
    }
    // A container that starts meanwhile is found by the full resync after reconnecting.
    let b = engine.whoami("b", &strs(&args)).await;
    assert!(
        !tether.servers("rc@docker").contains_key(&b.name),
        "no event can reach Tether while the engine is cut off"
    );
    relay.resume();
    wait_for_servers(&mut client, "/", &[&a.name, &b.name], FAST).await;
    // And events flow again.
    engine.docker(&["stop", &a.id]).await.unwrap();
    wait_state("stop seen after reconnecting", FAST, || {
        !tether.servers("rc@docker").contains_key(&a.name)
    })
    .await;
}

/// tether-whoami's HEALTHCHECK follows its `--listen` port (the second seed's app listens on
/// 8000): the container turns healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whoami_images_healthcheck_follows_its_listen_port() {
    let Some(engine) = Engine::get("whoami healthcheck").await else {
        return;
    };
    let c = engine
        .run_image(
            tether_testkit::docker::WHOAMI_IMAGE,
            "hc8000",
            &[],
            &["--listen", "0.0.0.0:8000"],
        )
        .await;
    tether_testkit::wait_for("the container healthy", Duration::from_secs(30), || async {
        engine
            .docker(&["inspect", "-f", "{{.State.Health.Status}}", &c.id])
            .await
            .is_ok_and(|s| s == "healthy")
    })
    .await;
}

//! Starting Tether on the Docker provider, and small helpers shared by the Docker tests.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tether::app::{self, DockerOptions, Instance};
use tether_providers::docker::Endpoint;
use tether_testkit::docker::Engine;
use tether_testkit::{Client, TempDir};

pub const KEY: &str = "test-key-test-key-test-key-test-key";

/// Tether from the configuration file `config` (its state in `dir`), following the engine and
/// seeing only this test's containers; Docker secrets read from `secrets_dir`.
pub fn from_file(
    engine: &Engine,
    config: std::path::PathBuf,
    dir: &TempDir,
    secrets_dir: Option<std::path::PathBuf>,
) -> app::Options {
    let (k, v) = engine
        .constraint()
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .unwrap();
    let mut opts = app::Options::file(config, dir.path().to_path_buf(), Duration::from_secs(1));
    opts.docker = Some(DockerOptions {
        self_spec: Default::default(),
        endpoint: Endpoint::from_env().expect("DOCKER_HOST"),
        network: None,
        constraint: Some((k, v)),
        secrets_dir,
        dockercloud: Default::default(),
        interlock_ext_name: None,
    });
    opts
}

pub struct Tether {
    pub instance: Instance,
    _dir: TempDir,
}

impl Tether {
    /// Tether on 127.0.0.1:0 following the engine, seeing only this test's containers.
    pub async fn start(engine: &Engine, drain: Duration) -> Tether {
        Tether::start_at(engine, Endpoint::from_env().expect("DOCKER_HOST"), drain).await
    }

    pub async fn start_at(engine: &Engine, endpoint: Endpoint, drain: Duration) -> Tether {
        Tether::start_with(engine, endpoint, drain, Vec::new()).await
    }

    /// As [`Tether::start_at`], with more entrypoints (`--entrypoint`).
    pub async fn start_with(
        engine: &Engine,
        endpoint: Endpoint,
        drain: Duration,
        entrypoints: Vec<tether_model::file_config::EntrypointFlag>,
    ) -> Tether {
        init_logs();
        let dir = TempDir::new("tether-docker");
        let key_file = dir.path().join("affinity.key");
        std::fs::write(&key_file, KEY).unwrap();
        let (k, v) = engine
            .constraint()
            .split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .unwrap();
        let opts = app::Options {
            config: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            key_file: Some(key_file),
            docker: Some(DockerOptions {
                self_spec: Default::default(),
                endpoint,
                network: None,
                constraint: Some((k, v)),
                secrets_dir: None,
                dockercloud: Default::default(),
                interlock_ext_name: None,
            }),
            swarm: None,
            state_dir: dir.path().to_path_buf(),
            drain,
            admin: Default::default(),
            store: None,
            access_log: None,
            default_certificate: None,
            connect_timeout: None,
            entrypoints,
            stats_path: None,
            workers: None,
            default_workers: 1,
        };
        let instance = app::start(opts).await.expect("tether starts");
        Tether {
            instance,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.instance.addr("web")
    }

    /// A keep-alive client sending `Host: host`, keeping cookies.
    pub fn client(&self, host: &str) -> Client {
        let mut c = Client::new(self.addr());
        c.host = host.to_string();
        c
    }

    /// A client that never keeps cookies.
    pub fn anonymous(&self, host: &str) -> Client {
        let mut c = Client::without_cookies(self.addr());
        c.host = host.to_string();
        c
    }

    /// Errors the Docker provider reports (containers left out).
    pub fn errors(&self) -> Vec<String> {
        self.instance
            .control
            .status()
            .errors
            .get("docker")
            .cloned()
            .unwrap_or_default()
    }

    pub fn swaps(&self) -> u64 {
        self.instance.control.status().swaps
    }

    /// Servers of a service as the data plane has them: name → address.
    pub fn servers(&self, service: &str) -> BTreeMap<String, String> {
        let table = self.instance.control.store().load_full();
        table
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(|b| (b.name.to_string(), b.addr.to_string()))
            })
            .collect()
    }
}

impl Tether {
    /// Does the data plane give this server new requests (present and not draining)?
    pub fn takes_new(&self, service: &str, server: &str) -> bool {
        let table = self.instance.control.store().load_full();
        table
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| s.backends.iter())
            .any(|b| b.name.as_ref() == server && b.state.takes_new(false))
    }
}

/// An engine, a network and a Tether following the engine; `None` without an engine (see
/// [`Engine::get`]).
pub async fn setup(test: &str, drain: Duration) -> Option<(Engine, String, Tether)> {
    let engine = Engine::get(test).await?;
    let net = engine.network("net").await;
    let tether = Tether::start(&engine, drain).await;
    Some((engine, net, tether))
}

/// Tether labels routing ``Host(`host`)`` to service `name` on the container's port 8080.
pub fn routed(engine: &Engine, network: &str, name: &str, host: &str) -> Vec<String> {
    labels(
        engine,
        network,
        &[
            format!("tether.http.routers.{name}.rule=Host(`{host}`)"),
            format!("tether.http.services.{name}.port=8080"),
        ],
    )
}

/// Wait, up to `deadline`, until `cond` holds of Tether's own state (its table, its status).
pub async fn wait_state(what: &str, deadline: Duration, cond: impl Fn() -> bool) {
    tether_testkit::wait_for(what, deadline, || std::future::ready(cond())).await
}

/// The `docker run` arguments that label a container for this test's Tether.
pub fn labels(engine: &Engine, network: &str, labels: &[String]) -> Vec<String> {
    let mut args = vec![
        "--network".to_string(),
        network.to_string(),
        "--label".into(),
        engine.constraint(),
    ];
    for l in labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Send requests until each of `names` has answered (or panic after `deadline`).
pub async fn wait_for_servers(client: &mut Client, path: &str, names: &[&str], deadline: Duration) {
    let client = tokio::sync::Mutex::new(client);
    let seen = std::sync::Mutex::new(HashSet::new());
    let what = format!("{names:?} answering {path}");
    tether_testkit::wait_for_value(&what, deadline, || async {
        if let Ok(r) = client.lock().await.get(path).await {
            if r.status == 200 {
                seen.lock().unwrap().insert(r.server().to_string());
            }
        }
        let seen = seen.lock().unwrap();
        if names.iter().all(|n| seen.contains(*n)) {
            Ok(())
        } else {
            Err(format!("only {seen:?} answered"))
        }
    })
    .await
}

/// Send requests until one answers `status` (returns when it did, panics after `deadline`).
pub async fn wait_status(client: &mut Client, path: &str, status: u16, deadline: Duration) {
    let client = tokio::sync::Mutex::new(client);
    let what = format!("{path} answering {status}");
    tether_testkit::wait_for_value(&what, deadline, || async {
        match client
            .lock()
            .await
            .get(path)
            .await
            .map(|r| r.status.as_u16())
        {
            Ok(s) if s == status => Ok(()),
            got => Err(format!("{got:?}")),
        }
    })
    .await
}

/// Tether's log in the test output, filtered by `TEST_LOG` (default `warn`).
fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let spec = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    let targets: tracing_subscriber::filter::Targets = spec.parse().expect("TEST_LOG filter");
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(targets)
        .try_init();
}

//! A running Tether: its sources (a configuration file, the Docker engine, or both) followed, the
//! control plane, the listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tether_control::Control;
use tether_model::file_config::{KeySource, Settings, Timeouts};
use tether_providers::{docker, file};
use tether_proxy::{Listener, ProxyConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file; without it, settings are defaults and `listen` is the entrypoint.
    pub config: Option<PathBuf>,
    /// The `web` entrypoint when there is no configuration file.
    pub listen: SocketAddr,
    /// The affinity key file when there is no configuration file (else one is generated).
    pub key_file: Option<PathBuf>,
    /// Follow this Docker engine.
    pub docker: Option<DockerOptions>,
    pub state_dir: PathBuf,
    /// How long requests in flight may finish after shutdown is asked for, and how long a stopping
    /// container keeps the sessions pinned to it.
    pub drain: Duration,
}

impl Options {
    /// Serve one configuration file.
    pub fn file(config: PathBuf, state_dir: PathBuf, drain: Duration) -> Options {
        Options {
            config: Some(config),
            listen: ([0, 0, 0, 0], 80).into(),
            key_file: None,
            docker: None,
            state_dir,
            drain,
        }
    }
}

/// The Docker source.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    pub endpoint: docker::Endpoint,
    /// Network to reach containers on when their labels name none.
    pub network: Option<String>,
    /// Only containers with this label and value are read.
    pub constraint: Option<(String, String)>,
}

impl DockerOptions {
    /// The provider's configuration, for Tether's entrypoints and drain period.
    pub fn config(&self, entrypoints: Vec<String>, drain: Duration) -> docker::DockerConfig {
        docker::DockerConfig {
            endpoint: self.endpoint.clone(),
            settings: docker::Settings {
                entrypoints,
                own_networks: Vec::new(),
                default_network: self.network.clone(),
                drain,
                constraint: self.constraint.clone(),
            },
        }
    }
}

/// How long start-up waits for the first full read of the Docker engine before serving anyway.
const FIRST_SYNC: Duration = Duration::from_secs(5);

/// A started instance. Dropping it does not stop it; call [`Instance::shutdown`].
#[derive(Debug)]
pub struct Instance {
    /// Entrypoint names and the addresses actually bound (port 0 resolved).
    pub entrypoints: Vec<(String, SocketAddr)>,
    pub control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    serving: JoinHandle<()>,
    /// Source followers, stopped with the instance.
    following: Vec<JoinHandle<()>>,
}

impl Instance {
    /// The bound address of an entrypoint.
    pub fn addr(&self, entrypoint: &str) -> SocketAddr {
        self.entrypoints
            .iter()
            .find(|(n, _)| n == entrypoint)
            .map(|e| e.1)
            .expect("no such entrypoint")
    }

    /// Stop accepting, let requests in flight finish (up to the drain period), then return.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for f in &self.following {
            f.abort();
        }
        let _ = self.serving.await;
    }

    /// Wait until the instance stops by itself (it does not, unless its listeners fail).
    pub async fn wait(&mut self) {
        let _ = (&mut self.serving).await;
    }
}

/// Load the configuration, bind every entrypoint, start serving and following the sources.
pub async fn start(opts: Options) -> anyhow::Result<Instance> {
    if opts.config.is_none() && opts.docker.is_none() {
        bail!("nothing to serve: give --config FILE, --docker, or both");
    }
    let (watch, cfg) = match &opts.config {
        Some(path) => {
            let (watch, loaded) = file::FileWatch::start(path);
            let cfg = loaded?;
            if cfg.settings.entrypoints.is_empty() {
                bail!(
                    "{}: no entrypoints: add e.g. [entrypoints] web = \"0.0.0.0:80\"",
                    path.display()
                );
            }
            (Some(watch), Some(cfg))
        }
        None => (None, None),
    };
    let settings = match &cfg {
        Some(cfg) => cfg.settings.clone(),
        None => Settings {
            entrypoints: vec![("web".into(), opts.listen)],
            timeouts: Timeouts::default(),
            affinity_key: opts
                .key_file
                .clone()
                .map_or(KeySource::Generated, KeySource::File),
            trusted_proxies: Vec::new(),
        },
    };
    let key_source = match (&settings.affinity_key, &opts.config) {
        // A relative key file is found beside the configuration file, wherever Tether runs from.
        (KeySource::File(p), Some(config)) if p.is_relative() => {
            KeySource::File(config.parent().unwrap_or(Path::new(".")).join(p))
        }
        (other, _) => other.clone(),
    };
    let key = tether_control::key::load(&key_source, &opts.state_dir)?;
    let mut listeners = Vec::new();
    let mut entrypoints = Vec::new();
    for (name, addr) in &settings.entrypoints {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("entrypoint {name}: cannot listen on {addr}"))?;
        let bound = l.local_addr()?;
        tracing::info!(entrypoint = %name, addr = %bound, "listening");
        entrypoints.push((name.clone(), bound));
        listeners.push(Listener {
            name: name.clone(),
            listener: l,
        });
    }
    let names: Vec<String> = entrypoints.iter().map(|e| e.0.clone()).collect();
    let control = Control::new(names.clone(), key);
    let mut following = Vec::new();
    if let (Some(watch), Some(cfg), Some(path)) = (watch, cfg, &opts.config) {
        let initial = cfg.settings.clone();
        control
            .apply(file::update(cfg))
            .map_err(|r| anyhow::anyhow!("{}: {}", path.display(), r.errors.join("; ")))?;
        following.push(tokio::spawn(follow(
            watch,
            path.clone(),
            initial,
            control.clone(),
        )));
    }
    if let Some(d) = &opts.docker {
        following.push(follow_docker(d.config(names, opts.drain), control.clone()).await);
    }
    let proxy_cfg = ProxyConfig {
        timeouts: settings.timeouts,
        trusted_proxies: settings.trusted_proxies.clone(),
    };
    let (shutdown, rx) = watch::channel(false);
    let serving = tokio::spawn(tether_proxy::serve(
        listeners,
        control.store(),
        proxy_cfg,
        rx,
        opts.drain,
    ));
    Ok(Instance {
        entrypoints,
        control,
        shutdown,
        serving,
        following,
    })
}

/// Start following the engine; returns once its first full read is applied (or after
/// [`FIRST_SYNC`], serving what the other sources give while it keeps trying).
async fn follow_docker(cfg: docker::DockerConfig, control: Arc<Control>) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel(8);
    let endpoint = cfg.endpoint.clone();
    let provider = tokio::spawn(docker::run(cfg, tx));
    match tokio::time::timeout(FIRST_SYNC, rx.recv()).await {
        Ok(Some(update)) => apply_off_the_hot_path(&control, update).await,
        _ => {
            tracing::warn!(%endpoint, "docker: no answer from the engine yet; serving without its containers until it answers")
        }
    }
    tokio::spawn(async move {
        let _stop_with_us = AbortOnDrop(provider);
        while let Some(update) = rx.recv().await {
            // Errors are logged and recorded by the control plane; the last good table stays.
            apply_off_the_hot_path(&control, update).await;
        }
    })
}

/// Apply each change of the file; refuse invalid ones and keep serving the last good table.
///
/// Runs on the serving runtime: a loaded file is only moved from here to the control plane's
/// blocking thread: its routes and services are never copied or freed here.
async fn follow(watch: file::FileWatch, path: PathBuf, initial: Settings, control: Arc<Control>) {
    let (tx, mut rx) = mpsc::channel(4);
    let watching = tokio::spawn(watch.run(tx));
    let _stop_with_us = AbortOnDrop(watching);
    while let Some(loaded) = rx.recv().await {
        match loaded {
            Ok(cfg) => {
                if cfg.settings != initial {
                    tracing::warn!(path = %path.display(), "entrypoints, timeouts, affinity key and trusted proxies are read at start: restart Tether to apply their changes");
                }
                // Errors are logged and recorded by the control plane.
                apply_off_the_hot_path(&control, file::update(cfg)).await;
            }
            Err(e) => {
                control.reject(file::PROVIDER, e.messages());
            }
        }
    }
}

/// Compile and swap on a blocking thread: a table of 10,000 routes takes milliseconds to build,
/// and with `--workers 1` the serving thread must not wait for it. Errors are logged and
/// recorded by the control plane; the last good table keeps serving.
async fn apply_off_the_hot_path(control: &Arc<Control>, update: tether_model::ProviderUpdate) {
    let control = control.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || control.apply(update)).await {
        tracing::error!(error = %e, "applying a configuration change failed");
    }
}

/// Aborts a task when dropped (the watcher stops with the instance).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

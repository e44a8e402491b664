//! A running Tether: the configuration file loaded and watched, the control plane, the listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tether_control::Control;
use tether_model::file_config::{FileConfig, KeySource};
use tether_providers::file;
use tether_proxy::{Listener, ProxyConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// How long requests in flight may finish after shutdown is asked for.
    pub drain: Duration,
}

/// A started instance. Dropping it does not stop it; call [`Instance::shutdown`].
#[derive(Debug)]
pub struct Instance {
    /// Entrypoint names and the addresses actually bound (port 0 resolved).
    pub entrypoints: Vec<(String, SocketAddr)>,
    pub control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    serving: JoinHandle<()>,
    watching: JoinHandle<()>,
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
        self.watching.abort();
        let _ = self.serving.await;
    }

    /// Wait until the instance stops by itself (it does not, unless its listeners fail).
    pub async fn wait(&mut self) {
        let _ = (&mut self.serving).await;
    }
}

/// Load the configuration, bind every entrypoint, start serving and watching the file.
pub async fn start(opts: Options) -> anyhow::Result<Instance> {
    let (watch, loaded) = file::FileWatch::start(&opts.config);
    let cfg = loaded?;
    if cfg.settings.entrypoints.is_empty() {
        bail!(
            "{}: no entrypoints: add e.g. [entrypoints] web = \"0.0.0.0:80\"",
            opts.config.display()
        );
    }
    let key_source = match &cfg.settings.affinity_key {
        // A relative key file is found beside the configuration file, wherever Tether runs from.
        KeySource::File(p) if p.is_relative() => {
            KeySource::File(opts.config.parent().unwrap_or(Path::new(".")).join(p))
        }
        other => other.clone(),
    };
    let key = tether_control::key::load(&key_source, &opts.state_dir)?;
    let mut listeners = Vec::new();
    let mut entrypoints = Vec::new();
    for (name, addr) in &cfg.settings.entrypoints {
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
    let control = Control::new(entrypoints.iter().map(|e| e.0.clone()).collect(), key);
    control
        .apply(file::update(&cfg))
        .map_err(|r| anyhow::anyhow!("{}: {}", opts.config.display(), r.errors.join("; ")))?;
    let proxy_cfg = ProxyConfig {
        timeouts: cfg.settings.timeouts,
        trusted_proxies: cfg.settings.trusted_proxies.clone(),
    };
    let (shutdown, rx) = watch::channel(false);
    let serving = tokio::spawn(tether_proxy::serve(
        listeners,
        control.store(),
        proxy_cfg,
        rx,
        opts.drain,
    ));
    let watching = tokio::spawn(follow(watch, opts.config.clone(), cfg, control.clone()));
    Ok(Instance {
        entrypoints,
        control,
        shutdown,
        serving,
        watching,
    })
}

/// Apply each change of the file; refuse invalid ones and keep serving the last good table.
async fn follow(watch: file::FileWatch, path: PathBuf, initial: FileConfig, control: Arc<Control>) {
    let (tx, mut rx) = mpsc::channel(4);
    let watching = tokio::spawn(watch.run(tx));
    let _stop_with_us = AbortOnDrop(watching);
    while let Some(loaded) = rx.recv().await {
        match loaded {
            Ok(cfg) => {
                if cfg.settings != initial.settings {
                    tracing::warn!(path = %path.display(), "entrypoints, timeouts, affinity key and trusted proxies are read at start: restart Tether to apply their changes");
                }
                // Errors are logged and recorded by the control plane.
                let _ = control.apply(file::update(&cfg));
            }
            Err(e) => {
                control.reject(file::PROVIDER, e.messages());
            }
        }
    }
}

/// Aborts a task when dropped (the watcher stops with the instance).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

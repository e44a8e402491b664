//! The configuration file provider: loads `tether.toml`, then watches it and reports each change.
//!
//! The file's directory is watched (not the file), so editors that save by writing a new file and
//! renaming it over the old one are followed. Bursts of events are coalesced, and a save that
//! leaves the content unchanged is ignored. If the platform's watcher cannot start, the file is
//! polled once a second instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tether_model::file_config::{self, ConfigErrors, FileConfig};
use tether_model::ProviderUpdate;
use tokio::sync::mpsc;

/// Provider name used in updates and error reports.
pub const PROVIDER: &str = "file";
/// Quiet time after the last file event before reloading (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_secs(1);

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .errors.render(.path))]
    Invalid { path: String, errors: ConfigErrors },
}

impl FileError {
    /// One message per problem, each naming the file and line.
    pub fn messages(&self) -> Vec<String> {
        match self {
            FileError::Read { .. } => vec![self.to_string()],
            FileError::Invalid { path, errors } => {
                errors.render(path).lines().map(str::to_string).collect()
            }
        }
    }
}

/// Read and validate the file.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    let display = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| FileError::Read {
        path: display.clone(),
        source: e,
    })?;
    file_config::parse(&src).map_err(|errors| FileError::Invalid {
        path: display,
        errors,
    })
}

/// The dynamic part of a loaded file as a provider update.
pub fn update(cfg: &FileConfig) -> ProviderUpdate {
    ProviderUpdate {
        provider: PROVIDER.into(),
        services: cfg.services.clone(),
        routes: cfg.routes.clone(),
    }
}

/// Watch `path`; every change that produces different content is loaded and sent.
/// Runs until the receiver is dropped.
pub async fn watch(path: PathBuf, tx: mpsc::Sender<Result<FileConfig, FileError>>) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = ev_tx.send(());
            }
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|_| w));
    let mut last = std::fs::read(&path).ok();
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch the configuration file; polling it every second");
            None
        }
    };
    loop {
        if _watcher.is_some() {
            if ev_rx.recv().await.is_none() {
                return;
            }
            // Let the burst settle, then drain it.
            tokio::time::sleep(SETTLE).await;
            while ev_rx.try_recv().is_ok() {}
        } else {
            tokio::time::sleep(POLL).await;
        }
        let now = std::fs::read(&path).ok();
        if now.is_none() || now == last {
            continue; // removed mid-save, or unchanged
        }
        last = now;
        if tx.send(load(&path)).await.is_err() {
            return;
        }
    }
}

//! The configuration file provider: loads `tether.toml`, then watches it and reports each change.
//!
//! The file's directory is watched (not the file), so editors that save by writing a new file and
//! renaming it over the old one are followed. Bursts of events are coalesced, and a save that
//! leaves the content unchanged is ignored. If the platform's watcher cannot start, the file is
//! polled once a second instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tether_model::file_config::{self, ConfigErrors, FileConfig, Settings};
use tether_model::ProviderUpdate;
use tokio::sync::mpsc;

use crate::source::{self, Event, FirstSync, Run, Source};

/// Provider name used in updates and error reports.
pub const PROVIDER: &str = "file";
/// Quiet time after the last file event before reloading (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_secs(1);
/// A file still changing after this many settle periods is read as it is then.
const MAX_REREADS: usize = 20;

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
    /// Empty or blank: most likely truncated mid-save (the write that follows brings another
    /// change). An empty table would drop every route, so it is refused like an invalid file.
    #[error("{path}: the file is empty (truncated while being saved?); keeping the last good configuration")]
    Empty { path: String },
}

impl FileError {
    /// One message per problem, each naming the file and line.
    pub fn messages(&self) -> Vec<String> {
        match self {
            FileError::Read { .. } | FileError::Empty { .. } => vec![self.to_string()],
            FileError::Invalid { path, errors } => {
                errors.render(path).lines().map(str::to_string).collect()
            }
        }
    }
}

/// Read and validate the file.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    read(path).and_then(|src| parse(path, &src))
}

fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError::Read {
        path: path.display().to_string(),
        source: e,
    })
}

fn parse(path: &Path, src: &[u8]) -> Result<FileConfig, FileError> {
    let display = path.display().to_string();
    let text = std::str::from_utf8(src).map_err(|e| FileError::Read {
        path: display.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let mut cfg = file_config::parse(text).map_err(|errors| FileError::Invalid {
        path: display,
        errors,
    })?;
    // Certificate paths written relative are relative to the file's directory.
    if let Some(dir) = path.parent() {
        cfg.settings.tls.resolve_relative(dir);
        for s in &mut cfg.services {
            for srv in &mut s.servers {
                if let Some(ca) = srv.tls.as_mut().and_then(|t| t.ca_file.as_mut()) {
                    if ca.is_relative() {
                        *ca = dir.join(&*ca);
                    }
                }
            }
        }
    }
    Ok(cfg)
}

/// The dynamic part of a loaded file as a provider update. Takes the file by value: a table of
/// 10,000 routes is moved, not copied, and is freed later by the control plane off the serving
/// thread.
pub fn update(cfg: FileConfig, digest: String) -> ProviderUpdate {
    ProviderUpdate {
        provider: PROVIDER.into(),
        services: cfg.services,
        routes: cfg.routes,
        errors: Vec::new(),
        version: digest,
        observed: None,
        certificates: Vec::new(),
        middlewares: cfg.middlewares,
        tcp_routes: cfg.tcp_routes,
    }
}

/// A short digest of the file's bytes: the file source's version.
pub fn digest(bytes: &[u8]) -> String {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    format!("{:016x}", h.finish())
}

/// The configuration file as a [`Source`]: its first update is the file loaded at start, then
/// every change of content.
pub struct FileSource {
    watch: FileWatch,
    initial: FileConfig,
}

impl FileSource {
    /// `initial` is the file as [`FileWatch::start`] loaded it (start-up reads its settings).
    pub fn new(watch: FileWatch, initial: FileConfig) -> FileSource {
        FileSource { watch, initial }
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn first_sync(&self) -> FirstSync {
        FirstSync::Required
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<Event>) -> Run {
        Box::pin(async move {
            let FileSource { watch, initial } = *self;
            let settings = initial.settings.clone();
            let version = digest(watch.last.as_deref().unwrap_or_default());
            if source::send(&tx, update(initial, version)).await {
                watch.run(settings, tx).await;
            }
        })
    }
}

/// A watched configuration file.
pub struct FileWatch {
    path: PathBuf,
    events: mpsc::UnboundedReceiver<()>,
    /// Keeps the platform watcher alive; `None` when polling.
    watcher: Option<notify::RecommendedWatcher>,
    last: Option<Vec<u8>>,
}

impl FileWatch {
    /// Start watching, then load the file. Watching first means no change made after this call
    /// returns can be missed.
    pub fn start(path: &Path) -> (FileWatch, Result<FileConfig, FileError>) {
        let (ev_tx, events) = mpsc::unbounded_channel::<()>();
        let name = path.file_name().map(|n| n.to_os_string());
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                // Our own reads of the file report accesses: only changes count.
                if matches!(ev.kind, notify::EventKind::Access(_)) {
                    return;
                }
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
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch the configuration file; polling it every second");
                None
            }
        };
        let src = read(path);
        let last = src.as_ref().ok().cloned();
        let loaded = src.and_then(|s| parse(path, &s));
        (
            FileWatch {
                path: path.to_path_buf(),
                events,
                watcher,
                last,
            },
            loaded,
        )
    }

    /// Report every change that produces different content. Runs until the receiver is dropped.
    /// `settings` are those read at start: a change to them is logged as needing a restart.
    pub async fn run(mut self, settings: Settings, tx: mpsc::Sender<Event>) {
        loop {
            if self.watcher.is_some() {
                if self.events.recv().await.is_none() {
                    return;
                }
                // Let the burst settle, then drain it.
                tokio::time::sleep(SETTLE).await;
                while self.events.try_recv().is_ok() {}
            } else {
                tokio::time::sleep(POLL).await;
            }
            let mut now = std::fs::read(&self.path).ok();
            // A large file written in place (truncate, then write) can still be changing: read
            // again until no event came in while reading (for at most MAX_REREADS settles).
            let mut rereads = 0;
            while self.events.try_recv().is_ok() && rereads < MAX_REREADS {
                rereads += 1;
                while self.events.try_recv().is_ok() {}
                tokio::time::sleep(SETTLE).await;
                now = std::fs::read(&self.path).ok();
            }
            if now.is_none() || now == self.last {
                continue; // removed mid-save, or unchanged
            }
            if now
                .as_ref()
                .is_some_and(|b| b.iter().all(u8::is_ascii_whitespace))
            {
                // Reported like an invalid file (logged, shown in the status), never applied.
                // Remembered as read, so that the write that follows is applied even when it
                // brings back the same content.
                self.last = now;
                let empty = FileError::Empty {
                    path: self.path.display().to_string(),
                };
                if tx.send(Event::Invalid(empty.messages())).await.is_err() {
                    return;
                }
                continue;
            }
            // Parsing a large file takes milliseconds: not on a serving thread.
            let (path, bytes) = (self.path.clone(), now.clone().unwrap_or_default());
            let started = std::time::Instant::now();
            let Ok(loaded) = tokio::task::spawn_blocking(move || parse(&path, &bytes)).await else {
                return; // the runtime is shutting down
            };
            tracing::debug!(path = %self.path.display(), rereads, took_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3), "configuration file parsed");
            let version = digest(now.as_deref().unwrap_or_default());
            self.last = now;
            let event = match loaded {
                Ok(cfg) => {
                    if cfg.settings != settings {
                        tracing::warn!(path = %self.path.display(), "entrypoints, timeouts, affinity key, trusted proxies and workers are read at start: restart Tether (tether upgrade) to apply their changes");
                    }
                    Event::Update {
                        update: update(cfg, version),
                        applied: None,
                    }
                }
                Err(e) => Event::Invalid(e.messages()),
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

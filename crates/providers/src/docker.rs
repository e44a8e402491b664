//! The Docker provider: containers become servers, their labels become routes and services.
//!
//! At start it subscribes to the engine's events, then lists and inspects every running container
//! (subscribing first means nothing that happens in between is missed). Each event is applied as
//! it comes: a start or a health change is inspected, a `kill`/`stop` drains the container, a `die`
//! removes it. Changes that arrive together are coalesced: an update goes out [`QUIET`] after the
//! last event, and never later than [`MAX_HOLD`] after the first. If the engine goes away, the last
//! update stays in force; the provider reconnects with backoff and resynchronises in full.
//!
//! Tether only reads from the engine (see [`api`]).

pub mod api;
pub mod events;
pub mod inspect;
pub mod tracker;
pub mod whereabouts;

use std::time::{Duration, Instant, SystemTime};

use tether_model::ProviderUpdate;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::source::{self, FirstSync, Run, Source};

pub use api::{ApiError, Client, Endpoint};
use events::{Change, Event};
use inspect::{Inspection, Listed};
pub use tracker::{Settings, Tracker, PROVIDER};

/// An update goes out this long after the last event of a burst...
pub const QUIET: Duration = Duration::from_millis(20);
/// ...and never later than this after the first, so every change applies within 100 ms.
pub const MAX_HOLD: Duration = Duration::from_millis(90);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How to reach the engine and how to read containers.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub endpoint: Endpoint,
    pub settings: Settings,
}

/// How long start-up waits for the first full read of the engine before serving anyway.
pub const FIRST_SYNC: Duration = Duration::from_secs(5);

/// The Docker engine as a [`Source`].
pub struct DockerSource(pub DockerConfig);

impl Source for DockerSource {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn first_sync(&self) -> FirstSync {
        FirstSync::Wait(FIRST_SYNC)
    }

    fn run(self: Box<Self>, tx: mpsc::Sender<source::Event>) -> Run {
        Box::pin(run(self.0, tx))
    }
}

/// The tracker's state, its version the time of the last change read from the engine;
/// `observed`: the engine's time of the first event it carries.
fn update(tracker: &Tracker, at: SystemTime, observed: Option<SystemTime>) -> ProviderUpdate {
    let mut u = tracker.update();
    u.version = humantime::format_rfc3339_millis(at).to_string();
    u.observed = observed;
    u
}

/// An event's time by the engine's clock.
fn event_time(ev: &Event) -> Option<SystemTime> {
    let nanos = u64::try_from(ev.time_nano).ok().filter(|n| *n > 0)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Follow the engine until `tx` is closed, sending the provider's whole state on every change.
pub async fn run(cfg: DockerConfig, tx: mpsc::Sender<source::Event>) {
    let mut tracker = Tracker::new(cfg.settings.clone());
    let mut backoff = MIN_BACKOFF;
    loop {
        let err = match session(&cfg, &mut tracker, &tx, &mut backoff).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if tx.is_closed() {
            return;
        }
        let problem = format!("lost the engine at {}: {err}", cfg.endpoint);
        if tx.send(source::Event::Health(Some(problem))).await.is_err() {
            return;
        }
        // The first failure after a good connection is an error; the retries that follow are not.
        if backoff == MIN_BACKOFF {
            tracing::error!(error = %err, "docker: lost the engine; serving the last configuration and reconnecting");
        } else {
            tracing::warn!(error = %err, retry_in = ?backoff, "docker: engine still unreachable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe, resync, then apply events until the stream breaks.
/// `Ok(())` means the receiver is gone.
async fn session(
    cfg: &DockerConfig,
    tracker: &mut Tracker,
    tx: &mpsc::Sender<source::Event>,
    backoff: &mut Duration,
) -> Result<(), ApiError> {
    let client = Client::connect(cfg.endpoint.clone()).await?;
    let mut events = client.events().await?;
    read_all(&client, cfg, tracker).await?;
    tracing::info!(endpoint = %cfg.endpoint, api = client.api_version(), containers = tracker.len(), "docker: connected, following events");
    let mut last_read = SystemTime::now();
    if tx.send(source::Event::Health(None)).await.is_err()
        || !source::send(tx, update(tracker, last_read, None)).await
    {
        return Ok(());
    }
    *backoff = MIN_BACKOFF;
    // Each inspection carries the time of the event that asked for it.
    type Inspected = (
        String,
        u64,
        Option<SystemTime>,
        Result<Inspection, ApiError>,
    );
    let mut inspecting: JoinSet<Inspected> = JoinSet::new();
    let mut first_change: Option<Instant> = None;
    let mut last_input = Instant::now();
    let mut coalesced = 0u32;
    // The engine's time of the earliest event whose change reached the tracker since the last
    // publish: a change still being inspected is not in a publish, so neither is its event.
    let mut first_event: Option<SystemTime> = None;
    let earliest = |a: Option<SystemTime>, b: Option<SystemTime>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let publish_at = first_change.map(|first| {
            if inspecting.is_empty() {
                (last_input + QUIET).min(first + MAX_HOLD)
            } else {
                first + MAX_HOLD
            }
        });
        let drain_at = tracker.next_deadline();
        let mut changed = false;
        tokio::select! {
            ev = events.next::<Event>() => {
                let Some(ev) = ev? else {
                    return Err(ApiError::Decode { path: "/events".into(), message: "the engine closed the event stream".into() });
                };
                let now = Instant::now();
                let at = event_time(&ev);
                let mut inspect = |id: String, tracker: &mut Tracker| {
                    let ticket = tracker.ticket(&id);
                    let client = client.clone();
                    inspecting.spawn(async move {
                        let r = client.get::<Inspection>(&format!("/containers/{id}/json")).await;
                        (id, ticket, at, r)
                    });
                };
                match ev.change() {
                    Change::Ignore => continue,
                    Change::Started(id) => {
                        tracker.started(&id);
                        inspect(id, tracker);
                    }
                    Change::Inspect(id) => inspect(id, tracker),
                    Change::Stopping(id) => changed = tracker.stopping(&id, now),
                    Change::Paused(id) => changed = tracker.paused(&id),
                    Change::Stopped(id) => changed = tracker.stopped(&id),
                    Change::Networks if tracker.on_host() => {
                        // Read here, before the `connect` that follows a `create` is inspected.
                        let bridges = whereabouts::local_bridges(&client).await?;
                        changed = tracker.set_host_networks(bridges);
                    }
                    Change::Networks => {}
                    Change::Gone(id) => changed = tracker.gone(&id),
                }
                tracing::debug!(kind = %ev.kind, action = %ev.action, id = %ev.actor.id, "docker: event");
                last_input = now;
                last_read = SystemTime::now();
                if changed {
                    first_event = earliest(first_event, at);
                }
                coalesced += 1;
                first_change.get_or_insert(now);
            }
            Some(done) = inspecting.join_next(), if !inspecting.is_empty() => {
                let Ok((id, ticket, at, result)) = done else { continue };
                if !tracker.is_current(&id, ticket) {
                    continue;
                }
                match result {
                    Ok(i) => tracker.upsert(&i, Instant::now()),
                    Err(e) if e.is_not_found() => {
                        tracker.gone(&id);
                    }
                    Err(e) => tracing::warn!(error = %e, container = %id, "docker: cannot inspect container"),
                }
                changed = true;
                first_event = earliest(first_event, at);
            }
            _ = tokio::time::sleep_until(publish_at.map_or_else(far, Into::into)), if publish_at.is_some() => {
                tracing::debug!(events = coalesced, "docker: publishing");
                if !source::send(tx, update(tracker, last_read, first_event.take())).await {
                    return Ok(());
                }
                first_change = None;
                coalesced = 0;
            }
            _ = tokio::time::sleep_until(drain_at.map_or_else(far, Into::into)), if drain_at.is_some() => {
                changed = tracker.expire(Instant::now());
            }
        }
        if changed {
            first_change.get_or_insert_with(Instant::now);
        }
    }
}

/// Find Tether's own networks (unless given), then read every running container afresh.
async fn read_all(
    client: &Client,
    cfg: &DockerConfig,
    tracker: &mut Tracker,
) -> Result<(), ApiError> {
    if cfg.settings.own_networks.is_empty() {
        let w = whereabouts::find(client, &cfg.settings.self_spec).await?;
        match &w.container {
            Some(c) => {
                tracing::info!(container = %c.name.trim_start_matches('/'), networks = %w.networks.join(","), "docker: Tether runs in a container; routing over its networks")
            }
            None => {
                tracing::info!(bridges = %w.host_networks.as_deref().unwrap_or_default().join(","), "docker: Tether runs on the host; routing over this engine's local bridge networks")
            }
        }
        tracker.set_whereabouts(w.networks, w.host_networks);
    }
    tracker.resync(inspect_all(client).await?, Instant::now());
    Ok(())
}

/// Inspect every running container.
async fn inspect_all(client: &Client) -> Result<Vec<Inspection>, ApiError> {
    let listed: Vec<Listed> = client.get("/containers/json").await?;
    let mut set = JoinSet::new();
    for l in listed {
        let client = client.clone();
        set.spawn(async move {
            client
                .get::<Inspection>(&format!("/containers/{}/json", l.id))
                .await
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(i)) => all.push(i),
            // Gone between the list and the inspection.
            Ok(Err(e)) if e.is_not_found() => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
    }
    Ok(all)
}

/// One full read of the engine, for `tether check`: the update it gives and how many containers
/// run.
pub async fn snapshot(cfg: &DockerConfig) -> Result<(ProviderUpdate, usize), ApiError> {
    let client = Client::connect(cfg.endpoint.clone()).await?;
    let mut tracker = Tracker::new(cfg.settings.clone());
    read_all(&client, cfg, &mut tracker).await?;
    Ok((tracker.update(), tracker.len()))
}

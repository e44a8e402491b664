//! The Swarm provider: a manager's services and tasks become routes, services and servers.
//!
//! It reads the manager's API through the Docker provider's GET-only client, by list calls only:
//! a full refresh is `GET /services`, `/tasks`, `/nodes` and `/networks` (plus one `GET
//! /images/{image}/json` the first time an image is seen, for its exposed ports); a task refresh
//! is `/tasks` and `/nodes`. Never one call per service or per task.
//!
//! Swarm has events for services and nodes but not for tasks. So:
//! - a service or node event starts a full refresh at once, and fast polling ([`FAST_POLL`]) for
//!   a while after it ([`FAST_FOR`]) and for as long as a service is updating or a task is on its
//!   way in or out;
//! - a steady task refresh ([`SwarmConfig::poll`], 500 ms by default) catches crashes,
//!   reschedules and node drains; services are read again every [`FULL_EVERY`] regardless;
//! - a server that stops answering between two polls is ejected by the passive health check.
//!
//! An update goes out only when what it declares changed. Its version is the manager's store
//! index, the same on every manager, so replicas of Tether agree on it. If the manager goes
//! away, the last update stays in force and the provider reconnects with backoff.

pub mod objects;
pub mod state;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::docker::{self, ApiError, Client, Endpoint};
use crate::source::{self, FirstSync, Run, Source};
use objects::{Image, Info, Network, Node, Service, Task};
pub use state::{Outcome, Settings, Tracker, View, PROVIDER};

/// Polling while something converges (after a service event, during an update).
pub const FAST_POLL: Duration = Duration::from_millis(250);
/// How long fast polling lasts after a service or node event.
pub const FAST_FOR: Duration = Duration::from_secs(10);
/// The services are read afresh at least this often, events or not.
pub const FULL_EVERY: Duration = Duration::from_secs(10);
/// The steady task poll's default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// How long start-up waits for the first full read before serving anyway.
pub const FIRST_SYNC: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How to reach the manager and how to read services.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    pub endpoint: Endpoint,
    pub settings: Settings,
    /// The steady task poll.
    pub poll: Duration,
    /// An affinity key is configured (not generated per replica).
    pub key_configured: bool,
}

/// The Swarm manager as a [`Source`].
pub struct SwarmSource(pub SwarmConfig);

impl Source for SwarmSource {
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

/// Why the Swarm cannot be read here.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the engine at {endpoint} is not in a Swarm (its state: {state}): run Tether with --docker, or on a manager of the swarm")]
    NoSwarm { endpoint: String, state: String },
    #[error("the engine at {endpoint} is a Swarm worker, not a manager: only managers can list services and tasks. Run Tether on a manager (a placement constraint node.role == manager), with that manager's socket")]
    Worker { endpoint: String },
}

/// Follow the manager until `tx` is closed.
pub async fn run(cfg: SwarmConfig, tx: mpsc::Sender<source::Event>) {
    let mut reader = Reader::new(&cfg);
    let mut backoff = MIN_BACKOFF;
    loop {
        let err = match session(&cfg, &mut reader, &tx, &mut backoff).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if tx.is_closed() {
            return;
        }
        let problem = format!("swarm: {err}");
        if tx.send(source::Event::Health(Some(problem))).await.is_err() {
            return;
        }
        if backoff == MIN_BACKOFF {
            tracing::error!(error = %err, "swarm: cannot read the manager; serving the last configuration and retrying");
        } else {
            tracing::warn!(error = %err, retry_in = ?backoff, "swarm: manager still unreadable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Refreshes and what they gave last.
struct Reader {
    tracker: Tracker,
    view: View,
    key_configured: bool,
    /// Tether's own service, when it runs as a task.
    own_service: Option<String>,
    sent: Option<u64>,
    said: Vec<String>,
    full_at: Instant,
    /// The newest task status time in what was sent.
    newest_task: Option<SystemTime>,
}

impl Reader {
    fn new(cfg: &SwarmConfig) -> Reader {
        Reader {
            tracker: Tracker::new(cfg.settings.clone()),
            view: View::default(),
            key_configured: cfg.key_configured,
            own_service: None,
            sent: None,
            said: Vec::new(),
            newest_task: None,
            full_at: Instant::now(),
        }
    }

    /// Read services, tasks, nodes and networks.
    async fn full(&mut self, client: &Client) -> Result<(), ApiError> {
        let (services, tasks, nodes, networks) = tokio::try_join!(
            client.get::<Vec<Service>>("/services"),
            client.get::<Vec<Task>>("/tasks"),
            client.get::<Vec<Node>>("/nodes"),
            client.get::<Vec<Network>>("/networks"),
        )?;
        for s in &services {
            let image = &s.spec.task_template.container_spec.image;
            if image.is_empty() || self.tracker.image_ports.contains_key(image) {
                continue;
            }
            // Once per image: an image reference with a digest never changes. A manager that
            // does not hold the image knows only the ports the service publishes.
            let ports = match client.get::<Image>(&format!("/images/{image}/json")).await {
                Ok(i) => i.tcp_ports(),
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e),
            };
            self.tracker.image_ports.insert(image.clone(), ports);
        }
        self.view = View {
            services,
            tasks,
            nodes,
            networks,
        };
        self.full_at = Instant::now();
        Ok(())
    }

    /// Read tasks and nodes.
    async fn tasks(&mut self, client: &Client) -> Result<(), ApiError> {
        let (tasks, nodes) = tokio::try_join!(
            client.get::<Vec<Task>>("/tasks"),
            client.get::<Vec<Node>>("/nodes"),
        )?;
        self.view.tasks = tasks;
        self.view.nodes = nodes;
        Ok(())
    }

    /// Is a service updating, or a task on its way in or out?
    fn converging(&self) -> bool {
        self.view.services.iter().any(Service::is_updating)
            || self.view.tasks.iter().any(|t| {
                let s = t.status.state.as_str();
                let coming = t.desired_state == "running"
                    && matches!(
                        s,
                        "new"
                            | "pending"
                            | "assigned"
                            | "accepted"
                            | "preparing"
                            | "ready"
                            | "starting"
                    );
                let going = t.desired_state != "running" && s == "running";
                coming || going
            })
    }

    /// The update of the current view, with the problems only the provider sees.
    fn outcome(&mut self) -> Outcome {
        let mut o = self.tracker.translate(&self.view, Instant::now());
        if let Some(p) = self.key_problem() {
            o.update.errors.insert(0, p);
        }
        o.update.version = self
            .view
            .services
            .iter()
            .map(|s| s.version.index)
            .chain(self.view.tasks.iter().map(|t| t.version.index))
            .max()
            .map_or_else(String::new, |i| format!("index {i}"));
        o
    }

    /// Several replicas of Tether, each with a key of its own, do not recognise one another's
    /// cookies.
    fn key_problem(&self) -> Option<String> {
        if self.key_configured {
            return None;
        }
        let own = self.own_service.as_ref()?;
        let svc = self.view.services.iter().find(|s| &s.id == own)?;
        let many = svc.is_global() || svc.replicas().is_some_and(|r| r > 1);
        many.then(|| {
            format!(
                "Tether runs as Swarm service {} with {} and no affinity key configured: each replica generated its own, so sessions pinned by one are not recognised by the others. Give every replica the same key: a Docker secret and --key-file /run/secrets/<name> (or [affinity] key_file in tether.toml)",
                svc.spec.name,
                svc.replicas()
                    .map_or_else(|| "a task on every node".to_string(), |r| format!("{r} replicas"))
            )
        })
    }

    /// Send the outcome if it changed; log what it says when that changed. `false`: the
    /// receiver is gone.
    async fn publish(&mut self, tx: &mpsc::Sender<source::Event>) -> bool {
        let o = self.outcome();
        let mut said: Vec<String> = o.update.errors.clone();
        said.extend(o.notes.iter().cloned());
        if said != self.said {
            // Each error or note is logged when it appears, not again on every refresh that
            // changes another one (Tether's own service, with no routing labels, among them).
            for e in &o.update.errors {
                if self.said.contains(e) {
                    tracing::debug!("swarm: {e}");
                } else {
                    tracing::error!("swarm: {e}");
                }
            }
            for n in &o.notes {
                if self.said.contains(n) {
                    tracing::debug!("swarm: {n}");
                } else {
                    tracing::info!("swarm: {n}");
                }
            }
            self.said = said;
        }
        let digest = fingerprint(&o);
        if self.sent == Some(digest) {
            return true;
        }
        self.sent = Some(digest);
        let mut update = o.update;
        // The discovery lag is counted from the newest task change this update is the first to
        // carry (a node's change, or a service's, has no task time: none is counted).
        let newest = self.view.tasks.iter().filter_map(|t| t.status.at()).max();
        if newest > self.newest_task {
            update.observed = newest.filter(|_| self.newest_task.is_some());
            self.newest_task = newest;
        }
        tracing::debug!(
            services = update.services.len(),
            tasks = o.tasks,
            "swarm: publishing"
        );
        source::send(tx, update).await
    }
}

/// What an update declares, hashed (its version left out: it moves with every task's heartbeat).
fn fingerprint(o: &Outcome) -> u64 {
    let mut h = DefaultHasher::new();
    format!(
        "{:?}{:?}{:?}",
        o.update.services, o.update.routes, o.update.errors
    )
    .hash(&mut h);
    h.finish()
}

/// One connection's life. `Ok(())` means the receiver is gone.
async fn session(
    cfg: &SwarmConfig,
    reader: &mut Reader,
    tx: &mpsc::Sender<source::Event>,
    backoff: &mut Duration,
) -> Result<(), SwarmError> {
    let client = manager(&cfg.endpoint).await?;
    let mut events = client.events_of(&["service", "node"]).await?;
    if reader.tracker.settings.own_networks.is_empty() {
        reader.own_service = own(&client, &mut reader.tracker).await?;
    }
    reader.full(&client).await?;
    tracing::info!(endpoint = %cfg.endpoint, services = reader.view.services.len(), tasks = reader.view.tasks.len(), "swarm: connected to the manager, following services and tasks");
    reader.sent = None;
    if tx.send(source::Event::Health(None)).await.is_err() || !reader.publish(tx).await {
        return Ok(());
    }
    *backoff = MIN_BACKOFF;
    let mut fast_until = Instant::now() + FAST_FOR;
    loop {
        let now = Instant::now();
        let fast = now < fast_until || reader.converging();
        let wait = if fast {
            FAST_POLL.min(cfg.poll)
        } else {
            cfg.poll
        };
        tokio::select! {
            ev = events.next::<docker::events::Event>() => {
                let Some(ev) = ev? else {
                    return Err(ApiError::Decode { path: "/events".into(), message: "the engine closed the event stream".into() }.into());
                };
                tracing::debug!(kind = %ev.kind, action = %ev.action, id = %ev.actor.id, "swarm: event");
                // Several events come together (an update touches the service many times):
                // whatever arrives within a few milliseconds is read in one refresh.
                let settle = tokio::time::sleep(Duration::from_millis(5));
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        more = events.next::<docker::events::Event>() => { more?; }
                        _ = &mut settle => break,
                    }
                }
                reader.full(&client).await?;
                fast_until = Instant::now() + FAST_FOR;
            }
            _ = tokio::time::sleep(wait) => {
                if reader.full_at.elapsed() >= FULL_EVERY {
                    reader.full(&client).await?;
                } else {
                    reader.tasks(&client).await?;
                }
            }
        }
        if !reader.publish(tx).await {
            return Ok(());
        }
    }
}

/// Connect and make sure the engine is a Swarm manager.
async fn manager(endpoint: &Endpoint) -> Result<Client, SwarmError> {
    let client = Client::connect(endpoint.clone()).await?;
    let info: Info = client.get("/info").await?;
    match (
        info.swarm.local_node_state.as_str(),
        info.swarm.control_available,
    ) {
        ("active", true) => Ok(client),
        ("active", false) => Err(SwarmError::Worker {
            endpoint: endpoint.to_string(),
        }),
        (state, _) => Err(SwarmError::NoSwarm {
            endpoint: endpoint.to_string(),
            state: if state.is_empty() {
                "unknown".into()
            } else {
                state.into()
            },
        }),
    }
}

/// Where Tether runs: its own networks and Swarm service when in a container (a task, or a
/// plain container attached to an overlay), the host's local bridges otherwise.
async fn own(client: &Client, tracker: &mut state::Tracker) -> Result<Option<String>, ApiError> {
    let w = docker::whereabouts::find(client, &tracker.settings.self_spec).await?;
    let service = w
        .container
        .as_ref()
        .and_then(|me| me.config.labels.as_ref())
        .and_then(|l| l.get("com.docker.swarm.service.id"))
        .cloned();
    let networks: Vec<String> = w.networks.into_iter().filter(|n| n != "ingress").collect();
    match &w.container {
        Some(_) => {
            tracing::info!(networks = %networks.join(","), service = service.as_deref().unwrap_or("none"), "swarm: Tether runs in a container; routing over its networks")
        }
        None => {
            tracing::info!(bridges = %w.host_networks.as_deref().unwrap_or_default().join(","), "swarm: Tether runs on the host: only this engine's local bridge networks are reachable, no overlay")
        }
    }
    tracker.settings.own_networks = networks;
    tracker.settings.host_networks = w.host_networks;
    Ok(service)
}

/// One full read, for `tether check --swarm`.
pub async fn snapshot(cfg: &SwarmConfig) -> Result<(Outcome, usize), SwarmError> {
    let client = manager(&cfg.endpoint).await?;
    let mut reader = Reader::new(cfg);
    if reader.tracker.settings.own_networks.is_empty() {
        reader.own_service = own(&client, &mut reader.tracker).await?;
    }
    reader.full(&client).await?;
    let services = reader.view.services.len();
    Ok((reader.outcome(), services))
}

/// For `tether check --docker` on a manager: the services whose own labels (`deploy.labels`)
/// would declare routes, which only `--swarm` reads. Empty when the engine is no manager.
pub async fn labelled_services(
    endpoint: &Endpoint,
    constraint: Option<&(String, String)>,
) -> Vec<String> {
    let Ok(client) = manager(endpoint).await else {
        return Vec::new();
    };
    let Ok(services) = client.get::<Vec<Service>>("/services").await else {
        return Vec::new();
    };
    services
        .iter()
        .filter(|s| constraint.is_none_or(|(k, v)| s.spec.labels.get(k) == Some(v)))
        .filter(|s| {
            s.spec.labels.keys().any(|k| {
                k.starts_with("tether.") || k.starts_with("traefik.") || k.starts_with("com.df.")
            })
        })
        .map(|s| s.spec.name.clone())
        .collect()
}

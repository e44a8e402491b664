//! The Swarm's services and tasks turned into declarations: pure state, fed by the run loop with
//! each refresh's lists and asked for the update they add up to.
//!
//! - A service's labels are its own (`Spec.Labels`: `deploy.labels`, `--label-add`) over its
//!   containers' (`Spec.TaskTemplate.ContainerSpec.Labels`); the template's environment is read as
//!   a container's (`SERVICE_PORTS`, `VIRTUAL_HOST`, `COOKIE`, `INTERLOCK_DATA`). Every dialect
//!   of the Docker provider applies, with its errors; every task of a service reads the service's
//!   current labels, so replicas never disagree halfway through an update.
//! - A server is a task: in rotation when its state and desired state are both `running`;
//!   draining (no new sessions, pinned ones kept) from the moment its desired state is no longer
//!   `running` until its container stops or the drain period ends; out on a node that is not
//!   `ready`.
//! - A server's name is its service and slot (`web.2`), or its service and node for a global
//!   service: the task that replaces slot 2 inherits the sessions pinned to slot 2. While an old
//!   and a new task share a slot, the new one has the name and the old one drains under its own.
//! - With `tether.swarm.endpoint=vip` the service's virtual IP is its one server (stickiness then
//!   only reaches the VIP, which Swarm balances itself; a warning says so).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tether_model::labels::{self, Container, Context, Kind};
use tether_model::{
    CertificateDecl, MiddlewareDecl, ProviderUpdate, RouteDecl, ServiceDecl, TcpRouteDecl,
};

use super::objects::{ip_of, Network, Node, Service, Task};

/// Provider name in status and logs, and the suffix of the names it declares.
pub const PROVIDER: &str = "swarm";

/// Label choosing a service's endpoint (`tasks`, the default, or `vip`).
pub const ENDPOINT: &str = "tether.swarm.endpoint";
/// Label naming the network to reach a service's tasks on.
pub const NETWORK: &str = "tether.swarm.network";

/// What the translation needs to know.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub entrypoints: Vec<String>,
    /// Those of `entrypoints` that terminate TLS.
    pub tls_entrypoints: Vec<String>,
    /// Those of `entrypoints` that take TCP routers only.
    pub tcp_entrypoints: Vec<String>,
    /// The port of each entrypoint.
    pub entrypoint_ports: Vec<(String, u16)>,
    /// The networks of Tether's own container (empty when it runs on a host).
    pub own_networks: Vec<String>,
    /// On the host: the networks it reaches (this engine's local bridges; no overlay).
    pub host_networks: Option<Vec<String>>,
    /// `--docker-self`: how Tether's own container is found.
    pub self_spec: crate::docker::whereabouts::SelfSpec,
    /// Network to use when a service names none and Tether shares none (`--docker-network`).
    pub default_network: Option<String>,
    /// How long a task on its way out keeps the sessions pinned to it.
    pub drain: Duration,
    /// Only services carrying this label with this value are read.
    pub constraint: Option<(String, String)>,
    /// Where Tether's Docker secrets are (default `/run/secrets`).
    pub secrets_dir: Option<std::path::PathBuf>,
    /// dockercloud/haproxy's `HTTP_BASIC_AUTH` on Tether's own environment.
    /// dockercloud/haproxy's proxy-wide middlewares (`HTTP_BASIC_AUTH`, `GZIP_COMPRESSION_TYPE`).
    pub dockercloud: tether_model::labels::dockercloud::ProxyWide,
    /// `--interlock-ext-name`: the Interlock extension name whose containers are Tether's.
    pub interlock_ext_name: Option<String>,
    /// The ACME resolvers (`[acme.NAME]`) a label may name; `None`: not checked here.
    pub acme_resolvers: Option<Vec<String>>,
}

impl Settings {
    /// What the label dialects need to know of Tether.
    pub fn context(&self) -> Context<'_> {
        Context {
            entrypoints: &self.entrypoints,
            tls_entrypoints: &self.tls_entrypoints,
            tcp_entrypoints: &self.tcp_entrypoints,
            entrypoint_ports: &self.entrypoint_ports,
            own_networks: &self.own_networks,
            host_networks: self.host_networks.as_deref(),
            default_network: self.default_network.as_deref(),
            secrets_dir: self.secrets_dir.as_deref(),
            dockercloud: Some(&self.dockercloud),
            interlock_ext_name: self.interlock_ext_name.as_deref(),
            acme_resolvers: self.acme_resolvers.as_deref(),
        }
    }
}

/// One refresh's lists.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
    pub nodes: Vec<Node>,
    pub networks: Vec<Network>,
}

/// What a refresh adds up to.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub update: ProviderUpdate,
    /// Why something declares nothing: shown by `tether check` and logged when they change.
    pub notes: Vec<String>,
    /// Tasks in rotation or draining.
    pub tasks: usize,
}

/// The state kept from one refresh to the next.
#[derive(Debug, Default)]
pub struct Tracker {
    pub settings: Settings,
    /// When each task was first seen on its way out (its drain started then).
    leaving: HashMap<String, Instant>,
    /// TCP ports each image exposes (an image id or digest never changes).
    pub image_ports: HashMap<String, Vec<u16>>,
}

/// Where a task stands for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
}

impl Tracker {
    pub fn new(settings: Settings) -> Tracker {
        Tracker {
            settings,
            ..Default::default()
        }
    }

    /// The update `view` adds up to at `now`.
    pub fn translate(&mut self, view: &View, now: Instant) -> Outcome {
        let down: BTreeSet<&str> = view
            .nodes
            .iter()
            .filter(|n| !n.status.state.is_empty() && n.status.state != "ready")
            .map(|n| n.id.as_str())
            .collect();
        let mut by_service: HashMap<&str, Vec<(&Task, Phase)>> = HashMap::new();
        let mut leaving = HashMap::new();
        for t in &view.tasks {
            if t.status.state != "running" || down.contains(t.node_id.as_str()) {
                continue;
            }
            let phase = if t.desired_state == "running" {
                Phase::Serving
            } else {
                let since = *self.leaving.get(&t.id).unwrap_or(&now);
                leaving.insert(t.id.clone(), since);
                if now.duration_since(since) >= self.settings.drain {
                    continue;
                }
                Phase::Draining
            };
            by_service
                .entry(t.service_id.as_str())
                .or_default()
                .push((t, phase));
        }
        self.leaving = leaving;
        let networks: HashMap<&str, &str> = view
            .networks
            .iter()
            .map(|n| (n.id.as_str(), n.name.as_str()))
            .collect();
        let mut out = Merged::default();
        let mut services: Vec<&Service> = view.services.iter().collect();
        services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for svc in services {
            let tasks = by_service.remove(svc.id.as_str()).unwrap_or_default();
            self.service(svc, tasks, &networks, &mut out);
        }
        out.finish()
    }

    /// Declare one service from its running tasks.
    fn service(
        &self,
        svc: &Service,
        mut tasks: Vec<(&Task, Phase)>,
        networks: &HashMap<&str, &str>,
        out: &mut Merged,
    ) {
        let name = svc.spec.name.as_str();
        let (labels, overridden) = merged_labels(svc);
        if let Some((k, v)) = &self.settings.constraint {
            if labels.get(k) != Some(v) {
                return;
            }
        }
        if !overridden.is_empty() {
            tracing::debug!(service = %name, labels = %overridden.join(","), "swarm: service labels win over the containers' labels");
        }
        let mut base = Container {
            name: name.to_string(),
            group: name.to_string(),
            labels,
            env: svc
                .spec
                .task_template
                .container_spec
                .env
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            networks: BTreeMap::new(),
            exposed_ports: self.exposed_ports(svc),
            host_network: false,
            hostname: svc.spec.task_template.container_spec.hostname.clone(),
            domainname: String::new(),
            kind: Kind::Service,
        };
        let (endpoint, network) = match swarm_labels(&mut base) {
            Ok(s) => s,
            Err(e) => {
                out.errors.push(e);
                return;
            }
        };
        let cx = self.settings.context();
        // Does it declare anything at all? Asked of the service alone, so that a service with
        // no task running still explains itself.
        if labels::declare(&base, &cx).is_none() {
            out.notes.push(format!(
                "service {name}: no routing labels (tether.*, traefik.*, com.df.*) on the service or its containers, nor SERVICE_PORTS / VIRTUAL_HOST / INTERLOCK_DATA in its environment"
            ));
            return;
        };
        if tasks.is_empty() {
            let why = match svc.replicas() {
                Some(0) => " (scaled to 0)".to_string(),
                Some(r) => format!(" (0 of {r} replicas)"),
                None => String::new(),
            };
            out.notes.push(format!(
                "service {name}: has routing labels but no task running{why}: its routes stay, and requests wait for a task (wait_for_server), then get 503"
            ));
            // Stopped in a rolling update, or scaled to 0: the routes stay, with no server.
            out.add(self.declare_empty(&base, &cx, name), name);
            return;
        }
        if endpoint == Endpoint::Vip {
            tracing::warn!(service = %name, "swarm: the service is reached on its virtual IP: Swarm balances behind it, so stickiness and draining stop at the VIP");
            base.networks = vip_addresses(svc, networks);
            if let Some(net) = &network {
                base.networks.retain(|n, _| n == net);
            }
            out.add(self.declare(&base, &cx, &[], name), name);
            return;
        }
        tasks.sort_by_key(|(t, p)| (t.slot, t.node_id.clone(), *p != Phase::Serving));
        let mut named: Vec<(String, &Task, Phase)> = Vec::new();
        for (t, phase) in tasks {
            let identity = if svc.is_global() {
                format!("{name}.{}", t.node_id)
            } else {
                format!("{name}.{}", t.slot)
            };
            // The serving task of a slot (sorted first) has its name; an old one drains under
            // its own.
            let taken = named.iter().any(|(n, _, _)| *n == identity);
            let server = if taken {
                format!("{identity}~{}", short(&t.id))
            } else {
                identity
            };
            named.push((server, t, phase));
        }
        let mut shared_logged = false;
        let mut servers = Vec::new();
        for (server, t, phase) in named {
            let mut c = base.clone();
            c.networks = t.addresses();
            if let Some(net) = &network {
                c.networks.retain(|n, _| n == net);
            }
            if !shared_logged && network.is_none() {
                shared_logged = true;
                let shared: Vec<&String> = self
                    .settings
                    .own_networks
                    .iter()
                    .filter(|n| c.networks.contains_key(*n))
                    .collect();
                if shared.len() > 1 {
                    tracing::info!(service = %name, networks = ?shared, chosen = %shared[0], "swarm: the service shares several networks with Tether; the first by name is used (name one with tether.swarm.network or traefik.swarm.network)");
                }
            }
            servers.push((c, server, phase == Phase::Draining));
        }
        let first = servers.first().map(|(c, _, _)| c.clone());
        if let Some(first) = first {
            out.add(self.declare(&first, &cx, &servers, name), name);
        }
    }

    /// Translate `c` (the service with one task's addresses) and put `servers` in its services;
    /// without `servers`, `c` itself is the one server.
    fn declare(
        &self,
        c: &Container,
        cx: &Context<'_>,
        servers: &[(Container, String, bool)],
        service: &str,
    ) -> Declared {
        let first = match labels::declare(c, cx) {
            None => return Declared::default(),
            Some(Err(es)) => {
                return Declared {
                    errors: es.iter().map(ToString::to_string).collect(),
                    ..Default::default()
                }
            }
            Some(Ok(d)) => d,
        };
        let mut decls: Vec<ServiceDecl> = first.services.clone();
        for s in &mut decls {
            s.servers.clear();
        }
        let lists: Vec<(Container, String, bool)> = if servers.is_empty() {
            vec![(c.clone(), service.to_string(), false)]
        } else {
            servers.to_vec()
        };
        // One task's problem (its network, say) is every task's: said once.
        let mut errors = BTreeSet::new();
        for (task, server, draining) in &lists {
            let d = match labels::declare(task, cx) {
                Some(Ok(d)) => d,
                Some(Err(es)) => {
                    errors.extend(es.iter().map(ToString::to_string));
                    continue;
                }
                None => continue,
            };
            for (into, from) in decls.iter_mut().zip(&d.services) {
                for srv in &from.servers {
                    let mut srv = srv.clone();
                    srv.name.clone_from(server);
                    srv.draining = *draining;
                    into.servers.push(srv);
                }
            }
        }
        let errors = errors.into_iter().collect();
        if decls.iter().all(|s| s.servers.is_empty()) {
            return Declared {
                errors,
                ..Default::default()
            };
        }
        Declared {
            services: decls.into_iter().map(rescope_service).collect(),
            routes: first.routes.into_iter().map(rescope_route).collect(),
            tcp_routes: first
                .tcp_routes
                .into_iter()
                .map(|mut r| {
                    r.name = rescope(&r.name);
                    r.service = rescope(&r.service);
                    r
                })
                .collect(),
            middlewares: first
                .middlewares
                .into_iter()
                .map(rescope_middleware)
                .collect(),
            certificates: first
                .certificates
                .into_iter()
                .map(|mut c| {
                    c.name = rescope(&c.name);
                    c
                })
                .collect(),
            errors,
            failover: first.failover,
        }
    }

    /// The service's declarations with no server: what it declares does not depend on where its
    /// tasks are, so it is read as if reachable anywhere, and the server taken out.
    fn declare_empty(&self, c: &Container, cx: &Context<'_>, service: &str) -> Declared {
        let mut shape = c.clone();
        shape.host_network = true;
        let anywhere = Context {
            own_networks: &[],
            host_networks: None,
            ..*cx
        };
        let mut d = self.declare(&shape, &anywhere, &[], service);
        for s in &mut d.services {
            s.servers.clear();
        }
        d
    }

    /// TCP ports the service's image exposes or the service publishes.
    fn exposed_ports(&self, svc: &Service) -> Vec<u16> {
        let mut ports = svc.target_ports();
        if let Some(p) = self
            .image_ports
            .get(&svc.spec.task_template.container_spec.image)
        {
            ports.extend(p);
        }
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// The first 12 characters of a task id.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// How a service is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Tasks,
    Vip,
}

/// Take the Swarm's own labels (`tether.swarm.*`) out of `c`'s labels: they say how to reach the
/// service, not what it declares, and leave the dialect to the others.
fn swarm_labels(c: &mut Container) -> Result<(Endpoint, Option<String>), String> {
    let mut endpoint = Endpoint::Tasks;
    let mut network = None;
    let keys: Vec<String> = c
        .labels
        .keys()
        .filter(|k| k.starts_with("tether.swarm."))
        .cloned()
        .collect();
    for k in keys {
        let v = c.labels.remove(&k).unwrap_or_default();
        match k.as_str() {
            ENDPOINT => {
                endpoint = match v.trim() {
                    "tasks" => Endpoint::Tasks,
                    "vip" => Endpoint::Vip,
                    _ => {
                        return Err(format!(
                            "label {ENDPOINT}={v:?}: expected tasks or vip (service {})",
                            c.name
                        ))
                    }
                }
            }
            NETWORK => network = Some(v.trim().to_string()),
            _ => {
                return Err(format!(
                    "label {k}={v:?}: unknown label: expected {ENDPOINT} or {NETWORK} (service {})",
                    c.name
                ))
            }
        }
    }
    Ok((endpoint, network))
}

/// The service's labels over its containers'; and the keys where both were set, differently.
fn merged_labels(svc: &Service) -> (BTreeMap<String, String>, Vec<String>) {
    let mut labels = svc.spec.task_template.container_spec.labels.clone();
    let mut overridden = Vec::new();
    for (k, v) in &svc.spec.labels {
        if let Some(old) = labels.insert(k.clone(), v.clone()) {
            if old != *v {
                overridden.push(k.clone());
            }
        }
    }
    // Swarm's own bookkeeping (`com.docker.stack.namespace`, ...) stays; nothing reads it.
    (labels, overridden)
}

/// The service's virtual IP on each network, by network name.
fn vip_addresses(svc: &Service, networks: &HashMap<&str, &str>) -> BTreeMap<String, IpAddr> {
    svc.endpoint
        .virtual_ips
        .iter()
        .filter_map(|v| {
            let name = networks.get(v.network_id.as_str())?;
            if *name == "ingress" {
                return None;
            }
            Some((name.to_string(), ip_of(&v.addr)?))
        })
        .collect()
}

/// `name@docker` as the labels module names it, renamed `name@swarm`.
fn rescope(name: &str) -> String {
    match name.strip_suffix(labels::SUFFIX) {
        Some(base) => format!("{base}@{PROVIDER}"),
        None => name.to_string(),
    }
}

fn rescope_service(mut s: ServiceDecl) -> ServiceDecl {
    s.name = rescope(&s.name);
    s
}

fn rescope_route(mut r: RouteDecl) -> RouteDecl {
    r.name = rescope(&r.name);
    r.service = rescope(&r.service);
    for m in &mut r.middlewares {
        *m = rescope(m);
    }
    r
}

fn rescope_middleware(mut m: MiddlewareDecl) -> MiddlewareDecl {
    m.name = rescope(&m.name);
    if let tether_model::Middleware::Chain(c) = &mut m.kind {
        for n in &mut c.middlewares {
            *n = rescope(n);
        }
    }
    m
}

/// One service's declarations, and the problems of the tasks left out of them.
#[derive(Debug, Default)]
struct Declared {
    services: Vec<ServiceDecl>,
    routes: Vec<RouteDecl>,
    tcp_routes: Vec<TcpRouteDecl>,
    middlewares: Vec<MiddlewareDecl>,
    certificates: Vec<CertificateDecl>,
    errors: Vec<String>,
    /// dockercloud's `FAILOVER`: its HTTP services back up those sharing their routes.
    failover: bool,
}

/// Declarations gathered over the services, each name owned by the first service declaring it.
#[derive(Default)]
struct Merged {
    services: BTreeMap<String, (ServiceDecl, String)>,
    routes: BTreeMap<String, (RouteDecl, String)>,
    tcp_routes: BTreeMap<String, (TcpRouteDecl, String)>,
    middlewares: BTreeMap<String, (MiddlewareDecl, String)>,
    certificates: Vec<CertificateDecl>,
    errors: Vec<String>,
    notes: Vec<String>,
    tasks: usize,
    /// The services of dockercloud `FAILOVER` services, folded in by [`Merged::finish`].
    failover: BTreeSet<String>,
}

impl Merged {
    fn add(&mut self, declared: Declared, by: &str) {
        let Declared {
            services,
            routes,
            tcp_routes,
            middlewares,
            certificates,
            errors,
            failover,
        } = declared;
        self.errors.extend(errors);
        // A middleware several services declare alike is one; declared otherwise, refused.
        if let Some((m, owner)) = middlewares.iter().find_map(|m| {
            self.middlewares
                .get(&m.name)
                .filter(|(have, _)| have != m)
                .map(|(_, owner)| (m.name.clone(), owner.clone()))
        }) {
            self.errors.push(format!(
                "service {by}: middleware {m} is declared otherwise by service {owner}; this service is left out"
            ));
            return;
        }
        let clash = tcp_routes.iter().find_map(|r| {
            self.tcp_routes.values().find_map(|(have, owner)| {
                tether_model::validate::tcp::catch_all_clash(r, have).map(|at| {
                    format!(
                        "TCP router {} takes every connection of {at}, as TCP router {} of service {owner} does already",
                        r.name, have.name
                    )
                })
            })
        });
        if let Some(m) = clash {
            self.errors
                .push(format!("service {by}: {m}; this service is left out"));
            return;
        }
        let taken = services
            .iter()
            .map(|s| (&s.name, self.services.get(&s.name).map(|o| &o.1)))
            .chain(
                routes
                    .iter()
                    .map(|r| (&r.name, self.routes.get(&r.name).map(|o| &o.1))),
            )
            .chain(
                tcp_routes
                    .iter()
                    .map(|r| (&r.name, self.tcp_routes.get(&r.name).map(|o| &o.1))),
            )
            .find_map(|(n, owner)| owner.map(|o| (n.clone(), o.clone())));
        if let Some((n, owner)) = taken {
            self.errors.push(format!(
                "service {by}: {n} is declared by service {owner} already; this service is left out"
            ));
            return;
        }
        if failover {
            self.failover
                .extend(services.iter().map(|s| s.name.clone()));
        }
        for s in services {
            self.tasks += s.servers.len();
            self.services.insert(s.name.clone(), (s, by.to_string()));
        }
        for r in routes {
            self.routes.insert(r.name.clone(), (r, by.to_string()));
        }
        for r in tcp_routes {
            self.tcp_routes.insert(r.name.clone(), (r, by.to_string()));
        }
        for m in middlewares {
            self.middlewares
                .entry(m.name.clone())
                .or_insert((m, by.to_string()));
        }
        // Named after the service: no two services share one.
        self.certificates.extend(certificates);
    }

    fn finish(self) -> Outcome {
        let mut services: Vec<ServiceDecl> = self.services.into_values().map(|(s, _)| s).collect();
        let mut routes: Vec<RouteDecl> = self.routes.into_values().map(|(r, _)| r).collect();
        let tcp_routes: Vec<TcpRouteDecl> = self.tcp_routes.into_values().map(|(r, _)| r).collect();
        for (backup, of) in
            labels::failover::fold(&mut services, &mut routes, &tcp_routes, &self.failover)
        {
            tracing::debug!(route = %backup, backs_up = ?of, "swarm: FAILOVER servers are backups");
        }
        Outcome {
            update: ProviderUpdate {
                provider: PROVIDER.into(),
                services,
                routes,
                errors: self.errors,
                version: String::new(),
                observed: None,
                certificates: self.certificates,
                middlewares: self.middlewares.into_values().map(|(m, _)| m).collect(),
                tcp_routes,
            },
            notes: self.notes,
            tasks: self.tasks,
        }
    }
}

#[cfg(test)]
mod tests;

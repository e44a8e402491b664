//! The containers Tether knows, their phase (serving, draining, out) and the provider update they
//! add up to. Pure state: the run loop feeds it inspections and events, and asks for the update.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tether_model::labels::{self, Container, Context, Declared, LabelError};
use tether_model::{
    CertificateDecl, MiddlewareDecl, ProviderUpdate, RouteDecl, ServiceDecl, TcpRouteDecl,
};

use super::inspect::{HealthState, Inspection};

/// Provider name in status and logs.
pub const PROVIDER: &str = "docker";

/// Where a container stands for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Takes new sessions.
    Serving,
    /// Takes no new sessions; pinned ones are served until then (or until the container is gone).
    Draining(Instant),
    /// Gets no traffic (paused, health starting, unhealthy after its drain, stopped but running,
    /// exited). Its routes stay, their service without this server: a request waits for a
    /// server, then gets 503 (the service's `wait_for_server`), never 404.
    Out(&'static str),
}

#[derive(Debug)]
struct Tracked {
    container: Container,
    declared: Option<Result<Declared, Vec<LabelError>>>,
    phase: Phase,
    /// A stop was asked for; stays set until the container starts again.
    stopping: bool,
}

/// The phase of a container that exited.
const EXITED: Phase = Phase::Out("exited");

/// What the tracker needs to translate containers.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub entrypoints: Vec<String>,
    /// Those of `entrypoints` that terminate TLS.
    pub tls_entrypoints: Vec<String>,
    /// Those of `entrypoints` that take TCP routers only.
    pub tcp_entrypoints: Vec<String>,
    /// The port of each entrypoint.
    pub entrypoint_ports: Vec<(String, u16)>,
    pub own_networks: Vec<String>,
    /// On the host: the networks it reaches (found with `own_networks`).
    pub host_networks: Option<Vec<String>>,
    /// `--docker-self`: how Tether's own container is found.
    pub self_spec: super::whereabouts::SelfSpec,
    pub default_network: Option<String>,
    /// How long a stopping or unhealthy container keeps its pinned sessions.
    pub drain: Duration,
    /// Only containers carrying this label with this value are read (`--docker-constraint`).
    pub constraint: Option<(String, String)>,
    /// Leave out Swarm task containers: the Swarm provider declares their services.
    pub skip_tasks: bool,
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

/// The label Swarm puts on every task's container.
pub const TASK_LABEL: &str = "com.docker.swarm.service.id";

/// All known containers by id.
#[derive(Debug, Default)]
pub struct Tracker {
    settings: Settings,
    containers: HashMap<String, Tracked>,
    /// Latest ticket per container: an inspection started before a later event is stale.
    tickets: HashMap<String, u64>,
    next_ticket: u64,
}

impl Tracker {
    pub fn new(settings: Settings) -> Tracker {
        Tracker {
            settings,
            ..Default::default()
        }
    }

    /// Where Tether runs: its container's networks, or the host's.
    pub fn set_whereabouts(&mut self, networks: Vec<String>, host: Option<Vec<String>>) {
        self.settings.own_networks = networks;
        self.settings.host_networks = host;
    }

    /// Does Tether run on the host (so the networks it reaches are this engine's bridges)?
    pub fn on_host(&self) -> bool {
        self.settings.host_networks.is_some()
    }

    /// The host's bridges changed (a network was created or removed): every container is read
    /// again against them. Returns whether what a container declares changed (another test's
    /// or stack's network coming and going changes nothing here, and publishes nothing).
    pub fn set_host_networks(&mut self, bridges: Vec<String>) -> bool {
        if self.settings.host_networks.as_ref() == Some(&bridges) {
            return false;
        }
        self.settings.host_networks = Some(bridges);
        let cx = self.settings.context();
        let mut changed = false;
        for t in self.containers.values_mut() {
            if t.declared.is_some() {
                let again = labels::declare(&t.container, &cx);
                changed |= format!("{again:?}") != format!("{:?}", t.declared);
                t.declared = again;
            }
        }
        changed
    }

    /// A ticket for an inspection about to start; later events make it stale.
    pub fn ticket(&mut self, id: &str) -> u64 {
        self.next_ticket += 1;
        self.tickets.insert(id.to_string(), self.next_ticket);
        self.next_ticket
    }

    /// Is this ticket still the latest for the container?
    pub fn is_current(&self, id: &str, ticket: u64) -> bool {
        self.tickets.get(id) == Some(&ticket)
    }

    /// Replace everything with a full listing (after connecting or reconnecting).
    pub fn resync(&mut self, all: Vec<Inspection>, now: Instant) {
        let ids: std::collections::HashSet<String> = all.iter().map(|i| i.id.clone()).collect();
        self.containers.retain(|id, _| ids.contains(id));
        for i in all {
            self.upsert(&i, now);
        }
    }

    /// Take in a fresh inspection.
    pub fn upsert(&mut self, insp: &Inspection, now: Instant) {
        if !insp.is_up() {
            self.stopped(&insp.id);
            return;
        }
        let container = insp.container();
        let prev = self.containers.remove(&insp.id);
        let cx = self.settings.context();
        let wanted = self
            .settings
            .constraint
            .as_ref()
            .is_none_or(|(k, v)| container.labels.get(k) == Some(v))
            && !(self.settings.skip_tasks && container.labels.contains_key(TASK_LABEL));
        let declared = if wanted {
            labels::declare(&container, &cx)
        } else {
            None
        };
        if prev.as_ref().is_none_or(|p| p.container != container) {
            report(&container, &declared);
        }
        let stopping = prev.as_ref().is_some_and(|p| p.stopping);
        let prev_phase = prev.as_ref().map(|p| p.phase);
        let phase = if insp.state.paused {
            Phase::Out("paused")
        } else if stopping {
            prev_phase.unwrap_or(Phase::Out("stopping"))
        } else {
            match insp.health() {
                HealthState::Starting => Phase::Out("health check starting"),
                HealthState::Unhealthy => match prev_phase {
                    Some(Phase::Serving) => Phase::Draining(now + self.settings.drain),
                    Some(d @ Phase::Draining(_)) => d,
                    _ => Phase::Out("unhealthy"),
                },
                HealthState::None | HealthState::Healthy => Phase::Serving,
            }
        };
        if prev_phase != Some(phase) {
            tracing::info!(container = %container.name, phase = ?phase, "docker: container phase");
        }
        self.containers.insert(
            insp.id.clone(),
            Tracked {
                container,
                declared,
                phase,
                stopping,
            },
        );
    }

    /// The container (re)started: a previous stop no longer applies.
    pub fn started(&mut self, id: &str) {
        if let Some(t) = self.containers.get_mut(id) {
            t.stopping = false;
        }
    }

    /// A stop was asked for: drain. Returns whether anything changed.
    pub fn stopping(&mut self, id: &str, now: Instant) -> bool {
        let drain = self.settings.drain;
        match self.containers.get_mut(id) {
            Some(t) if !t.stopping => {
                t.stopping = true;
                if t.phase == Phase::Serving {
                    t.phase = Phase::Draining(now + drain);
                    tracing::info!(container = %t.container.name, "docker: container stopping, draining");
                }
                true
            }
            _ => false,
        }
    }

    pub fn paused(&mut self, id: &str) -> bool {
        match self.containers.get_mut(id) {
            Some(t) if t.phase != Phase::Out("paused") => {
                t.phase = Phase::Out("paused");
                true
            }
            _ => false,
        }
    }

    /// The container exited (it still exists). One seen running keeps its routes, with no
    /// server, until it is removed or starts again; an inspection under way is now stale.
    pub fn stopped(&mut self, id: &str) -> bool {
        self.ticket(id);
        match self.containers.get_mut(id) {
            Some(t) if t.phase != EXITED => {
                tracing::info!(container = %t.container.name, "docker: container exited: its routes stay, without it");
                t.phase = EXITED;
                t.stopping = true;
                true
            }
            _ => false,
        }
    }

    /// The container is gone; an inspection still under way is now stale.
    pub fn gone(&mut self, id: &str) -> bool {
        self.ticket(id);
        let removed = self.containers.remove(id);
        if let Some(t) = &removed {
            tracing::info!(container = %t.container.name, "docker: container gone");
        }
        removed.is_some()
    }

    /// The earliest end of a drain, if any container is draining.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter_map(|t| match t.phase {
                Phase::Draining(until) => Some(until),
                _ => None,
            })
            .min()
    }

    /// End the drains that are due. Returns whether any ended.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        for t in self.containers.values_mut() {
            if matches!(t.phase, Phase::Draining(until) if until <= now) {
                tracing::info!(container = %t.container.name, "docker: drain period over");
                t.phase = Phase::Out("drained");
                any = true;
            }
        }
        any
    }

    /// Number of containers known (running), exposed or not.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// Everything the containers declare, merged: replicas of one service become its servers.
    pub fn update(&self) -> ProviderUpdate {
        let mut tracked: Vec<&Tracked> = self.containers.values().collect();
        tracked.sort_by(|a, b| a.container.name.cmp(&b.container.name));
        let mut services: BTreeMap<String, (ServiceDecl, &str)> = BTreeMap::new();
        let mut routes: BTreeMap<String, (RouteDecl, &str)> = BTreeMap::new();
        let mut certificates: BTreeMap<String, (CertificateDecl, &str)> = BTreeMap::new();
        let mut middlewares: BTreeMap<String, (MiddlewareDecl, &str)> = BTreeMap::new();
        let mut tcp_routes: BTreeMap<String, (TcpRouteDecl, &str)> = BTreeMap::new();
        let mut errors = Vec::new();
        // dockercloud's FAILOVER services, folded into those sharing their routes at the end.
        let mut failover = BTreeSet::new();
        // Containers out of rotation come last: they only keep what no other declares.
        let (live, out): (Vec<&Tracked>, Vec<&Tracked>) = tracked
            .into_iter()
            .partition(|t| !matches!(t.phase, Phase::Out(_)));
        for t in live {
            let name = t.container.name.as_str();
            let draining = matches!(t.phase, Phase::Draining(_));
            let d = match &t.declared {
                None => continue,
                Some(Err(es)) => {
                    errors.extend(es.iter().map(ToString::to_string));
                    continue;
                }
                Some(Ok(d)) => d,
            };
            if let Some(conflict) = conflict(d, &services, &routes, &middlewares, &tcp_routes) {
                // A clash between two services is no replica's mistake.
                let why = if conflict.contains("takes every connection") {
                    "one router per entrypoint may take every connection"
                } else {
                    "replicas of one service must carry the same labels"
                };
                errors.push(format!(
                    "container {name}: {conflict}; {why}, so this container is left out"
                ));
                continue;
            }
            if d.failover {
                failover.extend(d.services.iter().map(|s| s.name.clone()));
            }
            for m in &d.middlewares {
                middlewares
                    .entry(m.name.clone())
                    .or_insert((m.clone(), name));
            }
            for s in &d.services {
                let entry = services.entry(s.name.clone()).or_insert_with(|| {
                    let mut empty = s.clone();
                    empty.servers.clear();
                    (empty, name)
                });
                entry
                    .0
                    .servers
                    .extend(s.servers.iter().cloned().map(|mut srv| {
                        srv.draining = draining;
                        srv
                    }));
            }
            for r in &d.routes {
                routes.entry(r.name.clone()).or_insert((r.clone(), name));
            }
            for r in &d.tcp_routes {
                tcp_routes
                    .entry(r.name.clone())
                    .or_insert((r.clone(), name));
            }
            for c in &d.certificates {
                match certificates.get(&c.name) {
                    None => {
                        certificates.insert(c.name.clone(), (c.clone(), name));
                    }
                    Some((have, _)) if have.pem == c.pem && have.default == c.default => {}
                    Some((_, owner)) => errors.push(format!(
                        "container {name}: certificate {} differs from the one on container {owner}, which serves",
                        c.name
                    )),
                }
            }
        }
        for t in out {
            // Its service and routes stay, without it as a server.
            let Some(Ok(d)) = &t.declared else { continue };
            let name = t.container.name.as_str();
            if conflict(d, &services, &routes, &middlewares, &tcp_routes).is_some() {
                continue;
            }
            if d.failover {
                failover.extend(d.services.iter().map(|s| s.name.clone()));
            }
            for m in &d.middlewares {
                middlewares
                    .entry(m.name.clone())
                    .or_insert((m.clone(), name));
            }
            for s in &d.services {
                services.entry(s.name.clone()).or_insert_with(|| {
                    let mut empty = s.clone();
                    empty.servers.clear();
                    (empty, name)
                });
            }
            for r in &d.routes {
                routes.entry(r.name.clone()).or_insert((r.clone(), name));
            }
            for r in &d.tcp_routes {
                tcp_routes
                    .entry(r.name.clone())
                    .or_insert((r.clone(), name));
            }
        }
        let mut services: Vec<ServiceDecl> = services.into_values().map(|(s, _)| s).collect();
        let mut routes: Vec<RouteDecl> = routes.into_values().map(|(r, _)| r).collect();
        let tcp_routes: Vec<TcpRouteDecl> = tcp_routes.into_values().map(|(r, _)| r).collect();
        for (backup, of) in
            labels::failover::fold(&mut services, &mut routes, &tcp_routes, &failover)
        {
            tracing::debug!(route = %backup, backs_up = ?of, "docker: FAILOVER servers are backups");
        }
        ProviderUpdate {
            provider: PROVIDER.into(),
            services,
            routes,
            errors,
            version: String::new(),
            observed: None,
            certificates: certificates.into_values().map(|(c, _)| c).collect(),
            middlewares: middlewares.into_values().map(|(m, _)| m).collect(),
            tcp_routes,
        }
    }
}

/// Does this container declare a service or route differently from one already merged?
fn conflict(
    d: &Declared,
    services: &BTreeMap<String, (ServiceDecl, &str)>,
    routes: &BTreeMap<String, (RouteDecl, &str)>,
    middlewares: &BTreeMap<String, (MiddlewareDecl, &str)>,
    tcp_routes: &BTreeMap<String, (TcpRouteDecl, &str)>,
) -> Option<String> {
    for r in &d.tcp_routes {
        for (have, owner) in tcp_routes.values() {
            if let Some(at) = tether_model::validate::tcp::catch_all_clash(r, have) {
                return Some(format!(
                    "TCP router {} takes every connection of {at}, as TCP router {} of container {owner} does already",
                    r.name, have.name
                ));
            }
        }
        if let Some((have, owner)) = tcp_routes.get(&r.name) {
            let key = |r: &TcpRouteDecl| {
                (
                    r.rule_text.clone(),
                    r.priority,
                    r.service.clone(),
                    r.entrypoints.clone(),
                    r.passthrough,
                )
            };
            if key(have) != key(r) {
                return Some(format!(
                    "TCP router {} is declared otherwise than on container {owner}",
                    r.name
                ));
            }
        }
    }
    for m in &d.middlewares {
        if let Some((have, owner)) = middlewares.get(&m.name) {
            if have != m {
                return Some(format!(
                    "middleware {} is declared otherwise than on container {owner}",
                    m.name
                ));
            }
        }
    }
    for s in &d.services {
        if let Some((have, owner)) = services.get(&s.name) {
            if have.balance != s.balance
                || have.affinity != s.affinity
                || have.protocol != s.protocol
            {
                return Some(format!(
                    "service {} is declared with other balancing or affinity than on container {owner}",
                    s.name
                ));
            }
        }
    }
    for r in &d.routes {
        if let Some((have, owner)) = routes.get(&r.name) {
            if (
                &have.rule_text,
                have.priority,
                &have.service,
                &have.entrypoints,
                &have.redirect_https,
                &have.hsts,
                &have.middlewares,
            ) != (
                &r.rule_text,
                r.priority,
                &r.service,
                &r.entrypoints,
                &r.redirect_https,
                &r.hsts,
                &r.middlewares,
            ) {
                return Some(format!(
                    "route {} is declared with another rule, HTTPS policy or middlewares than on container {owner}",
                    r.name
                ));
            }
        }
    }
    None
}

/// Log what a container declares, or why it is left out.
fn report(c: &Container, declared: &Option<Result<Declared, Vec<LabelError>>>) {
    match declared {
        None => tracing::debug!(container = %c.name, "docker: no routing labels, ignored"),
        Some(Ok(d)) => tracing::info!(
            container = %c.name,
            dialect = %d.dialect,
            services = %d.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
            "docker: container declares"
        ),
        Some(Err(es)) => {
            for e in es {
                tracing::error!("docker: {e}; container left out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspection(
        id: &str,
        name: &str,
        health: Option<&str>,
        labels: &[(&str, &str)],
    ) -> Inspection {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let health = health.map(|h| serde_json::json!({ "Status": h }));
        serde_json::from_value(serde_json::json!({
            "Id": id, "Name": format!("/{name}"),
            "State": { "Running": true, "Paused": false, "Health": health },
            "Config": { "Labels": labels, "ExposedPorts": { "8080/tcp": {} } },
            "NetworkSettings": { "Networks": { "net": { "IPAddress": "10.1.0.2" } } }
        }))
        .unwrap()
    }

    const WEB: &[(&str, &str)] = &[
        ("tether.http.routers.web.rule", "Host(`web`)"),
        ("com.docker.compose.service", "web"),
    ];

    fn tracker() -> Tracker {
        Tracker::new(Settings {
            drain: Duration::from_secs(5),
            ..Default::default()
        })
    }

    fn servers(t: &Tracker) -> Vec<(String, bool)> {
        t.update()
            .services
            .iter()
            .flat_map(|s| s.servers.iter().map(|s| (s.name.clone(), s.draining)))
            .collect()
    }

    #[test]
    fn replicas_merge_and_a_stop_drains_until_the_deadline() {
        let mut t = tracker();
        let now = Instant::now();
        t.upsert(&inspection("a", "web-1", None, WEB), now);
        t.upsert(&inspection("b", "web-2", None, WEB), now);
        assert_eq!(
            servers(&t),
            [("web-1".into(), false), ("web-2".into(), false)]
        );
        assert!(t.stopping("a", now));
        assert_eq!(
            servers(&t),
            [("web-1".into(), true), ("web-2".into(), false)]
        );
        // A later inspection (a network event) does not undo the drain.
        t.upsert(&inspection("a", "web-1", None, WEB), now);
        assert_eq!(servers(&t)[0], ("web-1".into(), true));
        assert_eq!(t.next_deadline(), Some(now + Duration::from_secs(5)));
        assert!(t.expire(now + Duration::from_secs(6)));
        assert_eq!(servers(&t), [("web-2".into(), false)]);
        assert!(t.gone("b"));
        // web-1, drained but still there, keeps the service and its route, with no server.
        let u = t.update();
        assert_eq!(u.services.len(), 1);
        assert!(u.services[0].servers.is_empty());
        assert_eq!(u.routes.len(), 1);
        assert!(t.gone("a"));
        assert!(t.update().services.is_empty());
    }

    #[test]
    fn a_second_service_taking_every_connection_of_a_tcp_entrypoint_is_left_out() {
        let mut t = Tracker::new(Settings {
            entrypoints: vec!["db".into()],
            tcp_entrypoints: vec!["db".into()],
            ..Default::default()
        });
        let tcp = |service: &'static str| {
            [
                ("tether.tcp.routers.all.rule", "HostSNI(`*`)"),
                ("com.docker.compose.service", service),
            ]
        };
        let now = Instant::now();
        // Replicas of one service share their router; another service's is refused.
        let mut a = tcp("redis").to_vec();
        a[0].0 = "tether.tcp.routers.redis.rule";
        let mut b = tcp("zz").to_vec();
        b[0].0 = "tether.tcp.routers.zz.rule";
        t.upsert(&inspection("a", "redis-1", None, &a), now);
        t.upsert(&inspection("c", "redis-2", None, &a), now);
        // Containers are merged in name order: zz-1 comes after redis-1.
        t.upsert(&inspection("b", "zz-1", None, &b), now);
        let u = t.update();
        assert_eq!(u.tcp_routes.len(), 1);
        assert_eq!(u.tcp_routes[0].name, "redis@docker");
        assert_eq!(u.services[0].servers.len(), 2);
        assert!(
            u.errors.iter().any(|e| e == "container zz-1: TCP router zz@docker takes every connection of every TCP entrypoint, as TCP router redis@docker of container redis-1 does already; one router per entrypoint may take every connection, so this container is left out"),
            "{:?}",
            u.errors
        );
    }

    /// A dockercloud container of compose service `service` with `env`.
    fn dockercloud(id: &str, name: &str, service: &str, env: &[&str]) -> Inspection {
        serde_json::from_value(serde_json::json!({
            "Id": id, "Name": format!("/{name}"),
            "State": { "Running": true, "Paused": false },
            "Config": {
                "Labels": { "com.docker.compose.service": service },
                "Env": env,
                "ExposedPorts": { "8080/tcp": {} }
            },
            "NetworkSettings": { "Networks": { "net": { "IPAddress": "10.1.0.2" } } }
        }))
        .unwrap()
    }

    #[test]
    fn a_dockercloud_failover_service_backs_up_the_services_sharing_its_virtual_host() {
        let mut t = tracker();
        let now = Instant::now();
        let shop = ["SERVICE_PORTS=8080", "VIRTUAL_HOST=shop.test"];
        let spare = [
            "SERVICE_PORTS=8080",
            "VIRTUAL_HOST=shop.test",
            "FAILOVER=true",
        ];
        t.upsert(&dockercloud("a", "shop-1", "shop", &shop), now);
        t.upsert(&dockercloud("b", "shop-2", "shop", &shop), now);
        t.upsert(&dockercloud("c", "spare-1", "spare", &spare), now);
        // Another host: its own route, untouched.
        let blog = ["SERVICE_PORTS=8080", "VIRTUAL_HOST=blog.test"];
        t.upsert(&dockercloud("d", "blog-1", "blog", &blog), now);
        let u = t.update();
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        let routes: Vec<&str> = u.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(routes, ["blog@docker", "shop@docker"]);
        let shop = u.services.iter().find(|s| s.name == "shop@docker").unwrap();
        let servers: Vec<(&str, bool)> = shop
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.backup))
            .collect();
        assert_eq!(
            servers,
            [("shop-1", false), ("shop-2", false), ("spare-1", true)]
        );
        assert!(u.services.iter().all(|s| s.name != "spare@docker"));
        // Without the service it backs up, the failover service serves its host alone.
        assert!(t.gone("a") && t.gone("b"));
        let u = t.update();
        let routes: Vec<&str> = u.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(routes, ["blog@docker", "spare@docker"]);
        let spare = u
            .services
            .iter()
            .find(|s| s.name == "spare@docker")
            .unwrap();
        assert_eq!(spare.servers.len(), 1);
        assert!(spare.servers[0].backup);
    }

    #[test]
    fn exited_containers_keep_their_routes_until_removed() {
        let mut t = tracker();
        let now = Instant::now();
        t.upsert(&inspection("a", "web-1", None, WEB), now);
        t.upsert(&inspection("b", "web-2", None, WEB), now);
        assert!(t.stopped("a"));
        assert!(t.stopped("b"));
        assert!(!t.stopped("b"), "once");
        let u = t.update();
        assert_eq!(u.routes.len(), 1, "the route stays");
        assert_eq!(u.services.len(), 1);
        assert!(u.services[0].servers.is_empty(), "with no server");
        // Started again: served again.
        t.started("a");
        t.upsert(&inspection("a", "web-1", None, WEB), now);
        assert_eq!(servers(&t), [("web-1".into(), false)]);
        // Removed: gone with the last of them.
        assert!(t.gone("a") && t.gone("b"));
        assert!(t.update().routes.is_empty());
        // A container never seen running declares nothing.
        t.stopped("c");
        assert!(t.update().services.is_empty());
    }

    #[test]
    fn health_gates_traffic_and_unhealthy_drains() {
        let mut t = tracker();
        let now = Instant::now();
        t.upsert(&inspection("a", "web-1", Some("starting"), WEB), now);
        assert!(servers(&t).is_empty(), "starting: no traffic");
        t.upsert(&inspection("a", "web-1", Some("healthy"), WEB), now);
        assert_eq!(servers(&t), [("web-1".into(), false)]);
        t.upsert(&inspection("a", "web-1", Some("unhealthy"), WEB), now);
        assert_eq!(servers(&t), [("web-1".into(), true)], "unhealthy: drained");
        t.expire(now + Duration::from_secs(6));
        assert!(servers(&t).is_empty());
        t.upsert(&inspection("a", "web-1", Some("healthy"), WEB), now);
        assert_eq!(servers(&t), [("web-1".into(), false)]);
    }

    #[test]
    fn containers_share_a_middleware_unless_they_declare_it_otherwise() {
        let mut t = tracker();
        let now = Instant::now();
        let with = |realm: &'static str, group: &'static str| {
            vec![
                ("tether.http.routers.r.rule", "Host(`x`)"),
                ("tether.http.routers.r.middlewares", "auth"),
                (
                    "tether.http.middlewares.auth.basic_auth.users",
                    "u:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
                ),
                ("tether.http.middlewares.auth.basic_auth.realm", realm),
                ("com.docker.compose.service", group),
            ]
        };
        t.upsert(&inspection("a", "web-1", None, &with("shop", "web")), now);
        // Another service's container naming the same middleware alike: one middleware.
        let mut api = with("shop", "api");
        api[0] = ("tether.http.routers.a.rule", "Host(`api`)");
        api[1] = ("tether.http.routers.a.middlewares", "auth");
        t.upsert(&inspection("b", "api-1", None, &api), now);
        let u = t.update();
        assert!(u.errors.is_empty(), "{:?}", u.errors);
        assert_eq!(u.middlewares.len(), 1);
        assert_eq!(u.middlewares[0].name, "auth@docker");
        // Declared otherwise: that container is left out, named.
        t.upsert(&inspection("c", "web-2", None, &with("other", "web")), now);
        let u = t.update();
        assert_eq!(u.errors.len(), 1, "{:?}", u.errors);
        assert!(
            u.errors[0].starts_with(
                "container web-2: middleware auth@docker is declared otherwise than on container"
            ),
            "{:?}",
            u.errors
        );
        assert!(!servers(&t).iter().any(|(n, _)| n == "web-2"));
    }

    #[test]
    fn stale_inspections_and_disagreeing_replicas_are_left_out() {
        let mut t = tracker();
        let ticket = t.ticket("a");
        t.gone("a");
        assert!(
            !t.is_current("a", ticket),
            "an inspection started before die is stale"
        );
        let now = Instant::now();
        t.upsert(&inspection("a", "web-1", None, WEB), now);
        let other = [
            ("tether.http.routers.web.rule", "Host(`web`)"),
            ("tether.http.services.web.balance", "least_requests"),
            ("com.docker.compose.service", "web"),
        ];
        t.upsert(&inspection("b", "web-2", None, &other), now);
        let u = t.update();
        assert_eq!(servers(&t), [("web-1".into(), false)]);
        assert_eq!(u.errors.len(), 1);
        assert!(
            u.errors[0].starts_with("container web-2: service web@docker"),
            "{:?}",
            u.errors
        );
    }

    #[test]
    fn with_a_swarm_provider_task_containers_are_left_to_it() {
        let task = [
            ("tether.http.routers.web.rule", "Host(`web`)"),
            ("com.docker.compose.service", "web"),
            (TASK_LABEL, "abc123"),
        ];
        let now = Instant::now();
        let mut alone = tracker();
        alone.upsert(&inspection("a", "web.1.xyz", None, &task), now);
        assert_eq!(
            servers(&alone).len(),
            1,
            "without --swarm, read as a container"
        );
        let mut beside = Tracker::new(Settings {
            skip_tasks: true,
            ..Default::default()
        });
        beside.upsert(&inspection("a", "web.1.xyz", None, &task), now);
        beside.upsert(&inspection("b", "plain", None, WEB), now);
        assert_eq!(
            servers(&beside),
            [("plain".into(), false)],
            "the task is the Swarm provider's; the plain container is still read"
        );
    }
}

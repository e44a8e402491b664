//! The routing table: routes per entrypoint and services with their balancers, sticky indexes and
//! backends, compiled once per configuration change and then only read. A request holds one
//! `Arc<RoutingTable>` from start to end, so a swap never disturbs requests in flight.

use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash as _;
use std::sync::Arc;

use tether_balance::{AffinityKey, Balancer, Candidate, StickyIndex};
use tether_model::{
    validate, AffinityPolicy, HashOn, HealthCheck, MiddlewareDecl, RouteDecl, ServiceDecl,
    ServiceProtocol, TcpRouteDecl, ValidationError,
};

use crate::middleware::{self, Chain, Secrets};
use crate::route::retry::RetryBudget;
use crate::route::router::{RouteEntry, Router};
use crate::upstream::registry::{Backend, Registry};

/// Immutable table the data plane reads.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Hash of the declarations: equal on every replica that applied the same configuration.
    pub version: String,
    /// One router per entrypoint, in the order of the entrypoint names given to [`compile`].
    pub routers: Vec<Router>,
    /// One TCP router per entrypoint, in the same order (empty where none is).
    pub tcp: Vec<crate::tcp::router::TcpRouter>,
    pub services: Vec<Service>,
}

/// A service ready to serve.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub balancer: Balancer,
    /// Same order as the balancer's candidates.
    pub backends: Vec<Arc<Backend>>,
    pub sticky: Option<Sticky>,
    /// What consistent hashing reads from the request, if the service hashes.
    pub hash_on: Option<HashOn>,
    /// Its servers' active health checks ([`crate::health`]).
    pub health: Option<HealthCheck>,
    /// Retries to other servers it may still make ([`crate::route::retry`]).
    pub retries: RetryBudget,
    /// Its counters ([`crate::stats`]), kept across reloads.
    pub stats: Arc<crate::stats::ServiceStats>,
    /// How long and how many requests wait while it has no server.
    pub wait: tether_model::ServerWait,
    /// HTTP, or TCP (its health check is then a connect).
    pub protocol: ServiceProtocol,
}

impl Service {
    /// Does any server take new requests (as the balancer's last resort sees them)? While none
    /// does, requests wait for one ([`crate::handler`]'s wait) and the stats page says so.
    pub fn has_server(&self) -> bool {
        self.balancer
            .servers()
            .iter()
            .any(|c| c.weight > 0 && c.state.takes_new(false))
    }
}

/// A service's session affinity.
#[derive(Debug)]
pub struct Sticky {
    pub policy: AffinityPolicy,
    pub index: StickyIndex,
    /// Cookie mode: the whole `Set-Cookie` value for each server, built once per table so that
    /// pinning a response costs a reference-count increment.
    pub set_cookie: Box<[http::HeaderValue]>,
}

impl Sticky {
    pub fn new(policy: AffinityPolicy, index: StickyIndex) -> Sticky {
        let set_cookie = match &policy.mode {
            tether_model::AffinityMode::Cookie(attrs) => (0..index.len())
                .map(|i| crate::route::sticky::inserted_cookie(attrs, index.value(i)))
                .collect(),
            tether_model::AffinityMode::Prefix { .. } => Box::default(),
        };
        Sticky {
            policy,
            index,
            set_cookie,
        }
    }
}

/// What compiling needs besides the declarations.
#[derive(Debug, Clone)]
pub struct CompileInput<'a> {
    pub entrypoints: &'a [String],
    /// The entrypoints that terminate TLS and the ports they listen on: where `redirect_https`
    /// points when a route names no port.
    pub tls_ports: &'a [(String, u16)],
    pub key: &'a AffinityKey,
    pub registry: &'a Registry,
    /// [`version`] of the declarations, when the caller has worked it out already.
    pub version: Option<String>,
    /// Every source's middlewares, which routes name.
    pub middlewares: &'a [MiddlewareDecl],
    /// Where the Docker secrets a `users_file` may name are.
    pub secrets: &'a Secrets,
    /// The entrypoints of `entrypoints` that take TCP routers only (`protocol = "tcp"`).
    pub tcp_entrypoints: &'a [String],
    /// Every source's TCP routers.
    pub tcp_routes: &'a [TcpRouteDecl],
    /// The ACME resolvers (`[acme.NAME]`) a route's `tls.resolver` may name.
    pub acme_resolvers: &'a [String],
}

/// Every reason [`compile`] would refuse these declarations (none: it would build a table).
pub fn check(
    services: &[ServiceDecl],
    routes: &[RouteDecl],
    input: &CompileInput<'_>,
) -> Vec<ValidationError> {
    let (entrypoints, tls_ports) = (input.entrypoints, input.tls_ports);
    let mut errors = validate::set(services, routes, input.middlewares);
    for r in routes {
        let target = r
            .redirect_https
            .as_ref()
            .and_then(|h| h.entrypoint.as_ref());
        if let Some(e) = target {
            if !tls_ports.iter().any(|(name, _)| name == e) {
                errors.push(ValidationError::new(
                    format!("routes.{}.redirect_https.entrypoint", r.name),
                    format!("no TLS entrypoint named {e:?}"),
                ));
            }
        }
        for ep in &r.entrypoints {
            if !entrypoints.contains(ep) {
                errors.push(ValidationError::new(
                    format!("routes.{}.entrypoints", r.name),
                    format!("no entrypoint named {ep:?}"),
                ));
            } else if input.tcp_entrypoints.contains(ep) {
                errors.push(ValidationError::new(
                    format!("routes.{}.entrypoints", r.name),
                    format!("{ep:?} is a TCP entrypoint (protocol = \"tcp\"): HTTP routes go on the others"),
                ));
            }
        }
        let tcp_service = services
            .iter()
            .find(|s| s.name == r.service)
            .is_some_and(|s| s.protocol.is_tcp());
        if tcp_service {
            errors.push(ValidationError::new(
                format!("routes.{}.service", r.name),
                format!(
                    "{:?} is a TCP service: an HTTP route needs an HTTP service",
                    r.service
                ),
            ));
        }
    }
    errors.extend(acme_requests(routes, input));
    let tls = crate::tcp::check::tls_names(input);
    let eps = crate::tcp::check::entrypoints(input, &tls);
    errors.extend(validate::tcp::routers(services, input.tcp_routes, &eps));
    // TLS to servers: the CA file reads, the name is one. Said once per service.
    for s in services {
        let mut seen = Vec::new();
        for tls in s.servers.iter().filter_map(|srv| srv.tls.as_ref()) {
            if seen.contains(&tls) {
                continue;
            }
            seen.push(tls);
            if let Err(e) = crate::upstream::tls::Connector::new(tls) {
                errors.push(tls_error(&s.name, &e));
                break;
            }
        }
    }
    errors
}

/// What routes ask ACME resolvers to order: a resolver Tether has, names a CA can issue for,
/// and no name that a TLS passthrough router takes (its server answers for it, not Tether).
fn acme_requests(routes: &[RouteDecl], input: &CompileInput<'_>) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for r in routes {
        let Some(tls) = &r.tls else { continue };
        let Some(resolver) = &tls.resolver else {
            continue;
        };
        let field = format!("routes.{}.tls.resolver", r.name);
        if !input.acme_resolvers.contains(resolver) {
            let known = if input.acme_resolvers.is_empty() {
                "Tether has none: declare it as [acme.NAME] in tether.toml".to_string()
            } else {
                format!("Tether's: {}", input.acme_resolvers.join(", "))
            };
            errors.push(ValidationError::new(
                field,
                format!("no ACME resolver named {resolver:?} ({known})"),
            ));
            continue;
        }
        let wanted = match tether_model::acme::wanted(&r.name, &r.rule, tls) {
            Ok(w) => w,
            Err((field, m)) => {
                errors.push(ValidationError::new(field, m));
                continue;
            }
        };
        let passthrough = wanted.iter().flat_map(|w| &w.names).find_map(|n| {
            let conn = tether_model::ConnView {
                sni: Some(n),
                client: std::net::Ipv4Addr::UNSPECIFIED.into(),
            };
            input
                .tcp_routes
                .iter()
                .find(|t| t.passthrough && t.rule.matches_conn(&conn))
                .map(|t| (n, t))
        });
        if let Some((n, t)) = passthrough {
            errors.push(ValidationError::new(
                field,
                format!(
                    "{n:?} is passed through to a server by TCP router {:?}: that server holds its certificate, so Tether cannot order one for it",
                    t.name
                ),
            ));
        }
    }
    errors
}

fn tls_error(service: &str, e: &crate::upstream::tls::TlsConfigError) -> ValidationError {
    ValidationError::new(format!("services.{service}.tls"), e.to_string())
}

/// Validate and compile declarations into a table. On success the registry's live backends become
/// this table's; on error nothing changes.
pub fn compile(
    services: &[ServiceDecl],
    routes: &[RouteDecl],
    input: CompileInput<'_>,
) -> Result<RoutingTable, Vec<ValidationError>> {
    let errors = check(services, routes, &input);
    if !errors.is_empty() {
        return Err(errors);
    }
    let chains = chains(routes, &input)?;
    let mut generation = input.registry.generation();
    let compiled: Vec<Service> = services
        .iter()
        .map(|s| service(s, input.key, &mut generation))
        .collect::<Result<_, _>>()
        .map_err(|e| vec![e])?;
    let by_name: HashMap<&str, usize> = compiled
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Best first: priority descending, then name (unique, so the order is total). Indices are
    // sorted rather than the entries, which are then built once in place.
    let mut order: Vec<u32> = (0..routes.len() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&routes[a as usize], &routes[b as usize]);
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    // Each service's routes get their counters' slots, by name (a route keeps its slot while it
    // exists).
    let mut per_service: Vec<Vec<&str>> = vec![Vec::new(); compiled.len()];
    for r in routes {
        per_service[by_name[r.service.as_str()]].push(r.name.as_str());
    }
    let mut slots: HashMap<&str, u8> = HashMap::default();
    for (s, names) in compiled.iter().zip(per_service) {
        if !names.is_empty() {
            let got = generation.route_slots(&s.stats, &names);
            slots.extend(names.into_iter().zip(got));
        }
    }
    let mut chains: Vec<Option<Box<Chain>>> = chains.into_iter().map(|c| c.map(Box::new)).collect();
    let entries: Arc<[RouteEntry]> = order
        .iter()
        .map(|&i| {
            let r = &routes[i as usize];
            RouteEntry {
                chain: chains[i as usize].take(),
                stats_slot: slots[r.name.as_str()],
                name: r.name.clone(),
                rule: r.rule.clone(),
                rule_text: r.rule_text.clone(),
                priority: r.priority,
                service: by_name[r.service.as_str()],
                entrypoints: r.entrypoints.clone().into(),
                max_body: r.max_body,
            }
        })
        .collect();
    let routers = input
        .entrypoints
        .iter()
        .map(|ep| {
            if input.tcp_entrypoints.contains(ep) {
                return Router::default();
            }
            let members = (0..entries.len()).filter(|&i| {
                let eps = &entries[i].entrypoints;
                eps.is_empty() || eps.iter().any(|x| x == ep)
            });
            Router::new(entries.clone(), members)
        })
        .collect();
    let tcp = crate::tcp::check::compile(&input, &by_name);
    generation.commit();
    Ok(RoutingTable {
        version: input
            .version
            .clone()
            .unwrap_or_else(|| version(services, routes, input.middlewares, input.tcp_routes)),
        routers,
        tcp,
        services: compiled,
    })
}

/// Each route's middleware chain, in the routes' order. The counters of pairs no route names
/// any more are forgotten.
fn chains(
    routes: &[RouteDecl],
    input: &CompileInput<'_>,
) -> Result<Vec<Option<Chain>>, Vec<ValidationError>> {
    let by_name: std::collections::HashMap<&str, &MiddlewareDecl> = input
        .middlewares
        .iter()
        .map(|m| (m.name.as_str(), m))
        .collect();
    let cx = middleware::Context {
        middlewares: &by_name,
        tls_ports: input.tls_ports,
        counters: &input.registry.middleware_answers,
        secrets: input.secrets,
    };
    let mut errors = Vec::new();
    let mut live = std::collections::HashSet::new();
    let chains = routes
        .iter()
        .map(|r| match Chain::compile(r, &cx) {
            Ok(c) => {
                for n in c.iter().flat_map(|c| c.names.iter()) {
                    live.insert((r.name.clone(), n.to_string()));
                }
                c
            }
            Err(e) => {
                errors.push(e);
                None
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    input.registry.middleware_answers.retain(&live);
    Ok(chains)
}

fn service(
    s: &ServiceDecl,
    key: &AffinityKey,
    generation: &mut crate::upstream::registry::Generation<'_>,
) -> Result<Service, ValidationError> {
    let backends: Vec<Arc<Backend>> = s
        .servers
        .iter()
        .map(|srv| {
            let b = generation
                .backend(&s.name, &srv.name, &srv.addr, srv.tls.as_ref())
                .map_err(|e| tls_error(&s.name, &e))?;
            b.state.set_draining(srv.draining);
            if s.health.is_none() {
                // Only active checks take a server out for health: without them, none is.
                b.state.set_healthy(true);
            }
            Ok(b)
        })
        .collect::<Result<_, _>>()?;
    let candidates = s
        .servers
        .iter()
        .zip(&backends)
        .map(|(srv, b)| Candidate {
            name: b.name.clone(),
            weight: srv.weight,
            state: b.state.clone(),
            backup: srv.backup,
        })
        .collect();
    let sticky = s.affinity.as_ref().map(|policy| {
        let servers: Vec<(&str, u32)> = s
            .servers
            .iter()
            .map(|srv| (srv.name.as_str(), srv.weight))
            .collect();
        Sticky::new(policy.clone(), StickyIndex::new(key, &s.name, &servers))
    });
    let hash_on = match &s.balance {
        tether_model::BalanceAlgo::ConsistentHash(h) => Some(h.clone()),
        _ => None,
    };
    Ok(Service {
        name: s.name.clone(),
        balancer: Balancer::new(&s.balance, candidates),
        backends,
        sticky,
        hash_on,
        health: s.health.clone(),
        retries: RetryBudget::default(),
        stats: generation.service_stats(&s.name),
        wait: s.wait,
        protocol: s.protocol,
    })
}

/// A short digest of the declarations, for checking that replicas converged: equal for equal
/// declarations in the same order, on every replica running the same build.
pub fn version(
    services: &[ServiceDecl],
    routes: &[RouteDecl],
    middlewares: &[MiddlewareDecl],
    tcp_routes: &[TcpRouteDecl],
) -> String {
    // Every field of every declaration, through their `Hash` (derived, and for routes written to
    // name every field): a field added later is digested too. Formatting them with `Debug`, as
    // before, cost ten times as much.
    let mut h = tether_balance::hash::Hasher64::default();
    services.hash(&mut h);
    routes.hash(&mut h);
    middlewares.hash(&mut h);
    tcp_routes.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::{BalanceAlgo, Rule, ServerAddr, ServerDecl};

    #[test]
    fn the_version_digests_every_field_of_the_declarations() {
        let service = ServiceDecl {
            name: "api".into(),
            servers: vec![ServerDecl {
                name: "a".into(),
                addr: ServerAddr::parse("http://10.0.0.1:8080").unwrap(),
                weight: 1,
                draining: false,
                tls: None,
                backup: false,
            }],
            balance: BalanceAlgo::default(),
            affinity: None,
            resolve: None,
            health: None,
            wait: Default::default(),
            protocol: Default::default(),
        };
        let route = |priority: i64, entrypoints: Vec<String>| RouteDecl {
            name: "r1".into(),
            rule: Rule::parse("PathPrefix(`/`)").unwrap().into(),
            rule_text: "PathPrefix(`/`)".into(),
            priority,
            service: "api".into(),
            entrypoints,
            max_body: None,
            redirect_https: None,
            hsts: None,
            middlewares: Vec::new(),
            tls: None,
        };
        let routes = vec![route(-3, vec!["web".into()]), route(12, Vec::new())];
        let services = vec![service];
        let v = version(&services, &routes, &[], &[]);
        assert_eq!(v.len(), 16);
        assert_eq!(
            v,
            version(&services.clone(), &routes.clone(), &[], &[]),
            "stable"
        );
        assert_ne!(v, version(&services, &routes[..1], &[], &[]));
        // Any field of a route changes it.
        let v = version(&services, &routes[..1], &[], &[]);
        let route_edits: [&dyn Fn(&mut RouteDecl); 5] = [
            &|r| r.name.push('2'),
            &|r| r.rule_text.push(' '),
            &|r| r.priority = 4,
            &|r| r.service.push('2'),
            &|r| r.entrypoints.clear(),
        ];
        for edit in route_edits {
            let mut r = routes[0].clone();
            edit(&mut r);
            assert_ne!(
                v,
                version(&services, &[r], &[], &[]),
                "a route edit left the version unchanged"
            );
        }
        // Any field of a service, however deep, changes it.
        let changed = |edit: &dyn Fn(&mut ServiceDecl)| {
            let mut s = services[0].clone();
            edit(&mut s);
            version(&[s], &routes[..1], &[], &[])
        };
        let edits: [&dyn Fn(&mut ServiceDecl); 9] = [
            &|s| s.name.push('2'),
            &|s| s.servers[0].name.push('2'),
            &|s| s.servers[0].addr = ServerAddr::parse("http://10.0.0.1:8081").unwrap(),
            &|s| s.servers[0].weight = 2,
            &|s| s.servers[0].draining = true,
            &|s| s.balance = BalanceAlgo::LeastRequests,
            &|s| s.wait.timeout = std::time::Duration::ZERO,
            &|s| s.wait.queue = 1,
            &|s| {
                s.affinity = Some(tether_model::AffinityPolicy {
                    mode: tether_model::AffinityMode::Prefix {
                        cookie: "sid".into(),
                    },
                    nocache: false,
                    on_missing: Default::default(),
                })
            },
        ];
        let mut seen = std::collections::HashSet::from([v.clone()]);
        for edit in edits {
            assert!(
                seen.insert(changed(edit)),
                "an edit left the version unchanged"
            );
        }
        // Moving a server between two services changes it, though the bytes are the same.
        let two = |a: Vec<ServerDecl>, b: Vec<ServerDecl>| {
            let mut x = services[0].clone();
            x.servers = a;
            let mut y = services[0].clone();
            y.name = "b".into();
            y.servers = b;
            version(&[x, y], &[], &[], &[])
        };
        let srv = services[0].servers[0].clone();
        assert_ne!(
            two(vec![srv.clone()], Vec::new()),
            two(Vec::new(), vec![srv])
        );
    }
}

//! The control plane: providers hand in their whole desired state ([`ProviderUpdate`]); the
//! [`Control`] merges all providers, validates, compiles a new routing table off the hot path and
//! swaps it in whole. Invalid input never replaces a good table: the error is logged, kept for the
//! API, and the last good table keeps serving.

pub mod key;
pub mod report;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tether_balance::AffinityKey;
use tether_model::{
    MiddlewareDecl, ProviderUpdate, RouteDecl, ServiceDecl, TcpRouteDecl, ValidationError,
};
use tether_proxy::front::tls::certs::CertStore;
use tether_proxy::middleware::Secrets;
use tether_proxy::stats::{Histogram, Snapshot};
use tether_proxy::table::CompileInput;
use tether_proxy::{compile, Registry, RoutingTable, TableStore};

use report::History;
pub use report::{Rejection, SourceStatus};

/// Every provider's services, routes and middlewares, in provider order.
struct Merged<'a> {
    services: Cow<'a, [ServiceDecl]>,
    routes: Cow<'a, [RouteDecl]>,
    middlewares: Cow<'a, [MiddlewareDecl]>,
    tcp_routes: Cow<'a, [TcpRouteDecl]>,
}

/// The certificates `routes` ask ACME resolvers for, each once, in a stable order.
fn acme_wanted(routes: &[RouteDecl]) -> Vec<tether_model::acme::Wanted> {
    let mut out: Vec<tether_model::acme::Wanted> = routes
        .iter()
        .filter_map(|r| Some((r, r.tls.as_ref()?)))
        .filter_map(|(r, t)| tether_model::acme::wanted(&r.name, &r.rule, t).ok())
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every provider's declarations, in provider order. Borrowed when one provider declares them
/// all (a file, or the engine, alone): a reload of 10,000 routes then copies none of them.
fn merged(providers: &BTreeMap<String, Arc<ProviderUpdate>>) -> Merged<'_> {
    let mut declaring = providers.values().filter(|u| {
        !u.services.is_empty()
            || !u.routes.is_empty()
            || !u.middlewares.is_empty()
            || !u.tcp_routes.is_empty()
    });
    match (declaring.next(), declaring.next()) {
        (None, _) => Merged {
            services: Cow::Borrowed(&[]),
            routes: Cow::Borrowed(&[]),
            middlewares: Cow::Borrowed(&[]),
            tcp_routes: Cow::Borrowed(&[]),
        },
        (Some(one), None) => Merged {
            services: Cow::Borrowed(&one.services),
            routes: Cow::Borrowed(&one.routes),
            middlewares: Cow::Borrowed(&one.middlewares),
            tcp_routes: Cow::Borrowed(&one.tcp_routes),
        },
        (Some(_), Some(_)) => Merged {
            services: providers
                .values()
                .flat_map(|u| u.services.iter().cloned())
                .collect(),
            routes: providers
                .values()
                .flat_map(|u| u.routes.iter().cloned())
                .collect(),
            middlewares: providers
                .values()
                .flat_map(|u| u.middlewares.iter().cloned())
                .collect(),
            tcp_routes: providers
                .values()
                .flat_map(|u| u.tcp_routes.iter().cloned())
                .collect(),
        },
    }
}

/// What [`Control::owner`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declares {
    Route,
    /// An HTTP or a TCP service.
    Service,
    TcpRouter,
}

/// A configuration change that was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration from provider {provider} rejected: {}", .errors.join("; "))]
pub struct Rejected {
    pub provider: String,
    pub errors: Vec<String>,
}

/// What the control plane can report about itself.
#[derive(Debug, Clone)]
pub struct Status {
    /// Version (hash) of the table being served.
    pub version: String,
    pub applied_at: Option<SystemTime>,
    /// Last rejection per provider, cleared by the provider's next good update.
    pub errors: BTreeMap<String, Vec<String>>,
    pub routes: usize,
    pub services: usize,
    /// Tables swapped in since start (updates that change nothing swap nothing).
    pub swaps: u64,
}

#[derive(Default)]
struct State {
    /// Shared, so that trying a candidate state copies no declarations.
    providers: BTreeMap<String, Arc<ProviderUpdate>>,
    /// The table swapped out last, held until the next swap so that the serving thread never
    /// pays for dropping a large one (requests in flight finish with it long before).
    retired: Option<Arc<RoutingTable>>,
    errors: BTreeMap<String, Vec<String>>,
    applied_at: Option<SystemTime>,
    swaps: u64,
    /// When each provider's update was last applied, and its reported problem.
    updated_at: BTreeMap<String, SystemTime>,
    problems: BTreeMap<String, String>,
    history: History,
    /// Per provider, from a change at the source ([`ProviderUpdate::observed`]) to its table
    /// serving.
    lag: BTreeMap<String, Histogram>,
}

impl State {
    /// Make `candidate` the providers' state; the provider's errors are those of the parts of its
    /// update that it left out (none: its earlier errors are cleared). Errors it did not report
    /// last time go into the history.
    fn accept(&mut self, provider: &str, candidate: BTreeMap<String, Arc<ProviderUpdate>>) {
        self.providers = candidate;
        self.updated_at
            .insert(provider.to_string(), SystemTime::now());
        let left_out = self.providers[provider].errors.clone();
        if left_out.is_empty() {
            self.errors.remove(provider);
        } else {
            if self.errors.get(provider) != Some(&left_out) {
                self.history.record(provider, &left_out);
            }
            self.errors.insert(provider.to_string(), left_out);
        }
    }
}

/// Owns the live table.
pub struct Control {
    store: TableStore,
    registry: Registry,
    /// The sealing key; replaced once when a replica that started on a key of its own gets the
    /// one its replicas share ([`Control::rekey`]).
    key: ArcSwap<AffinityKey>,
    entrypoints: Vec<String>,
    /// The TLS entrypoints and their ports (see [`CompileInput::tls_ports`]).
    tls_ports: Vec<(String, u16)>,
    /// The `protocol = "tcp"` entrypoints.
    tcp_entrypoints: Vec<String>,
    /// Where the providers' certificates go, when Tether has a TLS entrypoint.
    certificates: std::sync::OnceLock<Arc<CertStore>>,
    /// Where Docker secrets are ([`Control::set_secrets_dir`]).
    secrets: std::sync::OnceLock<Secrets>,
    /// The ACME resolvers routes may name ([`Control::set_acme_resolvers`]).
    acme_resolvers: std::sync::OnceLock<Vec<String>>,
    /// The certificates the served table's routes ask ACME resolvers for.
    acme_wanted: tokio::sync::watch::Sender<Vec<tether_model::acme::Wanted>>,
    /// The ACME client, when resolvers are declared ([`Control::set_acme`]).
    acme: std::sync::OnceLock<tether_acme::Acme>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("entrypoints", &self.entrypoints)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Start with an empty table (every request gets 404 until a provider reports). `tls_ports`:
    /// the entrypoints of `entrypoints` that terminate TLS, with the ports they listen on;
    /// `tcp_entrypoints`: those that take TCP routers only.
    pub fn new(
        entrypoints: Vec<String>,
        tls_ports: Vec<(String, u16)>,
        tcp_entrypoints: Vec<String>,
        key: AffinityKey,
    ) -> Arc<Control> {
        let empty = RoutingTable {
            routers: entrypoints.iter().map(|_| Default::default()).collect(),
            tcp: entrypoints.iter().map(|_| Default::default()).collect(),
            ..Default::default()
        };
        Arc::new(Control {
            store: Arc::new(ArcSwap::from_pointee(empty)),
            registry: Registry::default(),
            key: ArcSwap::from_pointee(key),
            entrypoints,
            tls_ports,
            tcp_entrypoints,
            certificates: std::sync::OnceLock::new(),
            secrets: std::sync::OnceLock::new(),
            acme_resolvers: std::sync::OnceLock::new(),
            acme_wanted: tokio::sync::watch::Sender::new(Vec::new()),
            acme: std::sync::OnceLock::new(),
            state: Mutex::new(State::default()),
        })
    }

    /// The store the data plane reads.
    pub fn store(&self) -> TableStore {
        self.store.clone()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serve the certificates that providers declare from `store` (the TLS entrypoints'). Set
    /// once, before the providers start.
    pub fn serve_certificates(&self, store: Arc<CertStore>) {
        let _ = self.certificates.set(store);
    }

    /// Hand `update`'s certificates to the store; their problems join the update's errors.
    fn take_certificates(&self, update: &mut ProviderUpdate) {
        let decls = std::mem::take(&mut update.certificates);
        match self.certificates.get() {
            Some(store) => {
                let problems = store.set_source(&update.provider, decls.clone());
                update.errors.extend(problems);
            }
            None => update.errors.extend(decls.iter().map(|d| {
                format!(
                    "certificate {} ({}): Tether has no TLS entrypoint to serve it on; add `tls = true` to one",
                    d.name, d.origin
                )
            })),
        }
        update.certificates = decls;
    }

    /// Replace one provider's state and swap in the merged table. Returns the new version.
    /// Its certificates serve from the next handshake on, whatever becomes of its routes.
    pub fn apply(&self, mut update: ProviderUpdate) -> Result<String, Rejected> {
        self.take_certificates(&mut update);
        let started = std::time::Instant::now();
        let observed = update.observed;
        let mut state = self.state.lock().expect("control state poisoned");
        let provider = update.provider.clone();
        let mut candidate = state.providers.clone();
        candidate.insert(provider.clone(), Arc::new(update));
        let m = merged(&candidate);
        let digest =
            tether_proxy::table::version(&m.services, &m.routes, &m.middlewares, &m.tcp_routes);
        if digest == self.store.load().version {
            // Nothing the data plane sees changed (a network event, say): no swap.
            let version = self.store.load().version.clone();
            state.accept(&provider, candidate);
            tracing::debug!(%provider, %version, "configuration unchanged");
            return Ok(version);
        }
        match self.compile(&m, digest) {
            Ok(table) => {
                let version = table.version.clone();
                let (nr, ns) = (m.routes.len(), m.services.len());
                let wanted = acme_wanted(&m.routes);
                drop(m);
                let table = Arc::new(table);
                let old = self.store.swap(table.clone());
                // Requests waiting for a server that this table brings go now.
                tether_proxy::handler::wake_waiting(&table);
                self.acme_wanted.send_if_modified(|w| {
                    let changed = *w != wanted;
                    *w = wanted;
                    changed
                });
                drop(table);
                // From the update to the new table serving; what follows is clean-up.
                let took_ms = started.elapsed().as_secs_f64() * 1e3;
                // Dropped here, off the serving thread: the one retired at the previous swap.
                drop(state.retired.replace(old));
                state.accept(&provider, candidate);
                let now = SystemTime::now();
                state.applied_at = Some(now);
                state.swaps += 1;
                if let Some(lag) = observed.and_then(|t| now.duration_since(t).ok()) {
                    state
                        .lag
                        .entry(provider.clone())
                        .or_default()
                        .observe(lag.as_micros() as u64);
                }
                tracing::info!(%provider, %version, routes = nr, services = ns, took_ms = format_args!("{took_ms:.1}"), "configuration applied");
                Ok(version)
            }
            Err(errs) => {
                let errors: Vec<String> = errs.iter().map(ValidationError::to_string).collect();
                drop(state);
                Err(self.reject(&provider, errors))
            }
        }
    }

    /// Record that a provider's input was invalid; the served table does not change.
    pub fn reject(&self, provider: &str, errors: Vec<String>) -> Rejected {
        let r = Rejected {
            provider: provider.to_string(),
            errors,
        };
        tracing::error!(provider = %r.provider, "{}; still serving version {}", r, self.store.load().version);
        let mut state = self.state.lock().expect("control state poisoned");
        state.history.record(&r.provider, &r.errors);
        state.errors.insert(r.provider.clone(), r.errors.clone());
        r
    }

    /// Record input that a source refused before it reached the table (an API body that does not
    /// check out): logged and kept in the history; nothing else changes.
    pub fn note_refused(&self, provider: &str, errors: &[String]) {
        tracing::warn!(%provider, "input refused: {}", errors.join("; "));
        self.state
            .lock()
            .expect("control state poisoned")
            .history
            .record(provider, errors);
    }

    /// Would this update be applied? Every reason it would be refused, checked against the other
    /// providers' current state; nothing changes.
    pub fn check(&self, update: ProviderUpdate) -> Result<(), Vec<String>> {
        let mut candidate = self
            .state
            .lock()
            .expect("control state poisoned")
            .providers
            .clone();
        candidate.insert(update.provider.clone(), Arc::new(update));
        let m = merged(&candidate);
        let key = self.key.load();
        let input = self.input(&m, &key, None);
        let errors = tether_proxy::table::check(&m.services, &m.routes, &input);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.iter().map(ValidationError::to_string).collect())
        }
    }

    /// The provider other than `except` that declares a `what` of this name (services, HTTP or
    /// TCP, share one name space).
    pub fn owner(&self, what: Declares, name: &str, except: &str) -> Option<String> {
        let state = self.state.lock().expect("control state poisoned");
        state
            .providers
            .iter()
            .filter(|(p, _)| p.as_str() != except)
            .find(|(_, u)| match what {
                Declares::Route => u.routes.iter().any(|r| r.name == name),
                Declares::Service => u.services.iter().any(|s| s.name == name),
                Declares::TcpRouter => u.tcp_routes.iter().any(|r| r.name == name),
            })
            .map(|(p, _)| p.clone())
    }

    /// Each provider's last applied update.
    pub fn declarations(&self) -> BTreeMap<String, Arc<ProviderUpdate>> {
        self.state
            .lock()
            .expect("control state poisoned")
            .providers
            .clone()
    }

    /// A source cannot reach its input (`Some(problem)`), or can again (`None`). Its last state
    /// keeps serving either way.
    pub fn set_problem(&self, provider: &str, problem: Option<String>) {
        let mut state = self.state.lock().expect("control state poisoned");
        match problem {
            Some(p) => {
                if state.problems.get(provider) != Some(&p) {
                    tracing::error!(%provider, "{p}; still serving version {}", self.store.load().version);
                    state.history.record(provider, std::slice::from_ref(&p));
                }
                state.problems.insert(provider.to_string(), p);
            }
            None => {
                if state.problems.remove(provider).is_some() {
                    tracing::info!(%provider, "source reachable again");
                }
            }
        }
    }

    /// Every source heard of, by name.
    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        let state = self.state.lock().expect("control state poisoned");
        let mut out: BTreeMap<String, SourceStatus> = BTreeMap::new();
        for (name, u) in &state.providers {
            out.insert(
                name.clone(),
                SourceStatus {
                    version: u.version.clone(),
                    routes: u.routes.len(),
                    services: u.services.len(),
                    updated_at: state.updated_at.get(name).copied(),
                    ..Default::default()
                },
            );
        }
        for (name, p) in &state.problems {
            out.entry(name.clone()).or_default().problem = Some(p.clone());
        }
        for (name, e) in &state.errors {
            out.entry(name.clone()).or_default().errors = e.clone();
        }
        out
    }

    /// Rejected inputs per source since start (`tether_config_rejected_total`).
    pub fn rejected_totals(&self) -> BTreeMap<String, u64> {
        self.state
            .lock()
            .expect("control state poisoned")
            .history
            .totals()
    }

    /// Per provider, the discovery lag of the changes applied so far: from the change at the
    /// source (a container's or task's event, by the engine's clock) to its table serving.
    pub fn discovery_lag(&self) -> Vec<(String, Snapshot)> {
        let state = self.state.lock().expect("control state poisoned");
        state
            .lag
            .iter()
            .map(|(p, h)| (p.clone(), h.snapshot()))
            .collect()
    }

    /// The inputs rejected lately, newest last.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.state
            .lock()
            .expect("control state poisoned")
            .history
            .list()
    }

    pub fn entrypoints(&self) -> &[String] {
        &self.entrypoints
    }

    /// The table of these declarations, sealed with the current key, as version `version`.
    fn compile(
        &self,
        m: &Merged<'_>,
        version: String,
    ) -> Result<RoutingTable, Vec<ValidationError>> {
        let key = self.key.load();
        let input = self.input(m, &key, Some(version));
        compile(&m.services, &m.routes, input)
    }

    /// What compiling `m` needs besides its services and routes.
    fn input<'a>(
        &'a self,
        m: &'a Merged<'_>,
        key: &'a AffinityKey,
        version: Option<String>,
    ) -> CompileInput<'a> {
        CompileInput {
            entrypoints: &self.entrypoints,
            tls_ports: &self.tls_ports,
            key,
            registry: &self.registry,
            version,
            middlewares: &m.middlewares,
            secrets: self.secrets.get_or_init(Secrets::default),
            acme_resolvers: self.acme_resolvers.get().map_or(&[], Vec::as_slice),
            tcp_entrypoints: &self.tcp_entrypoints,
            tcp_routes: &m.tcp_routes,
        }
    }

    /// What the served table's routes ask ACME resolvers to order, as it changes.
    pub fn acme_wanted(&self) -> tokio::sync::watch::Receiver<Vec<tether_model::acme::Wanted>> {
        self.acme_wanted.subscribe()
    }

    /// The ACME client, for the admin API's reads; set once.
    pub fn set_acme(&self, acme: tether_acme::Acme) {
        let _ = self.acme.set(acme);
    }

    /// The ACME client, when resolvers are declared.
    pub fn acme(&self) -> Option<&tether_acme::Acme> {
        self.acme.get()
    }

    /// The ACME resolvers (`[acme.NAME]`) routes may name; set once, before the first update.
    pub fn set_acme_resolvers(&self, names: Vec<String>) {
        let _ = self.acme_resolvers.set(names);
    }

    /// Where the Docker secrets that a `basic_auth` `users_file` may name are (default
    /// `/run/secrets`); set once, before the first update.
    pub fn set_secrets_dir(&self, dir: std::path::PathBuf) {
        let _ = self.secrets.set(Secrets(dir));
    }

    /// Why the users file `f` is not in use as it is now (a change to it could not be used, and
    /// the users read before still apply); `None` when it is.
    pub fn users_file_problem(&self, f: &tether_model::middleware::UsersFile) -> Option<String> {
        self.secrets
            .get_or_init(Secrets::default)
            .users_file_problem(f)
    }

    /// The fingerprint of the sealing key (it reveals nothing of the key).
    pub fn key_fingerprint(&self) -> String {
        self.key.load().fingerprint()
    }

    /// Seal with `key` from now on: the table is compiled again with it and swapped in.
    /// Cookies sealed with the key before it are then treated as absent (new pins).
    pub fn rekey(&self, key: AffinityKey) {
        self.key.store(Arc::new(key));
        let state = self.state.lock().expect("control state poisoned");
        let m = merged(&state.providers);
        match self.compile(&m, self.store.load().version.clone()) {
            Ok(table) => {
                self.store.store(Arc::new(table));
                tracing::info!("affinity key replaced: the table is sealed with the key the replicas share");
            }
            Err(errs) => tracing::error!(errors = errs.len(), "affinity key replaced, but the table did not compile again; it takes effect at the next change"),
        }
    }

    pub fn status(&self) -> Status {
        let state = self.state.lock().expect("control state poisoned");
        let table = self.store.load();
        Status {
            version: table.version.clone(),
            applied_at: state.applied_at,
            errors: state.errors.clone(),
            routes: state.providers.values().map(|u| u.routes.len()).sum(),
            services: table.services.len(),
            swaps: state.swaps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_model::{BalanceAlgo, Rule};

    fn update(provider: &str, routes: &[&str]) -> Arc<ProviderUpdate> {
        let service = ServiceDecl {
            name: format!("{provider}-svc"),
            servers: Vec::new(),
            balance: BalanceAlgo::default(),
            affinity: None,
            resolve: None,
            health: None,
            wait: Default::default(),
            protocol: Default::default(),
        };
        let routes = routes
            .iter()
            .map(|name| RouteDecl {
                name: (*name).to_string(),
                rule: Rule::parse("PathPrefix(`/`)").unwrap().into(),
                rule_text: "PathPrefix(`/`)".into(),
                priority: 0,
                service: service.name.clone(),
                entrypoints: Vec::new(),
                max_body: None,
                redirect_https: None,
                hsts: None,
                middlewares: Vec::new(),
                tls: None,
            })
            .collect::<Vec<_>>();
        Arc::new(ProviderUpdate {
            provider: provider.into(),
            services: if routes.is_empty() {
                Vec::new()
            } else {
                vec![service]
            },
            routes,
            ..ProviderUpdate::default()
        })
    }

    fn names(routes: &[RouteDecl]) -> Vec<&str> {
        routes.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn one_declaring_provider_is_borrowed_and_several_are_merged_in_order() {
        let mut providers = BTreeMap::new();
        providers.insert("docker".to_string(), update("docker", &[]));
        providers.insert("file".to_string(), update("file", &["f1", "f2"]));
        let Merged {
            services, routes, ..
        } = merged(&providers);
        assert!(
            matches!(routes, Cow::Borrowed(_)),
            "one provider declares all"
        );
        assert_eq!(names(&routes), ["f1", "f2"]);
        assert_eq!(services.len(), 1);

        providers.insert("api".to_string(), update("api", &["a1"]));
        let Merged {
            services, routes, ..
        } = merged(&providers);
        assert!(matches!(routes, Cow::Owned(_)));
        assert_eq!(names(&routes), ["a1", "f1", "f2"], "in provider order");
        assert_eq!(services.len(), 2);

        let empty = BTreeMap::from([("docker".to_string(), update("docker", &[]))]);
        let Merged {
            services, routes, ..
        } = merged(&empty);
        assert!(services.is_empty() && routes.is_empty());
    }

    #[test]
    fn the_discovery_lag_is_counted_from_the_change_at_the_source_when_a_table_swaps() {
        let control = Control::new(
            vec!["web".into()],
            Vec::new(),
            Vec::new(),
            AffinityKey::from_secret(b"a test key of more than 32 bytes, for sealing"),
        );
        let mut u = (*update("docker", &["r1"])).clone();
        u.observed = Some(SystemTime::now() - std::time::Duration::from_millis(40));
        control.apply(u.clone()).unwrap();
        // The same state again swaps nothing, so counts nothing; a file's update (no time) neither.
        control.apply(u).unwrap();
        control.apply((*update("file", &["f1"])).clone()).unwrap();
        let lag = control.discovery_lag();
        assert_eq!(lag.len(), 1, "{lag:?}");
        let (source, s) = &lag[0];
        assert_eq!(source, "docker");
        assert_eq!(s.count(), 1);
        assert!(s.sum_us >= 40_000 && s.sum_us < 5_000_000, "{}", s.sum_us);
    }
}

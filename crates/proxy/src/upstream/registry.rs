//! Live servers that outlive routing tables: a server declared in two successive tables keeps its
//! connection pool and state (in-flight count, drain, health), so a reload costs no connections.

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

use tether_balance::ServerState;
use tether_model::{ServerAddr, ServerTls};

use crate::stats::{RoutePlan, ServerStats, ServiceStats};
use crate::upstream::pool::Pool;
use crate::upstream::tls::{Connector, TlsConfigError};

/// A server of a service, as the data plane uses it.
#[derive(Debug)]
pub struct Backend {
    pub name: Arc<str>,
    pub addr: ServerAddr,
    pub state: Arc<ServerState>,
    pub pool: Pool,
    /// Its counters ([`crate::stats`]).
    pub stats: ServerStats,
}

type Key = (String, String, ServerAddr, Option<ServerTls>);

/// Backends by (service, server name, address).
#[derive(Debug, Default)]
pub struct Registry {
    live: Mutex<HashMap<Key, Arc<Backend>>>,
    /// Each service's counters, kept while the service is in the table.
    services: Mutex<HashMap<String, Arc<ServiceStats>>>,
    /// How often each route's middlewares answered themselves, kept across tables.
    pub middleware_answers: crate::middleware::Counters,
}

impl Registry {
    /// Start a new generation: returns a builder that reuses live backends and, when finished,
    /// forgets the ones the new table no longer names.
    pub fn generation(&self) -> Generation<'_> {
        Generation {
            registry: self,
            next: HashMap::default(),
            services: HashMap::default(),
            routes: Vec::new(),
        }
    }

    /// All live backends (for status displays).
    pub fn snapshot(&self) -> Vec<(String, Arc<Backend>)> {
        let live = self.live.lock().expect("registry poisoned");
        live.iter().map(|(k, b)| (k.0.clone(), b.clone())).collect()
    }
}

/// Backends collected for one table under construction.
pub struct Generation<'a> {
    registry: &'a Registry,
    next: HashMap<Key, Arc<Backend>>,
    services: HashMap<String, Arc<ServiceStats>>,
    /// Route slots per service, applied at commit.
    routes: Vec<(Arc<ServiceStats>, RoutePlan)>,
}

impl Generation<'_> {
    /// The backend of server `name` of `service` at `addr` (over TLS as `tls` says): the live
    /// one if the last table had it, else a new one. Fails only when its TLS cannot be set up.
    pub fn backend(
        &mut self,
        service: &str,
        name: &str,
        addr: &ServerAddr,
        tls: Option<&ServerTls>,
    ) -> Result<Arc<Backend>, TlsConfigError> {
        let key = (
            service.to_string(),
            name.to_string(),
            addr.clone(),
            tls.cloned(),
        );
        if let Some(b) = self.next.get(&key) {
            return Ok(b.clone());
        }
        let existing = self
            .registry
            .live
            .lock()
            .expect("registry poisoned")
            .get(&key)
            .cloned();
        let b = match existing {
            Some(b) => b,
            None => {
                let connector = tls.map(Connector::new).transpose()?;
                if tls.is_some_and(|t| t.insecure_skip_verify) {
                    tracing::warn!(%service, server = %name, %addr, "TLS to this server is not verified (insecure_skip_verify): any certificate is taken");
                }
                Arc::new(Backend {
                    name: name.into(),
                    addr: addr.clone(),
                    state: Arc::default(),
                    pool: Pool::new(addr.clone(), connector),
                    stats: ServerStats::default(),
                })
            }
        };
        self.next.insert(key, b.clone());
        Ok(b)
    }

    /// The counters of service `name`: the live ones if it was in the last table.
    pub fn service_stats(&mut self, name: &str) -> Arc<ServiceStats> {
        if let Some(s) = self.services.get(name) {
            return s.clone();
        }
        let existing = self
            .registry
            .services
            .lock()
            .expect("registry poisoned")
            .get(name)
            .cloned();
        let s = existing.unwrap_or_else(|| Arc::new(ServiceStats::new(name)));
        self.services.insert(name.to_string(), s.clone());
        s
    }

    /// The counter slots of `routes`, the routes of the service whose counters are `stats`.
    pub fn route_slots(&mut self, stats: &Arc<ServiceStats>, routes: &[&str]) -> Vec<u8> {
        let (plan, slots) = stats.routes.plan(routes);
        self.routes.push((stats.clone(), plan));
        slots
    }

    /// Make this generation the live one.
    pub fn commit(self) {
        for (stats, plan) in self.routes {
            stats.routes.commit(plan);
        }
        *self.registry.live.lock().expect("registry poisoned") = self.next;
        *self.registry.services.lock().expect("registry poisoned") = self.services;
    }
}

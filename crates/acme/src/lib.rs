//! Automatic HTTPS: certificates ordered from an ACME CA (RFC 8555) for the names routes ask
//! for (`tls = { resolver, domains }`), kept in a store, renewed before they expire, and served
//! from the TLS entrypoints' certificate store beside those of files, the API and labels.
//!
//! - `client`: the HTTPS client to the CA (its roots);
//! - [`store`]: where accounts, certificates, challenge answers and order locks are kept;
//! - [`order`]: one order, start to end, with `instant-acme`;
//! - [`manager`]: the loop that decides what to order and when (renewal, backoff, rate limit);
//! - [`status`]: what `/api/certificates`, the stats page and `/metrics` show of it.
//!
//! The protocol is `instant-acme`'s, the keys and CSRs `rcgen`'s: nothing of ACME is written
//! here but the policy around it.

mod client;
pub mod manager;
pub mod order;
pub mod status;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tether_model::acme::{AcmeResolver, Wanted};
use tether_proxy::front::tls::certs::CertStore;
use tokio::sync::watch;

pub use status::{CertState, Orders, State};
pub use store::{DirStore, Store};

/// A running ACME client: its status, read by the admin API and `/metrics`.
#[derive(Debug, Clone)]
pub struct Acme {
    status: Arc<Mutex<BTreeMap<String, CertState>>>,
    orders: Arc<Orders>,
    resolvers: Vec<String>,
    store: String,
}

impl Acme {
    /// Start ordering what `wanted` asks of `resolvers`, keeping state in `store` and serving
    /// from `certs`. Runs until `wanted`'s sender is dropped.
    pub fn start(
        resolvers: Vec<AcmeResolver>,
        store: Store,
        certs: Arc<CertStore>,
        wanted: watch::Receiver<Vec<Wanted>>,
    ) -> Acme {
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let orders = Arc::new(Orders::default());
        let acme = Acme {
            status: status.clone(),
            orders: orders.clone(),
            resolvers: resolvers.iter().map(|r| r.name.clone()).collect(),
            store: store.describe(),
        };
        let manager = manager::Manager::new(resolvers, Arc::new(store), certs, status, orders);
        tokio::spawn(manager.run(wanted));
        acme
    }

    /// Every certificate routes ask for, by id.
    pub fn certificates(&self) -> Vec<CertState> {
        self.status
            .lock()
            .expect("ACME status poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Orders placed, by (resolver, result).
    pub fn orders(&self) -> BTreeMap<(String, String), u64> {
        self.orders.totals()
    }

    /// The resolvers' names.
    pub fn resolvers(&self) -> &[String] {
        &self.resolvers
    }

    /// Where the state is kept.
    pub fn store(&self) -> &str {
        &self.store
    }
}

//! Tether's data plane. It reads one immutable [`RoutingTable`] per request (one `ArcSwap` load,
//! no lock) and never knows where the configuration came from. Its folders follow a request:
//!
//! - [`front`]: accept, sniff HTTP/1.1 or h2c, Tether's own HTTP/1.1 server for the client
//!   connection (hyper takes h2c and what `front` hands over);
//! - [`handler`]: one request start to end, reading [`route`] (the table, host and path matching,
//!   the session pin) and sending through [`upstream`] (backends, pools, the exchange with a
//!   server, bodies, upgrades), the response built by [`answer`];
//! - [`http1`]: the HTTP/1 codec (fields, response heads, chunked), which imports nothing else here.
//!
//! TCP routers take connections rather than requests: [`tcp`] (choosing a router, the
//! ClientHello peek for passthrough, the byte pipe that WebSocket tunnels share).
//!
//! Beside them: [`acme`] (the answers to pending ACME challenges), [`headers`] (hop-by-hop and forwarding fields), [`request`] (a request's head
//! wherever it was parsed), `idle` (each client connection's watchdog), [`health`] (active
//! checks), `admit` (connections per client), [`stats`] (counters and the access log, bumped
//! once at each request's end), [`worker`] (which serving worker a thread is).

pub mod acme;
mod admit;
pub mod answer;
pub mod edit;
pub mod front;
pub mod handler;
pub mod headers;
pub mod health;
pub mod http1;
mod idle;
pub mod middleware;
pub mod proxy_protocol;
pub mod request;
pub mod route;
pub mod stats;
pub mod tcp;
pub mod upstream;
pub mod worker;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tether_model::file_config::{Cidr, Limits, Timeouts};

pub use admit::Admission;
pub use front::server::{serve, Listener};
pub use route::table::{compile, RoutingTable};
pub use route::{router, table};
pub use upstream::registry::{self, Registry};

/// Where the live table is published; the control plane stores, the data plane loads.
pub type TableStore = Arc<ArcSwap<RoutingTable>>;

/// Settings fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub timeouts: Timeouts,
    pub trusted_proxies: Vec<Cidr>,
    /// Merge `//` into `/` in request paths ([`route::path`]).
    pub merge_slashes: bool,
    pub limits: Limits,
    /// The access log, when one is on.
    pub access_log: Option<Arc<upstream::meter::AccessLog>>,
    /// Open connections per entrypoint, in the listeners' order (read by `/metrics`).
    pub entrypoints: Arc<[stats::EntrypointStats]>,
    /// The stats page on traffic entrypoints (`[stats] path`), when mounted.
    pub stats_page: Option<stats::StatsMount>,
    /// How TCP connections and WebSocket tunnels are piped.
    pub pipe: tcp::pipe::PipeConfig,
    /// How long a client has to send its whole ClientHello where routers read it
    /// (`[tcp] hello_timeout`).
    pub hello_timeout: std::time::Duration,
    /// Pending ACME challenges, answered before routing (`[acme]` resolvers declared).
    pub acme: Option<Arc<acme::Challenges>>,
}

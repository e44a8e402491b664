//! Tether's data plane. It reads one immutable [`RoutingTable`] per request (one `ArcSwap` load,
//! no lock) and never knows where the configuration came from.
//!
//! Request path: [`server`] accepts; [`front`] (Tether's own HTTP/1.1 server) takes ordinary
//! HTTP/1.1 requests and hands the rest, and h2c, to hyper → [`handler`] matches a route
//! ([`router`]), reads the session pin ([`sticky`]), picks a server ([`tether_balance`]), rewrites
//! headers ([`headers`]) → [`upstream`] sends it over a pooled connection ([`pool`]), retrying a
//! refused connect on another server → the response streams back ([`body`]) with the affinity
//! cookie. WebSocket upgrades take [`upgrade`]. [`host`] reads the request's host in place.

mod admit;
pub mod answer;
pub mod body;
pub mod fields;
pub mod front;
pub mod handler;
pub mod headers;
pub mod health;
pub mod host;
mod idle;
pub mod pace;
pub mod path;
pub mod pool;
pub mod registry;
pub mod request;
pub mod retry;
pub mod router;
pub mod server;
pub mod sniff;
mod spare;
pub mod sticky;
pub mod table;
mod upgrade;
pub mod upstream;
pub mod wire;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tether_model::file_config::{Cidr, Limits, Timeouts};

pub use registry::Registry;
pub use server::{serve, Listener};
pub use table::{compile, RoutingTable};

/// Where the live table is published; the control plane stores, the data plane loads.
pub type TableStore = Arc<ArcSwap<RoutingTable>>;

/// Settings fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    pub timeouts: Timeouts,
    pub trusted_proxies: Vec<Cidr>,
    /// Merge `//` into `/` in request paths ([`path`]).
    pub merge_slashes: bool,
    pub limits: Limits,
}

//! One TCP connection, its router chosen: a server of the router's service is picked (by its
//! balancer; `consistent_hash` on the client's address keeps a client on one server), connected
//! to within `timeouts.connect` (another server is tried while no byte has been sent), and the
//! two are piped ([`crate::tcp::pipe`]) until both close, the idle timeout, or the end of the
//! drain period at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use tether_balance::PickInput;
use tether_model::{HashOn, ServiceProtocol};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::route::table::RoutingTable;
use crate::tcp::pipe::{pipe, PipeConfig, Piped};
use crate::tcp::router::TcpRoute;
use crate::upstream::pool::Dial;

/// What forwarding one connection needs besides the connection.
pub struct Forward<'a> {
    pub table: &'a RoutingTable,
    pub route: &'a TcpRoute,
    /// The client's address (the peer's, or what the PROXY protocol said).
    pub client: SocketAddr,
    /// The address the client connected to, for a PROXY protocol header to the server: an
    /// incoming header's; `None`: the client's socket's own, read only when a header is sent.
    pub destination: Option<SocketAddr>,
    pub dial: Dial,
    pub pipe: PipeConfig,
}

/// How a forwarded connection went.
#[derive(Debug)]
pub enum Outcome {
    /// Piped to this server.
    Piped {
        server: std::sync::Arc<str>,
        piped: Piped,
    },
    /// No server could be connected to (each was tried once); the client's connection was closed.
    NoServer { tried: usize },
}

/// Forward `client` as `f` says; `shutdown` resolves when the drain period after a shutdown
/// request has passed, which cuts a pipe still open.
pub async fn forward(
    mut client: TcpStream,
    f: Forward<'_>,
    shutdown: impl Future<Output = ()>,
) -> Outcome {
    let svc = &f.table.services[f.route.service];
    let key = match svc.hash_on {
        Some(HashOn::ClientIp) => Some(ip_key(f.client.ip())),
        _ => None,
    };
    let mut tried = Vec::new();
    let (idx, mut server) = loop {
        let picked = svc.balancer.pick(PickInput {
            hash_key: key.as_deref(),
            exclude: &tried,
        });
        let Some(idx) = picked else {
            return Outcome::NoServer { tried: tried.len() };
        };
        let backend = &svc.backends[idx];
        match backend.pool.open(f.dial).await {
            Ok(s) => {
                backend.state.mark_ok();
                break (idx, s);
            }
            Err(e) => {
                backend.state.mark_failed();
                backend.stats.traffic.count_connect_error();
                svc.stats.traffic.count_connect_error();
                tracing::debug!(router = %f.route.name, server = %backend.name, error = %e, "TCP: connect failed; trying another server");
                tried.push(idx);
            }
        }
    };
    let backend = &svc.backends[idx];
    let _open = backend.state.start_request();
    let _active = Active::new(&svc.stats);
    backend.stats.traffic.count_connection();
    svc.stats.traffic.count_connection();
    if let ServiceProtocol::Tcp {
        proxy_protocol: Some(v),
    } = svc.protocol
    {
        let to = f
            .destination
            .or_else(|| client.local_addr().ok())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let header = crate::proxy_protocol::encode(v, f.client, to);
        if let Err(e) = server.write_all(&header).await {
            tracing::debug!(router = %f.route.name, server = %backend.name, error = %e, "TCP: the PROXY protocol header could not be sent");
            return Outcome::Piped {
                server: backend.name.clone(),
                piped: Piped {
                    up: 0,
                    down: 0,
                    end: crate::tcp::pipe::End::ServerError,
                },
            };
        }
    }
    let tally = |up: u64, down: u64| {
        backend.stats.traffic.add_bytes(up, down);
        svc.stats.traffic.add_bytes(up, down);
    };
    let piped = pipe(&mut client, &mut server, f.pipe, shutdown, tally).await;
    Outcome::Piped {
        server: backend.name.clone(),
        piped,
    }
}

/// One open connection of a service, counted while it lives.
struct Active<'a>(&'a crate::stats::ServiceStats);

impl<'a> Active<'a> {
    fn new(s: &'a crate::stats::ServiceStats) -> Active<'a> {
        s.active.fetch_add(1, Relaxed);
        Active(s)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// The bytes of an address, as consistent hashing reads them (the same as for HTTP).
fn ip_key(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

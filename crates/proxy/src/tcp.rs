//! TCP routing: connections rather than requests. A `protocol = "tcp"` entrypoint hands each
//! connection to its TCP routers ([`router`]); a TLS entrypoint with passthrough routers reads
//! each ClientHello first ([`hello`], peeked, never taken) and passes a connection whose server
//! name a passthrough router matches through undecrypted, terminating every other one as HTTP.
//! A chosen connection is joined to a server of the router's TCP service ([`forward`]) by the
//! byte pipe ([`pipe`]), which the WebSocket upgrade shares. A router whose service has no
//! server holds the connection up to the service's `wait_for_server`, as an HTTP request waits
//! ([`choose_waiting`]): a TCP service keeps its routers through a rolling update.

pub mod check;
pub mod forward;
pub mod hello;
pub mod peek;
pub mod pipe;
pub mod router;

use std::net::SocketAddr;
use std::sync::Arc;

use tether_model::ConnView;
use tokio::net::TcpStream;

use crate::route::table::RoutingTable;
use hello::PeekError;
use router::TcpRoute;

/// What a connection on an entrypoint with TCP routers is given to.
pub enum Chosen {
    /// This TCP router, of this table.
    Router(Arc<RoutingTable>, Arc<TcpRoute>),
    /// Tether's own TLS termination and HTTP (a TLS entrypoint's other connections).
    Http,
    /// Nothing: the connection is closed (no router matches, or its ClientHello is refused).
    Close(String),
}

/// Choose where a connection on entrypoint `ep` goes. `http`: the entrypoint serves HTTP too,
/// so a connection that no passthrough router takes is Tether's. A ClientHello, when the
/// routers need one, must be whole within `hello_timeout`.
pub async fn choose(
    stream: &TcpStream,
    ep: usize,
    client: SocketAddr,
    table: Arc<RoutingTable>,
    http: bool,
    hello_timeout: std::time::Duration,
) -> Chosen {
    let Some(router) = table.tcp.get(ep).filter(|r| !r.is_empty()) else {
        return if http {
            Chosen::Http
        } else {
            Chosen::Close("no TCP router on this entrypoint".into())
        };
    };
    let sni = if router.reads_hello() {
        match hello::peek(stream, hello_timeout).await {
            // A CA validating TLS-ALPN-01 (`acme-tls/1` alone) gets Tether's validation
            // certificate, or no handshake: never a passthrough server.
            Ok(h) if http && h.is_acme_challenge() => return Chosen::Http,
            Ok(h) => h.sni,
            // Plain bytes: a plain TCP router may still take them, else HTTP's TLS refuses them.
            Err(PeekError::NotTls) => None,
            Err(e) => return Chosen::Close(format!("ClientHello: {e}")),
        }
    } else {
        None
    };
    let view = ConnView {
        sni: sni.as_deref(),
        client: client.ip(),
    };
    let picked = router.pick(&view).cloned();
    match picked {
        Some(route) => Chosen::Router(table, route),
        None if http => Chosen::Http,
        None => Chosen::Close(match sni {
            Some(n) => format!("no TCP router matches server name {n:?}"),
            None => "no TCP router matches".into(),
        }),
    }
}

/// [`choose`] on the table of the moment. A router whose service has no server waits for one
/// (the service's `wait_for_server` and `wait_queue`, woken by the table or the health check
/// that brings it), and the connection is then chosen again on that table, its ClientHello
/// peeked again. Past the wait, the router first chosen is given, to be closed as having no
/// server (and logged so).
pub async fn choose_waiting(
    stream: &TcpStream,
    ep: usize,
    client: SocketAddr,
    store: &crate::TableStore,
    http: bool,
    hello_timeout: std::time::Duration,
) -> Chosen {
    let chosen = choose(stream, ep, client, store.load_full(), http, hello_timeout).await;
    let Chosen::Router(table, route) = &chosen else {
        return chosen;
    };
    let svc = &table.services[route.service];
    if svc.has_server() {
        return chosen;
    }
    let (stats, wait, name) = (svc.stats.clone(), svc.wait, route.name.clone());
    // Ready: the router of that name leads to a service with a server again, or is gone.
    let ready = |t: &RoutingTable| {
        let now = t
            .tcp
            .get(ep)
            .and_then(|r| r.routes().iter().find(|x| x.name == name));
        now.is_none_or(|r| t.services[r.service].has_server())
    };
    match crate::handler::wait::until(store, &stats, wait, ready).await {
        Some(t) => choose(stream, ep, client, t, http, hello_timeout).await,
        None => chosen,
    }
}

//! TCP routing: connections rather than requests. A `protocol = "tcp"` entrypoint hands each
//! connection to its TCP routers ([`router`]); a TLS entrypoint with passthrough routers reads
//! each ClientHello first ([`hello`], peeked, never taken) and passes a connection whose server
//! name a passthrough router matches through undecrypted, terminating every other one as HTTP.
//! A chosen connection is joined to a server of the router's TCP service ([`forward`]) by the
//! byte pipe ([`pipe`]), which the WebSocket upgrade shares.

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

//! Listeners and client connections: HTTP/1.1 with keep-alive (Tether's own server,
//! [`crate::front`], handing what it does not take to hyper's) and h2c (prior knowledge, hyper) on
//! the same port, or over TLS ([`crate::front::tls`]) with ALPN choosing h2 or HTTP/1.1;
//! request-header and idle timeouts (the TLS handshake is under the first); graceful shutdown
//! (stop accepting, let requests in flight finish within the drain period).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use crate::front::conn::{Ended, Front};
use crate::front::sniff::{sniff, Protocol};
use crate::front::stream::{ClientStream, Tracked};
use crate::handler::{self, Shared};
use crate::idle::{Activity, Ending, Watchdog};
use crate::proxy_protocol::Addresses;
use crate::tcp::forward::Outcome;
use crate::tcp::Chosen;
use crate::{ProxyConfig, TableStore};

/// How often a draining connection is checked for having gone idle.
const DRAIN_CHECK: Duration = Duration::from_millis(20);
/// How long a kept-alive HTTP/1.1 connection stays open, idle, once shutdown began: a client
/// that sends its next request meanwhile gets it answered, with `Connection: close`, instead of
/// finding its connection closed under it (it would see an error, or retry). An h2 connection
/// whose request has not begun yet waits as long before its GOAWAY ([`Watch::drive`]).
const LAST_REQUEST: Duration = Duration::from_millis(500);

/// A bound entrypoint's socket (an entrypoint may have several: one per worker, or those a
/// predecessor handed over).
pub struct Listener {
    pub name: String,
    /// The entrypoint's index: the table's router `ep` serves it.
    pub ep: usize,
    pub listener: TcpListener,
    /// Terminate TLS on it ([`crate::front::tls::acceptor`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// It takes TCP routers only (`protocol = "tcp"`): its connections go to [`crate::tcp`].
    pub tcp: bool,
    /// Its peers send a PROXY protocol header first ([`crate::proxy_protocol`]).
    pub proxy_protocol: Option<crate::proxy_protocol::AcceptProxy>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("ep", &self.ep)
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("tcp", &self.tcp)
            .field("proxy_protocol", &self.proxy_protocol)
            .finish()
    }
}

/// Serve every listener until `shutdown` turns true, then drain for at most `drain`.
/// A listener serves the routes of the table's router [`Listener::ep`]. Connections per client
/// are counted in `admit`, which every worker shares.
pub async fn serve(
    listeners: Vec<Listener>,
    store: TableStore,
    cfg: ProxyConfig,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
    admit: crate::admit::Admission,
) {
    let shared = Arc::new(Shared { store, cfg });
    let mut h1 = http1::Builder::new();
    h1.keep_alive(true)
        .max_buf_size(shared.cfg.limits.head.max(8192))
        .max_headers(shared.cfg.limits.headers)
        .header_read_timeout(None)
        .writev(false);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.max_concurrent_streams(256)
        .max_header_list_size(shared.cfg.limits.head as u32);
    let t = shared.cfg.timeouts;
    let dog = Watchdog::new(t.request_header, t.idle, t.upstream_response);
    let sweeping = tokio::spawn(dog.clone().run());
    // Shutdown reaches every connection through the watchdog: one watch of the channel in all.
    let stopping = tokio::spawn({
        let dog = dog.clone();
        let mut shutdown = shutdown.clone();
        async move {
            stopped(&mut shutdown).await;
            dog.stop();
        }
    });
    let conns = Arc::new(Conns {
        shared,
        builders: Builders { h1, h2 },
        dog,
        drain,
        tracker: TaskTracker::new(),
        admit,
        shutdown: shutdown.clone(),
    });
    let mut tasks = JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(l.ep, l, conns.clone(), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    conns.tracker.close();
    conns.tracker.wait().await;
    stopping.abort();
    sweeping.abort();
}

/// What every client connection of a server shares.
struct Conns {
    shared: Arc<Shared>,
    builders: Builders,
    dog: Arc<Watchdog>,
    drain: Duration,
    /// The connections' tasks, waited for at shutdown.
    tracker: TaskTracker,
    /// Connections per client address, when they are limited.
    admit: crate::admit::Admission,
    /// Turns true at shutdown: piped TCP connections end a drain period later.
    shutdown: watch::Receiver<bool>,
}

impl Conns {
    /// Resolves a drain period after shutdown began.
    fn drained(&self) -> impl Future<Output = ()> + use<> {
        let mut rx = self.shutdown.clone();
        let drain = self.drain;
        async move {
            stopped(&mut rx).await;
            tokio::time::sleep(drain).await;
        }
    }
}

/// Accept connections on `l` until shutdown.
async fn accept_loop(
    ep: usize,
    l: Listener,
    conns: Arc<Conns>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = stopped(&mut shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = l.listener.accept() => match accepted {
                Ok((stream, peer)) if l.proxy_protocol.is_some() => {
                    let pp = l.proxy_protocol.clone().expect("checked");
                    conns.tracker.spawn(proxied(ep, stream, peer, pp, l.tls.clone(), l.tcp, conns.clone()));
                }
                Ok((stream, peer)) => match conns.admit.admit(peer.ip()) {
                    Some(admitted) if l.tcp => {
                        let addrs = Addresses { client: peer, destination: None };
                        conns.tracker.spawn(tcp_connection(ep, stream, addrs, conns.clone(), admitted));
                    }
                    Some(admitted) => {
                        let tls = l.tls.clone();
                        // The destination is read only if a server is sent a PROXY header.
                        let addrs = Addresses { client: peer, destination: None };
                        conns.tracker.spawn(connection(ep, stream, tls, addrs, conns.clone(), admitted));
                    }
                    // A TCP client is closed; an HTTP one is told why.
                    None if l.tcp => drop(stream),
                    None => {
                        conns.tracker.spawn(crate::admit::refuse(stream));
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(entrypoint = %l.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A connection on an HTTP entrypoint: to a TLS passthrough router its ClientHello names, or
/// served as HTTP. `addrs.destination` is a PROXY protocol header's, if one came.
async fn connection(
    ep: usize,
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    addrs: Addresses,
    conns: Arc<Conns>,
    _admitted: crate::admit::Admitted,
) {
    let peer = addrs.client;
    let shared = conns.shared.clone();
    let _open = shared.cfg.entrypoints.get(ep).map(|e| e.opened());
    if tls.is_some() {
        // Passthrough routers on this entrypoint read the ClientHello first.
        let table = shared.store.load_full();
        if table.tcp.get(ep).is_some_and(|r| !r.is_empty()) {
            let chosen = crate::tcp::choose_waiting(
                &stream,
                ep,
                peer,
                &shared.store,
                true,
                shared.cfg.hello_timeout,
            );
            match chosen.await {
                Chosen::Http => {}
                Chosen::Router(table, route) => {
                    let addrs = Addresses {
                        client: peer,
                        destination: addrs.destination,
                    };
                    return Box::pin(piped(stream, addrs, &table, &route, &conns)).await;
                }
                Chosen::Close(why) => {
                    tracing::debug!(%peer, entrypoint = ep, "TCP: closed: {why}");
                    return;
                }
            }
        }
    }
    let activity = Activity::new();
    conns.dog.watch(&activity);
    let https = tls.is_some();
    let (stream, alpn_h2) = match tls {
        None => (ClientStream::Plain(stream), false),
        // Boxed: only TLS connections pay for the handshake's state.
        Some(acceptor) => match Box::pin(handshake(acceptor, stream, &activity)).await {
            Some(s) => s,
            None => return,
        },
    };
    let mut io = Tracked::new(stream, activity.clone());
    // The first read tells HTTP/1.1 from h2c (unless ALPN said h2); it is under the
    // request-header timeout like the rest.
    let first = if alpn_h2 {
        (Protocol::H2, bytes::BytesMut::new())
    } else {
        match before_ending(&activity, sniff(&mut io)).await {
            Some(Ok(Some(first))) => first,
            _ => return,
        }
    };
    let (protocol, first) = first;
    let peer = crate::headers::Peer::on(peer, &shared.cfg.trusted_proxies, https);
    let watch = Watch {
        activity: &activity,
        drain: conns.drain,
    };
    let rest = match protocol {
        Protocol::Http1 => {
            let front = Front {
                shared: &shared,
                ep,
                peer: &peer,
                activity: &activity,
            };
            // Boxed: the task's future is then small (it is copied several times as the task is
            // spawned), and this one is made once the first bytes are in.
            let ended = watch
                .drive_front(Box::pin(front.serve(&mut io, first)))
                .await;
            match ended {
                Some(Ended::Handoff(rest)) => rest,
                _ => {
                    io.close().await;
                    return;
                }
            }
        }
        Protocol::H2 => first.freeze(),
    };
    io.replay(rest);
    // Boxed: hyper's connection state is large, and a connection `front` serves never needs it,
    // so it takes no room in every connection's task.
    // Shared only with hyper's service, so only here put behind a reference count.
    Box::pin(serve_hyper(protocol, io, ep, Arc::new(peer), &conns, watch)).await;
}

/// A connection on an entrypoint whose peers send a PROXY protocol header: the header read (the
/// connection closed if it may not send one, or sends a bad one), then served as any other,
/// from the header's client.
async fn proxied(
    ep: usize,
    mut stream: TcpStream,
    peer: SocketAddr,
    pp: crate::proxy_protocol::AcceptProxy,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tcp: bool,
    conns: Arc<Conns>,
) {
    let addrs = match crate::proxy_protocol::accept(&mut stream, peer, &pp).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%peer, entrypoint = ep, "PROXY protocol: closed: {e}");
            return;
        }
    };
    match conns.admit.admit(addrs.client.ip()) {
        Some(admitted) if tcp => tcp_connection(ep, stream, addrs, conns, admitted).await,
        Some(admitted) => connection(ep, stream, tls, addrs, conns, admitted).await,
        None if tcp => {}
        None => crate::admit::refuse(stream).await,
    }
}

/// A connection on a TCP entrypoint: to the TCP router it matches, or closed.
async fn tcp_connection(
    ep: usize,
    stream: TcpStream,
    addrs: Addresses,
    conns: Arc<Conns>,
    _admitted: crate::admit::Admitted,
) {
    let _open = conns.shared.cfg.entrypoints.get(ep).map(|e| e.opened());
    let peer = addrs.client;
    match crate::tcp::choose_waiting(
        &stream,
        ep,
        peer,
        &conns.shared.store,
        false,
        conns.shared.cfg.hello_timeout,
    )
    .await
    {
        Chosen::Router(table, route) => piped(stream, addrs, &table, &route, &conns).await,
        Chosen::Http => {}
        Chosen::Close(why) => tracing::debug!(%peer, entrypoint = ep, "TCP: closed: {why}"),
    }
}

/// Pipe a connection to a server of `route`'s service.
async fn piped(
    stream: TcpStream,
    addrs: Addresses,
    table: &crate::route::table::RoutingTable,
    route: &crate::tcp::router::TcpRoute,
    conns: &Conns,
) {
    let cfg = &conns.shared.cfg;
    let peer = addrs.client;
    let f = crate::tcp::forward::Forward {
        table,
        route,
        client: peer,
        destination: addrs.destination,
        dial: crate::upstream::pool::Dial::of(&cfg.timeouts),
        pipe: cfg.pipe,
    };
    let started = std::time::Instant::now();
    let outcome = crate::tcp::forward::forward(stream, f, conns.drained()).await;
    let service = &table.services[route.service].name;
    let (server, piped) = match &outcome {
        Outcome::Piped { server, piped } => {
            tracing::debug!(%peer, router = %route.name, %server, up = piped.up, down = piped.down, end = piped.end.as_str(), "TCP connection ended");
            (Some(&**server), Some(*piped))
        }
        Outcome::NoServer { tried } => {
            tracing::warn!(%peer, router = %route.name, tried, "TCP: no server of service {service} could be reached: connection closed");
            (None, None)
        }
    };
    if let Some(log) = &cfg.access_log {
        log.connection(&crate::upstream::meter::ConnectionLine {
            client: peer,
            router: &route.name,
            service,
            server,
            duration: started.elapsed(),
            bytes_in: piped.map_or(0, |p| p.up),
            bytes_out: piped.map_or(0, |p| p.down),
            end: piped.map_or("no server", |p| p.end.as_str()),
        });
    }
}

/// The TLS handshake, under the request-header timeout; the stream and whether ALPN chose h2,
/// or `None` if it failed (logged at debug: a scanner's or an old client's failures are routine).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    activity: &Activity,
) -> Option<(ClientStream, bool)> {
    let peer = stream.peer_addr().ok();
    let tls = match before_ending(activity, acceptor.accept(stream)).await? {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            return None;
        }
    };
    let alpn = tls.get_ref().1.alpn_protocol();
    if super::tls::is_acme_validation(alpn) {
        // The CA has seen the validation certificate: nothing more is said on this connection.
        let mut tls = tls;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        return None;
    }
    let h2 = alpn == Some(b"h2");
    Some((ClientStream::Tls(Box::new(tls)), h2))
}

/// Serve the rest of the connection with hyper (h2c, or HTTP/1.1 that `front` handed over).
async fn serve_hyper(
    protocol: Protocol,
    io: Tracked,
    ep: usize,
    peer: Arc<crate::headers::Peer>,
    conns: &Conns,
    watch: Watch<'_>,
) {
    let io = TokioIo::new(io);
    let act = Arc::clone(watch.activity);
    let shared = conns.shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let busy = act.begin();
        let shared = shared.clone();
        let peer = peer.clone();
        async move {
            let req = req.map(crate::upstream::body::ClientBody::Streamed);
            let mut resp = handler::handle_request(&shared, ep, &peer, req)
                .await
                .into_response();
            resp.body_mut().attach(Box::new(busy));
            Ok::<_, Infallible>(resp)
        }
    });
    match protocol {
        Protocol::Http1 => {
            let conn = conns.builders.h1.serve_connection(io, svc).with_upgrades();
            watch.drive(conn, |c| c.graceful_shutdown()).await;
        }
        Protocol::H2 => {
            let conn = conns.builders.h2.serve_connection(io, svc);
            watch.drive(conn, |c| c.graceful_shutdown()).await;
        }
    }
}

/// The protocol builders every connection shares.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// What ends a client connection besides its own end: a timeout, or shutdown (after a drain).
struct Watch<'a> {
    activity: &'a Arc<Activity>,
    drain: Duration,
}

impl Watch<'_> {
    /// Run Tether's own HTTP/1.1 server on the connection. At shutdown a request under way
    /// finishes (its response says `connection: close`) within the drain period, and so does
    /// one that arrives on an idle connection within [`LAST_REQUEST`]; a connection idle that
    /// long is closed. `None` if the connection was closed from here.
    async fn drive_front<C: Future>(&self, conn: C) -> Option<C::Output> {
        tokio::pin!(conn);
        // Biased, the connection first: no random draw per wake-up, and a response that is
        // ready goes out before a signal is looked at.
        tokio::select! {
            biased;
            out = conn.as_mut() => return Some(out),
            ending = self.activity.ending() => if ending == Ending::Expired {
                return None;
            },
        }
        // Boxed: only at shutdown, and its timers would take room in every connection's task.
        Box::pin(self.drain_front(conn.as_mut())).await
    }

    /// Let a request under way finish within the drain period, after shutdown was asked for.
    async fn drain_front<C: Future>(&self, mut conn: Pin<&mut C>) -> Option<C::Output> {
        let deadline = tokio::time::Instant::now() + self.drain;
        let mut idle_since = None;
        loop {
            if self.activity.is_idle() {
                let now = tokio::time::Instant::now();
                if now.duration_since(*idle_since.get_or_insert(now)) >= LAST_REQUEST {
                    return None;
                }
            } else {
                idle_since = None;
            }
            tokio::select! {
                out = conn.as_mut() => return Some(out),
                _ = tokio::time::sleep(DRAIN_CHECK) => {}
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    /// Run a hyper connection (h2c, or HTTP/1.1 that `front` handed over). At shutdown it is
    /// told to end (`graceful`: h2's GOAWAY) and has the drain period to finish.
    ///
    /// A connection whose request is being read and has not begun yet (one accepted just
    /// before, or one that was idle until bytes came) is told only once a request has begun,
    /// or after [`LAST_REQUEST`]: an h2 client queues its first request before it reads the
    /// server's frames, and one that reads a GOAWAY first refuses the request itself without
    /// sending it. RFC 9113 §6.8 lets it send it again on a new connection, but hyper's client
    /// gives it back as an error.
    async fn drive<C: Future>(self, conn: C, graceful: impl FnOnce(Pin<&mut C>)) {
        tokio::pin!(conn);
        tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            ending = self.activity.ending() => if ending == Ending::Expired {
                return;
            },
        }
        let deadline = tokio::time::Instant::now() + self.drain;
        let last = tokio::time::Instant::now() + LAST_REQUEST.min(self.drain);
        while self.activity.awaits_request() && tokio::time::Instant::now() < last {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(DRAIN_CHECK) => {}
            }
        }
        graceful(conn.as_mut());
        let _ = tokio::time::timeout_at(deadline, conn).await;
    }
}

/// `fut` (a new connection's handshake or first bytes), unless the connection expires first (the
/// request-header timeout). A connection accepted just before shutdown began gets
/// [`LAST_REQUEST`] more, so that its request is answered (with `Connection: close`) rather than
/// its connection closed unread.
async fn before_ending<F: Future>(activity: &Activity, fut: F) -> Option<F::Output> {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => return Some(out),
        ending = activity.ending() => if ending == Ending::Expired {
            return None;
        },
    }
    tokio::time::timeout(LAST_REQUEST, fut).await.ok()
}

/// Resolves once shutdown has been asked for (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

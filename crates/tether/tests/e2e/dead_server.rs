//! A dead server costs one connect timeout, not one per request: the first connect that times
//! out takes it out of rotation for every request, the connects to it still pending give up at
//! once, and their requests go to another server.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tether_testkit::{Backend, Client};

use crate::support::{Proxy, KEY, WEB};

/// A listener that never accepts, its backlog full: the kernel drops further SYNs, so a connect
/// to it hangs as one to a host whose link is down does (all on 127.0.0.1).
struct BlackHole {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fill: Vec<TcpStream>,
}

impl BlackHole {
    fn new() -> BlackHole {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        s.listen(0).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let mut fill = Vec::new();
        // Fill the accept queue until a connect no longer completes at once.
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(c) => fill.push(c),
                Err(_) => break,
            }
        }
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
            "the black hole accepts connections"
        );
        BlackHole {
            addr,
            _listener: s,
            _fill: fill,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_costs_one_connect_timeout_not_one_per_request() {
    let hole = BlackHole::new();
    let good = Backend::spawn("good").await;
    let toml = format!(
        "{WEB}{KEY}[timeouts]\nconnect = \"2s\"\n[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n\
         [services.web]\nservers = [{{ name = \"dead\", url = \"http://{}\" }}, {{ name = \"good\", url = \"{}\" }}]\n",
        hole.addr,
        good.url()
    );
    let p = Proxy::start(&toml).await;
    let addr = p.addr();
    // A request every 50 ms for 2.5 s, each on a new connection: the first ones to pick the dead
    // server wait for its connect timeout; those after it picked it wait no longer than that.
    let start = Instant::now();
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let due = start + Duration::from_millis(50 * i);
        tokio::time::sleep_until(due.into()).await; // pacing the requests, not synchronisation
        sent.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = Client::new(addr).get("/").await.unwrap();
            (t - start, t.elapsed(), r.status, r.server().to_string())
        }));
    }
    let mut slow = Vec::new();
    for s in sent {
        let (at, took, status, server) = s.await.unwrap();
        assert_eq!(status, 200, "sent at {at:?}");
        assert_eq!(server, "good");
        // Ends when the first connect to the dead server timed out (2 s from the start), or
        // soon after it was sent (slack for a loaded machine).
        let first_timeout = Duration::from_millis(2000).saturating_sub(at);
        if took > first_timeout.max(Duration::from_millis(200)) + Duration::from_millis(700) {
            slow.push((at, took));
        }
    }
    assert!(
        slow.is_empty(),
        "requests waited past the first connect timeout: {slow:?}"
    );
    assert_eq!(good.requests(), 50);
}

//! ACME with three replicas on one etcd and a real CA (Pebble). The name resolves to a stand-in
//! for a routing mesh, which sends the CA's validation to a replica the test chooses: one that
//! does not hold the order's lock. The certificate is ordered once, every replica serves it
//! within a second of its write; and when the ordering replica is killed mid-order, another
//! takes over once its lease ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tether_testkit::acme::{connect_trusting, host, Pebble};
use tether_testkit::etcd::Etcd;
use tether_testkit::programs::free_port;
use tether_testkit::Backend;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::support::Replica;

/// The name's address: a routing mesh that sends each connection to the replica the test sets
/// (waiting for one to be set).
struct Mesh {
    to: watch::Sender<Option<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mesh {
    async fn start(addr: SocketAddr) -> Mesh {
        let listener = TcpListener::bind(addr).await.expect("the mesh binds");
        let (to, rx) = watch::channel(None::<SocketAddr>);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(target) = rx.wait_for(Option::is_some).await.map(|t| t.unwrap()) else {
                        return;
                    };
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Mesh { to, task }
    }

    fn send_to(&self, replica: SocketAddr) {
        self.to.send_replace(Some(replica));
    }
}

struct Cluster {
    _etcd: Etcd,
    ca: Pebble,
    name: String,
    mesh: Mesh,
    replicas: Vec<Replica>,
    _backend: Backend,
}

/// Three replicas on one etcd with resolver `pebble` (HTTP-01), the route for `name` declared
/// through the first one's API.
async fn cluster(stem: &str) -> Option<Cluster> {
    let etcd = Etcd::start(stem).await?;
    let http_port = free_port();
    let mesh_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 20));
    let name = host(stem, mesh_ip)?;
    let ca = Pebble::start(http_port, free_port()).await?;
    let mesh = Mesh::start(SocketAddr::new(mesh_ip, http_port)).await;
    let store = format!("etcd://{}/{stem}", etcd.endpoint());
    let replicas: Vec<Replica> = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
        .iter()
        .map(|ip| {
            let config = format!(
                "[entrypoints]\nweb = \"{ip}:0\"\nwebsecure = {{ address = \"{ip}:0\", tls = true }}\n\
                 [affinity]\nkey = \"shared-affinity-key-shared-affinity-key\"\n\
                 [acme.pebble]\nemail = \"ops@tether.test\"\nca = \"{}\"\nca_root = \"{}\"\n",
                ca.directory(),
                ca.server_ca().display()
            );
            Replica::start_file(ip, &store, &config)
        })
        .collect();
    let backend = Backend::spawn("shop").await;
    let mut api = replicas[0].api();
    let r = api
        .put(
            "/api/services/shop",
            serde_json::json!({"servers": [{"name": "shop-1", "url": backend.url()}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    Some(Cluster {
        _etcd: etcd,
        ca,
        name,
        mesh,
        replicas,
        _backend: backend,
    })
}

impl Cluster {
    async fn declare_route(&self) {
        let r = self.replicas[0]
            .api()
            .put(
                "/api/routes/shop",
                serde_json::json!({"rule": format!("Host(`{}`)", self.name), "service": "shop",
                    "tls": {"resolver": "pebble"}}),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }

    /// The replica whose API says it is ordering the certificate (polled every few ms).
    async fn orderer(&self, among: &[usize]) -> usize {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            for &i in among {
                let list = self.replicas[i].api().get("/api/certificates").await.json();
                let ordering = list
                    .as_array()
                    .is_some_and(|l| l.iter().any(|c| c["acme"]["state"] == "ordering"));
                if ordering {
                    return i;
                }
            }
            assert!(Instant::now() < end, "no replica started ordering");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// When each of `which` first served the certificate to a client trusting only the CA's
    /// root, from `since`.
    async fn served(&self, which: &[usize], since: Instant, root: &str) -> Vec<Duration> {
        let polls = which.iter().map(|&i| {
            let r = &self.replicas[i];
            let addr = r.websecure.expect("websecure");
            let name = self.name.clone();
            async move {
                let what = format!("{} serving the ordered certificate", r.name);
                tether_testkit::wait_for_value(&what, Duration::from_secs(60), || async {
                    match connect_trusting(addr, &name, root).await {
                        Ok(_) => Ok(since.elapsed()),
                        Err(e) => Err(format!("{e}; its log:\n{}", r.log())),
                    }
                })
                .await
            }
        });
        futures_util::future::join_all(polls).await
    }

    /// `tether_acme_orders_total{result="success"}` of replica `i`.
    async fn successes(&self, i: usize) -> u64 {
        let text = self.replicas[i].api().get("/metrics").await.body;
        text.lines()
            .find(|l| {
                l.starts_with("tether_acme_orders_total{") && l.contains("result=\"success\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn three_replicas_order_once_and_all_serve_within_a_second_of_the_write() {
    let Some(c) = cluster("acme-three").await else {
        return;
    };
    let root = c.ca.root_pem().await;
    let since = Instant::now();
    c.declare_route().await;
    let x = c.orderer(&[0, 1, 2]).await;
    // The CA is sent to another replica than the one holding the lock.
    let other = (x + 1) % 3;
    c.mesh.send_to(c.replicas[other].web);
    let times = c.served(&[0, 1, 2], since, &root).await;
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    eprintln!(
        "three replicas: replica {} ordered, the CA validated through replica {}; serving from {} ms (first) to {} ms (last) after the route was declared",
        c.replicas[x].name,
        c.replicas[other].name,
        first.as_millis(),
        last.as_millis()
    );
    assert!(
        last - first < Duration::from_secs(1),
        "every replica serves within 1 s of the first: {times:?}"
    );
    let mut total = 0;
    for i in 0..3 {
        total += c.successes(i).await;
    }
    assert_eq!(total, 1, "one order for all three");
    assert_eq!(c.successes(x).await, 1, "placed by the lock holder");
}

#[tokio::test]
async fn the_ordering_replica_killed_mid_order_another_finishes_it() {
    let Some(mut c) = cluster("acme-kill").await else {
        return;
    };
    let root = c.ca.root_pem().await;
    c.declare_route().await;
    let x = c.orderer(&[0, 1, 2]).await;
    let killed_at = Instant::now();
    c.replicas[x].kill();
    let rest: Vec<usize> = (0..3).filter(|i| *i != x).collect();
    c.mesh.send_to(c.replicas[rest[0]].web);
    let times = c.served(&rest, killed_at, &root).await;
    eprintln!(
        "killed mid-order: {} killed; the others served from {} ms to {} ms after (the lock's lease is {} s)",
        c.replicas[x].name,
        times.iter().min().unwrap().as_millis(),
        times.iter().max().unwrap().as_millis(),
        tether_acme::store::etcd::LOCK_TTL
    );
    let mut total = 0;
    for &i in &rest {
        total += c.successes(i).await;
    }
    assert_eq!(total, 1, "one of the others finished it");
}

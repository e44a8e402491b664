//! Balancing through the proxy: weights, least outstanding requests, consistent hashing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tether_testkit::{Backend, Client};

use crate::support::{Proxy, KEY, WEB};

fn weighted(a: &Backend, b: &Backend, extra: &str) -> String {
    format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\n{extra}\nservers = [{{ name = \"a\", url = \"{}\", weight = 3 }}, {{ name = \"b\", url = \"{}\", weight = 1 }}]\n",
        a.url(),
        b.url()
    )
}

#[tokio::test]
async fn weights_three_to_one_give_75_percent() {
    let (a, b) = (Backend::spawn("a").await, Backend::spawn("b").await);
    let p = Proxy::start(&weighted(&a, &b, "")).await;
    let mut c = Client::without_cookies(p.addr());
    let mut to_a = 0;
    for _ in 0..4000 {
        if c.get("/").await.unwrap().server() == "a" {
            to_a += 1;
        }
    }
    let share = to_a as f64 / 4000.0;
    assert!(
        (0.70..=0.80).contains(&share),
        "a got {:.1}%",
        share * 100.0
    );
}

#[tokio::test]
async fn least_requests_prefers_the_idle_server_over_the_slow_one() {
    let slow = Backend::spawn_slow("slow", Duration::from_millis(200)).await;
    let fast = Backend::spawn("fast").await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nbalance = \"least_requests\"\n{}\n",
        crate::support::servers(&[&slow, &fast])
    );
    let p = Proxy::start(&toml).await;
    let end = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let addr = p.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::without_cookies(addr);
            let mut n = HashMap::<String, u32>::new();
            while Instant::now() < end {
                *n.entry(c.get("/").await.unwrap().server().to_string())
                    .or_default() += 1;
            }
            n
        }));
    }
    let mut total = HashMap::<String, u32>::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let (s, f) = (
        total.get("slow").copied().unwrap_or(0),
        total.get("fast").copied().unwrap_or(0),
    );
    assert!(
        f > 10 * s.max(1),
        "fast {f} vs slow {s}: least requests must favour the idle server"
    );
    assert!(s > 0, "the slow server still gets some traffic");
}

#[tokio::test]
async fn consistent_hash_keeps_keys_in_place_when_a_server_leaves() {
    let backends = [
        Backend::spawn("s0").await,
        Backend::spawn("s1").await,
        Backend::spawn("s2").await,
        Backend::spawn("s3").await,
        Backend::spawn("s4").await,
    ];
    let refs: Vec<&Backend> = backends.iter().collect();
    let cfg = |bs: &[&Backend]| {
        format!(
            "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nbalance = \"consistent_hash\"\nhash_on = \"header:X-User\"\n{}\n",
            crate::support::servers(bs)
        )
    };
    let p = Proxy::start(&cfg(&refs)).await;
    let mut c = Client::without_cookies(p.addr());
    let mut placed = Vec::new();
    for k in 0..300 {
        let req = || {
            Request::get("/")
                .header("x-user", format!("user-{k}"))
                .body(Full::<Bytes>::default())
                .unwrap()
        };
        let first = c.send(req()).await.unwrap().server().to_string();
        assert_eq!(
            c.send(req()).await.unwrap().server(),
            first,
            "the same key lands on the same server"
        );
        placed.push(first);
    }
    let without_s2: Vec<&Backend> = refs.iter().copied().filter(|b| b.name != "s2").collect();
    p.reload(&cfg(&without_s2)).await;
    let mut moved = 0;
    for (k, before) in placed.iter().enumerate() {
        let req = Request::get("/")
            .header("x-user", format!("user-{k}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let now = c.send(req).await.unwrap().server().to_string();
        if &now != before {
            assert_eq!(before, "s2", "only keys of the removed server move");
            moved += 1;
        }
    }
    assert!(
        moved <= 300 * 3 / 10,
        "{moved} of 300 keys moved (limit 1.5/n)"
    );
}

#[tokio::test]
async fn a_service_of_resolved_servers_reaches_every_address_of_the_name() {
    let b = Backend::spawn("dns-1").await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nresolve = \"localhost:{}\"\n",
        b.addr.port()
    );
    let proxy = Proxy::start(&toml).await;
    let mut c = proxy.client();
    for _ in 0..20 {
        let r = c.get("/").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.server(), "dns-1");
    }
}

/// A server named `name` whose `/healthz` answers 503 while `sick` is set; every other path 200.
async fn checked_server(
    name: &'static str,
    sick: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let sick = sick.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_string();
                        got.drain(..end + 4);
                        let bad = head.starts_with("GET /healthz ")
                            && sick.load(std::sync::atomic::Ordering::SeqCst);
                        let status = if bad {
                            "503 Service Unavailable"
                        } else {
                            "200 OK"
                        };
                        let resp = format!("HTTP/1.1 {status}\r\nx-whoami-name: {name}\r\ncontent-length: 0\r\n\r\n");
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn active_health_checks_take_a_failing_server_out_and_bring_it_back() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let sick = Arc::new(AtomicBool::new(false));
    let a = checked_server("hc-a", Arc::new(AtomicBool::new(false))).await;
    let b = checked_server("hc-b", sick.clone()).await;
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\nservers = [{{ name = \"hc-a\", url = \"http://{a}\" }}, {{ name = \"hc-b\", url = \"http://{b}\" }}]\n[services.web.health]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\n"
    );
    let proxy = Proxy::start(&toml).await;
    let mut c = proxy.client();
    let mut both = std::collections::HashSet::new();
    for _ in 0..10 {
        both.insert(c.get("/").await.unwrap().server().to_string());
    }
    assert_eq!(both.len(), 2, "both serve while healthy: {both:?}");

    sick.store(true, SeqCst);
    let state = |name: &str| {
        proxy
            .instance
            .control
            .registry()
            .snapshot()
            .into_iter()
            .find(|(_, b)| &*b.name == name)
            .map(|(_, b)| b.state.describe())
    };
    tether_testkit::wait_for("hc-b out of rotation", Duration::from_secs(3), || async {
        state("hc-b") == Some("unhealthy")
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            c.get("/").await.unwrap().server(),
            "hc-a",
            "no traffic to a failing server"
        );
    }

    sick.store(false, SeqCst);
    tether_testkit::wait_for("hc-b back in rotation", Duration::from_secs(3), || async {
        state("hc-b") == Some("serving")
    })
    .await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        seen.insert(c.get("/").await.unwrap().server().to_string());
    }
    assert!(seen.contains("hc-b"), "{seen:?}");
}

#[tokio::test]
async fn a_backup_server_answers_only_while_no_other_server_can() {
    let (mut a, b, c) = (
        Backend::spawn("a").await,
        Backend::spawn("b").await,
        Backend::spawn("backup").await,
    );
    let toml = format!(
        "{WEB}{KEY}[routes.web]\nrule = \"PathPrefix(`/`)\"\nservice = \"web\"\n[services.web]\n\
         servers = [{{ name = \"a\", url = \"{}\" }}, {{ name = \"b\", url = \"{}\", draining = true }}, {{ name = \"backup\", url = \"{}\", backup = true }}]\n",
        a.url(),
        b.url(),
        c.url()
    );
    let p = Proxy::start(&toml).await;
    let mut client = Client::without_cookies(p.addr());
    // a is up (b drains): a takes everything, the backup nothing.
    for _ in 0..50 {
        assert_eq!(client.get("/").await.unwrap().server(), "a");
    }
    assert_eq!(c.requests(), 0);
    // a goes away: its refused connection is retried on the backup, which answers from then on.
    a.stop().await;
    for _ in 0..20 {
        let r = client.get("/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.server(), "backup");
    }
    assert_eq!(
        b.requests(),
        0,
        "a draining server is not used for new requests"
    );
}
